#!/usr/bin/env python3
"""Records the first datagram that third-party CoAP clients send, into
fixtures/datagrams/NAME.hex, for tests/fixtures_replay.rs to replay.

Each client is pointed at a UDP socket on 127.0.0.1 that never answers; the
first datagram it sends is kept (retransmissions are ignored) and the client
is stopped. Re-run after upgrading libcoap or aiocoap to see whether what
they send changed:

    python3 scripts/record_fixtures.py

Needs libcoap's coap-client (Debian: libcoap3-bin) and aiocoap + cbor2.
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


def main():
    import aiocoap

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
