#!/usr/bin/env python3
"""A device over CoAPS with aiocoap's tinydtls transport (DTLS 1.2,
TLS_PSK_WITH_AES_128_CCM_8 only): poll, block-wise GET of the task's
coaps:// uri, verify SHA-256, report each step up to updated.

usage: dtls_device.py HOST:PORT DEVICE PRODUCT VERSION IDENTITY KEY
"""
import asyncio
import hashlib
import sys

import aiocoap
import cbor2
from aiocoap import Code, Message

CBOR = 60


async def main(hostport, device, product, version, identity, key):
    base = f"coaps://{hostport}"
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials.load_from_dict(
        {f"{base}/*": {"dtls": {"psk": key.encode(), "client-identity": identity.encode()}}}
    )

    async def post(path, body):
        msg = Message(code=Code.POST, uri=f"{base}{path}", payload=cbor2.dumps(body), content_format=CBOR)
        return await ctx.request(msg).response

    try:
        resp = await post(f"/ota/{device}/poll", {"product": product, "version": version})
        assert resp.code == Code.CONTENT, (resp.code, resp.payload)
        offer = cbor2.loads(resp.payload)
        print("poll ->", {k: v for k, v in offer.items() if k != "sha256"})
        assert offer, "no task"
        assert offer["uri"].startswith("coaps://"), offer["uri"]
        task = offer["task"]
        img = await ctx.request(Message(code=Code.GET, uri=offer["uri"])).response
        assert img.code == Code.CONTENT, img
        data = img.payload
        assert len(data) == offer["size"], (len(data), offer["size"])
        assert hashlib.sha256(data).digest() == offer["sha256"], "sha256 mismatch"
        for state in ["downloaded", "verified", "updating"]:
            r = await post(f"/ota/{device}/report", {"task": task, "state": state})
            assert r.code == Code.CHANGED, (state, r.code, r.payload)
        r = await post(f"/ota/{device}/report", {"task": task, "state": "updated", "version": offer["version"]})
        assert r.code == Code.CHANGED, r
        # Another device's resource over this session: refused.
        r = await post("/ota/someone-else/poll", {"product": product, "version": version})
        assert r.code == Code.FORBIDDEN, r.code
        print("updated to", offer["version"])
        return 0
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:7])))
