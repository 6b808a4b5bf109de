#!/usr/bin/env python3
"""An independent OMA LwM2M 1.1 client on aiocoap, written from the LwM2M
1.1 Technical Specification (Core §6.2 Registration, §6.3 Device
Management, §7.4 data formats) and the Firmware Update Object (Object 5)
definition, not from lwota's code.

It serves Objects 3 (Device) and 5 (Firmware Update) from the same UDP
socket it registers from (one aiocoap server context), answers reads in
text, TLV, SenML-JSON or SenML-CBOR by Accept, lets the server observe
State (/5/0/3) and Update Result (/5/0/5), and takes firmware by pull
(Package URI: a real Block2 download from a new source port, SHA-256
checked) or push (Block1 write of /5/0/0).

usage: lwm2m_device.py HOST:PORT ENDPOINT VERSION --sha256 HEX
           [--new-version V] [--delivery pull|push|both] [--lifetime S]
           [--timeout S]

Prints one JSON line per event; exits 0 once Update Result 1 was
reported (and the server had a moment to read /3/0/3), 1 on failure.
"""

import argparse
import asyncio
import hashlib
import json
import struct
import sys

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap import Code, Message

TEXT, LINK, OPAQUE, SENML_JSON, SENML_CBOR, TLV = 0, 40, 42, 110, 112, 11542

IDLE, DOWNLOADING, DOWNLOADED, UPDATING = 0, 1, 2, 3


def emit(**event):
    print(json.dumps(event), flush=True)


# --- TLV (Core §7.4.3) -------------------------------------------------------

def tlv_entry(kind, ident, value):
    first = kind << 6
    head = b""
    if ident > 0xFF:
        first |= 0x20
        ident_bytes = struct.pack(">H", ident)
    else:
        ident_bytes = bytes([ident])
    n = len(value)
    if n < 8:
        first |= n
    elif n <= 0xFF:
        first |= 0x08
        head = bytes([n])
    elif n <= 0xFFFF:
        first |= 0x10
        head = struct.pack(">H", n)
    else:
        first |= 0x18
        head = struct.pack(">I", n)[1:]
    return bytes([first]) + ident_bytes + head + value


def tlv_value(v):
    if isinstance(v, bool):
        return b"\x01" if v else b"\x00"
    if isinstance(v, int):
        for fmt, lo, hi in ((">b", -128, 127), (">h", -2**15, 2**15 - 1), (">i", -2**31, 2**31 - 1)):
            if lo <= v <= hi:
                return struct.pack(fmt, v)
        return struct.pack(">q", v)
    if isinstance(v, bytes):
        return v
    return str(v).encode()


def tlv_encode(resources):
    """resources: {id: value or {instance: value}} -> bytes"""
    out = b""
    for rid, v in sorted(resources.items()):
        if isinstance(v, dict):
            inner = b"".join(tlv_entry(0b01, i, tlv_value(x)) for i, x in sorted(v.items()))
            out += tlv_entry(0b10, rid, inner)
        else:
            out += tlv_entry(0b11, rid, tlv_value(v))
    return out


def tlv_decode(data):
    """bytes -> list of (kind, id, value bytes)"""
    out = []
    i = 0
    while i < len(data):
        first = data[i]
        i += 1
        kind = first >> 6
        if first & 0x20:
            ident = struct.unpack(">H", data[i:i + 2])[0]
            i += 2
        else:
            ident = data[i]
            i += 1
        ltype = (first >> 3) & 0x3
        if ltype == 0:
            n = first & 0x7
        else:
            n = int.from_bytes(data[i:i + ltype], "big")
            i += ltype
        if i + n > len(data):
            raise ValueError("truncated TLV")
        out.append((kind, ident, data[i:i + n]))
        i += n
    return out


# --- SenML (RFC 8428; LwM2M 1.1 §7.4.4/7.4.5) --------------------------------

def senml_records(base, resources):
    records = []
    for rid, v in sorted(resources.items()):
        name = base if len(resources) == 1 and base.count("/") == 3 else f"{base}/{rid}"
        items = v.items() if isinstance(v, dict) else [(None, v)]
        for inst, x in items:
            n = name if inst is None else f"{name}/{inst}"
            if isinstance(x, int):
                records.append({"n": n, "v": x})
            else:
                records.append({"n": n, "vs": str(x)})
    return records


def senml_cbor(records):
    keys = {"n": 0, "v": 2, "vs": 3}
    return cbor2.dumps([{keys[k]: v for k, v in r.items()} for r in records])


