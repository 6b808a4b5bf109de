#!/usr/bin/env python3
"""Records the first datagram that third-party CoAP clients send, into
fixtures/datagrams/NAME.hex, for tests/fixtures_replay.rs to replay.

Each client is pointed at a UDP socket on 127.0.0.1 that never answers; the
first datagram it sends is kept (retransmissions are ignored) and the client
is stopped. Re-run after upgrading libcoap or aiocoap to see whether what
they send changed:

    python3 scripts/record_fixtures.py

Needs libcoap's coap-client (Debian: libcoap3-bin) and aiocoap + cbor2.

LwM2M clients (fixtures/datagrams/lwm2m/) need a peer that answers, so a
scripted responder stands in for the LwM2M server: it answers Register with
2.01 and Location-Path rd/7, Update with 2.04, De-register with 2.02, Block1
pieces with 2.31, and records every request; for the aiocoap client
(tests/interop/lwm2m_device.py) it also reads /3/0/3 and /5/0 in each
content format and records the client's response datagrams. Needs node and
`npm ci` in tests/interop/node for lwm2m-node-lib.

    python3 scripts/record_fixtures.py --lwm2m
"""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import cbor2

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "datagrams")


def coap_client():
    for name in ("coap-client", "coap-client-notls", "coap-client-openssl", "coap-client-gnutls"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no libcoap coap-client on PATH (apt install libcoap3-bin)")


def capture(start_client):
    """Binds a silent UDP socket, runs start_client(port), returns the first datagram."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    stop = start_client(port)
    try:
        data, _ = sock.recvfrom(65535)
    finally:
        stop()
        sock.close()
    return data


def libcoap(args, payload=None):
    def run(port):
        argv = [coap_client(), "-B", "2"] + [a.replace("PORT", str(port)) for a in args]
        tmp = None
        if payload is not None:
            tmp = tempfile.NamedTemporaryFile(delete=False)
            tmp.write(payload)
            tmp.close()
            argv[3:3] = ["-f", tmp.name]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop():
            proc.kill()
            proc.wait()
            if tmp:
                os.unlink(tmp.name)

        return stop

    return run


def aiocoap_request(method, path, payload=b"", content_format=None, block2_szx=None):
    def run(port):
        import aiocoap
        from aiocoap.optiontypes import BlockOption

        loop = asyncio.new_event_loop()

        async def go():
            ctx = await aiocoap.Context.create_client_context()
            msg = aiocoap.Message(code=method, uri=f"coap://127.0.0.1:{port}{path}", payload=payload)
            if content_format is not None:
                msg.opt.content_format = content_format
            if block2_szx is not None:
                msg.opt.block2 = BlockOption.BlockwiseTuple(0, False, block2_szx)
            try:
                await asyncio.wait_for(ctx.request(msg).response, 3)
            except Exception:
                pass
            await ctx.shutdown()

        thread = threading.Thread(target=lambda: loop.run_until_complete(go()), daemon=True)
        thread.start()
        return lambda: thread.join(5)

    return run


ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LWM2M_OUT = os.path.join(OUT, "lwm2m")


def write_fixture(directory, name, what, data):
    with open(os.path.join(directory, name + ".hex"), "w") as f:
        f.write(f"# {what}\n# recorded by scripts/record_fixtures.py\n{data.hex()}\n")
    print(f"{name}: {len(data)} bytes")


def responder(sock, record, stop_after, reads=None):
    """Answers CON requests like a minimal LwM2M server and records them.

    record(datagram) is called for every new request (retransmissions, by
    Message ID, are not recorded twice). With `reads`, after the first
    registration it sends each (name, path, accept) GET to the client and
    records the response datagram under name."""
    from aiocoap import Message
    import aiocoap

    seen = set()
    got = []
    client = None
    pending = list(reads or [])
    mid = 0x4000
    waiting = None
    while len(got) < stop_after or pending or waiting:
        data, addr = sock.recvfrom(65535)
        msg = Message.decode(data)
        if msg.code.is_request():
            key = (addr, msg.mid)
            if msg.mtype == aiocoap.CON:
                path = msg.opt.uri_path
                if msg.opt.block1 is not None and msg.opt.block1.more:
                    code = aiocoap.CONTINUE
                elif msg.code == aiocoap.POST and path == ("rd",):
                    code = aiocoap.CREATED
                elif msg.code == aiocoap.DELETE:
                    code = aiocoap.DELETED
                else:
                    code = aiocoap.CHANGED
                reply = Message(code=code)
                reply.mtype = aiocoap.ACK
                reply.mid = msg.mid
                reply.token = msg.token
                if code == aiocoap.CREATED:
                    reply.opt.location_path = ("rd", "7")
                if msg.opt.block1 is not None:
                    reply.opt.block1 = msg.opt.block1
                sock.sendto(reply.encode(), addr)
            if key not in seen:
                seen.add(key)
                got.append(data)
                record(data)
                if code == aiocoap.CREATED:
                    client = addr
        elif waiting and msg.token == waiting[1]:
            reads_done = waiting[0]
            got_reads.append((reads_done, data))
            waiting = None
        if client and pending and not waiting:
            name, path, accept = pending.pop(0)
            mid += 1
            req = Message(code=aiocoap.GET)
            req.mtype = aiocoap.CON
            req.mid = mid
            req.token = bytes([mid & 0xFF, 0x5A])
            req.opt.uri_path = tuple(path.strip("/").split("/"))
            req.opt.accept = accept
            sock.sendto(req.encode(), client)
            waiting = (name, req.token)
    return got


got_reads = []


def lwm2m_node(sock_port, flags):
    node_dir = os.path.join(ROOT, "tests", "interop", "node")
    return subprocess.Popen(
        ["node", "client.js", "127.0.0.1", str(sock_port), "fixture-node", "1.0"] + flags,
        cwd=node_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def record_lwm2m():
    os.makedirs(LWM2M_OUT, exist_ok=True)

    # lwm2m-node-lib 1.4.0: Register, Update, De-register.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    names = iter([
        ("node-lib-register", "lwm2m-node-lib 1.4.0 Register: POST /rd?ep=fixture-node&lt=300&lwm2m=1.0&b=U, </3/0>,</5/0>"),
        ("node-lib-update", "lwm2m-node-lib 1.4.0 registration Update: POST /rd/7?lt=300&lwm2m=1.0&b=U with the object list"),
        ("node-lib-deregister", "lwm2m-node-lib 1.4.0 De-register: DELETE /rd/7"),
    ])
    proc = lwm2m_node(sock.getsockname()[1], ["--update", "--exit"])
    try:
        responder(sock, lambda d: write_fixture(LWM2M_OUT, *next(names), d), 3)
    finally:
        proc.wait(10)
        sock.close()

    # aiocoap (tests/interop/lwm2m_device.py): Register, then its answers
    # to reads in each content format.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    reads = [
        ("aiocoap-read-3-0-3-text", "/3/0/3", 0),
        ("aiocoap-read-3-0-3-tlv", "/3/0/3", 11542),
        ("aiocoap-read-3-0-3-senml-json", "/3/0/3", 110),
        ("aiocoap-read-3-0-3-senml-cbor", "/3/0/3", 112),
        ("aiocoap-read-5-0-tlv", "/5/0", 11542),
        ("aiocoap-read-5-0-senml-json", "/5/0", 110),
    ]
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "interop", "lwm2m_device.py"),
         f"127.0.0.1:{sock.getsockname()[1]}", "fixture-py", "1.0", "--timeout", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got_reads.clear()
    requests = []
    try:
        responder(sock, requests.append, 1, reads)
    finally:
        proc.kill()
        proc.wait()
        sock.close()
    write_fixture(LWM2M_OUT, "aiocoap-register",
                  "aiocoap LwM2M 1.1 Register: POST /rd?ep=fixture-py&lt=60&lwm2m=1.1&b=U, </1/1>,</3/0>,</5/0>",
                  requests[0])
    for name, data in got_reads:
        path, accept = next((p, a) for n, p, a in reads if n == name)
        write_fixture(LWM2M_OUT, name, f"aiocoap client's 2.05 to GET {path} with Accept {accept}", data)

    # A 221-byte registration in 16-byte Block1 pieces (libcoap's coap-client).
    # Objects of a bigger client (Anjay-like, no root link): instances,
    # then versioned objects, then IPSO instances until exactly 221 bytes.
    items = [f"</{o}/0>" for o in (1, 3, 4, 5, 6, 7)]
    items += [f"</{o}>;ver=1.1" for o in (9, 10, 11, 12, 13, 14)]
    n = 3300
    while len(",".join(items)) + 10 <= 221:
        items.append(f"</{n}/0>")
        n += 1
    short = 221 - len(",".join(items)) - 1  # room for one more link
    items.append(f"</{'9' * (short - 3)}>" if 4 <= short <= 8 else "</1/1>")
    links = ",".join(items)
    assert len(links) == 221, len(links)
    pieces = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    port = sock.getsockname()[1]

    tmp = tempfile.NamedTemporaryFile(delete=False)
    tmp.write(links.encode())
    tmp.close()
    uri = f"coap://127.0.0.1:{port}/rd?ep=fixture-block1&lt=60&lwm2m=1.1&b=U"
    proc = subprocess.Popen([coap_client(), "-m", "post", "-t", "40", "-b", "16", "-f", tmp.name, uri],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        responder(sock, pieces.append, 14)
    finally:
        proc.kill()
        proc.wait()
        os.unlink(tmp.name)
        sock.close()
    with open(os.path.join(LWM2M_OUT, "libcoap-register-block1.hex"), "w") as f:
        f.write("# libcoap Register of a 221-byte link payload in 16-byte Block1 pieces, one per line\n")
        f.write("# recorded by scripts/record_fixtures.py\n")
        for piece in pieces:
            f.write(piece.hex() + "\n")
    print(f"libcoap-register-block1: {len(pieces)} pieces")


def main():
    import aiocoap

    if "--lwm2m" in sys.argv:
        record_lwm2m()
        return

    os.makedirs(OUT, exist_ok=True)
    poll = cbor2.dumps({"product": "sensor", "version": "1.0"})
    report = cbor2.dumps({"task": "c1", "state": "downloading", "progress": 10})
    big = cbor2.dumps({"product": "sensor", "version": "1.0", "pad": "x" * 200})
    cases = {
        # name: (client, what it shows)
        "libcoap-get-fw-block2-szx2": (
            libcoap(["-m", "get", "-b", "64", "coap://127.0.0.1:PORT/ota/fw/1"]),
            "libcoap GET /ota/fw/1 asking for 64-byte blocks (Block2 szx 2)",
        ),
        "libcoap-get-well-known-core": (
            libcoap(["-m", "get", "coap://127.0.0.1:PORT/.well-known/core"]),
            "libcoap GET /.well-known/core",
        ),
        "libcoap-post-poll-cbor": (
            libcoap(["-m", "post", "-t", "60", "coap://127.0.0.1:PORT/ota/fixture-dev/poll"], payload=poll),
            "libcoap POST /ota/fixture-dev/poll with a CBOR body (content-format 60)",
        ),
        "libcoap-post-poll-block1-first": (
            libcoap(["-m", "post", "-t", "60", "-b", "16", "coap://127.0.0.1:PORT/ota/fixture-dev/poll"], payload=big),
            "libcoap POST of a 230-byte CBOR poll body in 16-byte Block1 pieces: the first piece",
        ),
        "libcoap-non-get-fw": (
            libcoap(["-N", "-m", "get", "coap://127.0.0.1:PORT/ota/fw/1"]),
            "libcoap NON GET /ota/fw/1",
        ),
        "aiocoap-post-poll-cbor": (
            aiocoap_request(aiocoap.POST, "/ota/fixture-dev/poll", poll, 60),
            "aiocoap POST /ota/fixture-dev/poll with a CBOR body",
        ),
        "aiocoap-post-report-cbor": (
            aiocoap_request(aiocoap.POST, "/ota/fixture-dev/report", report, 60),
            "aiocoap POST /ota/fixture-dev/report (task c1 downloading 10%)",
        ),
        "aiocoap-get-fw-block2-szx6": (
            aiocoap_request(aiocoap.GET, "/ota/fw/1", block2_szx=6),
            "aiocoap GET /ota/fw/1 with Block2 szx 6 (1024-byte blocks)",
        ),
    }
    for name, (client, what) in cases.items():
        data = capture(client)
        with open(os.path.join(OUT, name + ".hex"), "w") as f:
            f.write(f"# {what}\n# recorded by scripts/record_fixtures.py\n{data.hex()}\n")
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