def decode_written(payload, fmt, rid):
    """The value a server wrote to resource rid, as bytes."""
    if fmt in (TEXT, OPAQUE):
        return payload
    if fmt == TLV:
        for kind, ident, value in tlv_decode(payload):
            if kind == 0b00:
                return decode_written(value, TLV, rid)
            if kind == 0b11 and ident == rid:
                return value
        raise ValueError("no TLV entry for resource %d" % rid)
    if fmt == SENML_JSON:
        rec = json.loads(payload)[0]
        return rec["vs"].encode() if "vs" in rec else str(rec.get("v", "")).encode()
    if fmt == SENML_CBOR:
        rec = cbor2.loads(payload)[0]
        if 3 in rec:
            return rec[3].encode()
        if 8 in rec:
            return rec[8]
        return str(rec.get(2, "")).encode()
    raise ValueError("content format %s" % fmt)


# --- the client --------------------------------------------------------------

class Client:
    def __init__(self, args):
        self.args = args
        self.version = args.version
        self.state = IDLE
        self.result = 0
        self.uri = ""
        self.delivery = {"pull": 0, "push": 1, "both": 2}[args.delivery]
        self.ctx = None
        self.location = None
        self.done = asyncio.get_event_loop().create_future()
        self.observables = {}

    # Resource values per object instance.
    def instance(self, obj):
        if obj == 3:
            return {0: "aiocoap-interop", 1: "lwm2m_device.py", 2: self.args.endpoint,
                    3: self.version, 11: {0: 0}, 16: "U"}
        return {1: self.uri, 3: self.state, 5: self.result, 6: "image", 7: self.args.new_version or "",
                8: {0: 0}, 9: self.delivery}

    def encode(self, obj, rid, accept):
        values = self.instance(obj)
        base = f"/{obj}/0" if rid is None else f"/{obj}/0/{rid}"
        picked = values if rid is None else {rid: values[rid]}
        single = rid is not None and not isinstance(picked[rid], dict)
        if accept is None:
            accept = TEXT if single else TLV
        if accept == TEXT and single:
            return TEXT, str(picked[rid]).encode()
        if accept == TLV:
            return TLV, tlv_encode(picked)
        if accept == SENML_JSON:
            return SENML_JSON, json.dumps(senml_records(base, picked)).encode()
        if accept == SENML_CBOR:
            return SENML_CBOR, senml_cbor(senml_records(base, picked))
        return None, None

    def set(self, state=None, result=None):
        if state is not None and state != self.state:
            self.state = state
            emit(event="state", state=state)
            self.observables[3].updated_state()
        if result is not None and result != self.result:
            self.result = result
            emit(event="result", result=result)
            self.observables[5].updated_state()
            if result >= 2:
                asyncio.get_event_loop().call_later(self.args.linger, self.finish, 1)

    async def download(self, uri):
        # A new client context = a new source port, as constrained clients
        # download (the registration socket stays free for the server).
        ctx = await aiocoap.Context.create_client_context()
        try:
            resp = await asyncio.wait_for(ctx.request(Message(code=Code.GET, uri=uri)).response, 60)
        except Exception as e:  # noqa: BLE001 - any transport failure is "connection lost"
            emit(event="download_failed", error=repr(e))
            self.set(state=IDLE, result=4)
            return
        finally:
            await ctx.shutdown()
        if resp.code != Code.CONTENT:
            emit(event="download_failed", code=str(resp.code))
            self.set(state=IDLE, result=7)
            return
        self.check(resp.payload, "pull")

    def check(self, image, how):
        digest = hashlib.sha256(image).hexdigest()
        emit(event="downloaded", how=how, size=len(image), sha256=digest)
        if self.args.sha256 and digest != self.args.sha256.lower():
            self.set(state=IDLE, result=5)  # integrity check failure
            return
        self.set(state=DOWNLOADED)

    async def install(self):
        self.set(state=UPDATING)
        await asyncio.sleep(0.3)
        if self.args.new_version:
            self.version = self.args.new_version
            self.observables["version"].updated_state()
        self.set(state=IDLE, result=1)
        emit(event="updated", version=self.version)
        # Give the server time to read /3/0/3 before we go.
        asyncio.get_event_loop().call_later(self.args.linger, self.finish, 0)

    def finish(self, code):
        if not self.done.done():
            self.done.set_result(code)

    async def register(self, server):
        query = [f"ep={self.args.endpoint}", f"lt={self.args.lifetime}", "lwm2m=1.1", "b=U"]
        links = "</1/1>,</3/0>,</5/0>"
        msg = Message(code=Code.POST, uri=f"coap://{server}/rd", payload=links.encode())
        msg.opt.uri_query = query
        msg.opt.content_format = LINK
        resp = await self.ctx.request(msg).response
        if resp.code != Code.CREATED:
            raise SystemExit(f"registration answered {resp.code}")
        self.location = list(resp.opt.location_path)
        emit(event="registered", location="/".join(self.location))

    async def update_loop(self, server):
        while True:
            await asyncio.sleep(self.args.lifetime / 2)
            msg = Message(code=Code.POST, uri=f"coap://{server}/" + "/".join(self.location))
            resp = await self.ctx.request(msg).response
            emit(event="registration_update", code=str(resp.code))
            if resp.code == Code.NOT_FOUND:
                await self.register(server)


class Value(resource.ObservableResource):
    """A readable (and maybe observable) resource or object instance."""

    def __init__(self, client, obj, rid):
        super().__init__()
        self.client, self.obj, self.rid = client, obj, rid

    async def render_get(self, request):
        fmt, payload = self.client.encode(self.obj, self.rid, request.opt.accept)
        if fmt is None:
            return Message(code=Code.NOT_ACCEPTABLE)
        return Message(code=Code.CONTENT, payload=payload, content_format=fmt)


class PackageUri(Value):
    async def render_put(self, request):
        c = self.client
        if request.opt.content_format is None:
            return Message(code=Code.BAD_REQUEST, payload=b"Content-Format missing")
        try:
            uri = decode_written(request.payload, request.opt.content_format, 1).decode()
        except Exception:  # noqa: BLE001
            return Message(code=Code.BAD_REQUEST)
        emit(event="write", path="/5/0/1", value=uri)
        if uri == "":
            c.uri = ""
            c.set(state=IDLE, result=0)
            return Message(code=Code.CHANGED)
        if c.delivery == 1:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        if c.state != IDLE:
            return Message(code=Code.BAD_REQUEST, payload=b"busy: write an empty URI first")
        c.uri = uri
        if not uri.startswith("coap://"):
            c.set(result=9)  # unsupported protocol
            return Message(code=Code.CHANGED)
        c.set(state=DOWNLOADING, result=0)
        asyncio.get_event_loop().create_task(c.download(uri))
        return Message(code=Code.CHANGED)


class Package(resource.Resource):
    def __init__(self, client):
        super().__init__()
        self.client = client

    async def render_put(self, request):
        c = self.client
        if c.delivery == 0:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        fmt = request.opt.content_format
        if fmt not in (OPAQUE, TLV):
            return Message(code=Code.UNSUPPORTED_CONTENT_FORMAT)
        image = decode_written(request.payload, fmt, 0)
        emit(event="write", path="/5/0/0", size=len(image))
        if not image:
            c.set(state=IDLE, result=0)
            return Message(code=Code.CHANGED)
        c.set(result=0)
        c.check(image, "push")
        return Message(code=Code.CHANGED)

    render_post = render_put


class Update(resource.Resource):
    def __init__(self, client):
        super().__init__()
        self.client = client

    async def render_post(self, request):
        emit(event="execute", path="/5/0/2")
        if self.client.state != DOWNLOADED:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        asyncio.get_event_loop().create_task(self.client.install())
        return Message(code=Code.CHANGED)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("server")
    p.add_argument("endpoint")
    p.add_argument("version")
    p.add_argument("--sha256", default="")
    p.add_argument("--new-version", default="")
    p.add_argument("--delivery", default="both", choices=["pull", "push", "both"])
    p.add_argument("--lifetime", type=int, default=60)
    p.add_argument("--linger", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()

    c = Client(args)
    site = resource.Site()
    for rid in (0, 1, 2, 3, 11, 16):
        site.add_resource(["3", "0", str(rid)], Value(c, 3, rid))
    site.add_resource(["3", "0"], Value(c, 3, None))
    c.observables["version"] = site._resources[("3", "0", "3")]
    for rid in (3, 5, 6, 7, 8, 9):
        r = Value(c, 5, rid)
        site.add_resource(["5", "0", str(rid)], r)
        c.observables[rid] = r
    site.add_resource(["5", "0"], Value(c, 5, None))
    site.add_resource(["5", "0", "0"], Package(c))
    site.add_resource(["5", "0", "1"], PackageUri(c, 5, 1))
    site.add_resource(["5", "0", "2"], Update(c))

    # One server context on one port: requests to the LwM2M server go out
    # from it, so the server's requests come back to the same socket.
    c.ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0))
    try:
        await c.register(args.server)
        updates = asyncio.get_event_loop().create_task(c.update_loop(args.server))
        try:
            code = await asyncio.wait_for(c.done, args.timeout)
        except asyncio.TimeoutError:
            emit(event="timeout", state=c.state, result=c.result)
            code = 1
        updates.cancel()
        msg = Message(code=Code.DELETE, uri=f"coap://{args.server}/" + "/".join(c.location))
        try:
            resp = await asyncio.wait_for(c.ctx.request(msg).response, 5)
            emit(event="deregistered", code=str(resp.code))
        except Exception as e:  # noqa: BLE001
            emit(event="deregister_failed", error=repr(e))
        return code
    finally:
        await c.ctx.shutdown()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
