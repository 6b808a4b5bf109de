#!/usr/bin/env python3
"""An independent lwota device written only from docs/PROTOCOL.md, using
aiocoap and cbor2: poll, block-wise GET of the task's uri, verify SHA-256,
report each step, reboot on the new version, poll again.

usage: device.py HOST:PORT DEVICE PRODUCT VERSION
"""
import asyncio
import hashlib
import sys

import aiocoap
import cbor2
from aiocoap import Code, Message

CBOR = 60


async def post(ctx, base, path, body):
    msg = Message(code=Code.POST, uri=f"{base}{path}", payload=cbor2.dumps(body), content_format=CBOR)
    resp = await ctx.request(msg).response
    return resp


async def main(hostport, device, product, version):
    base = f"coap://{hostport}"
    ctx = await aiocoap.Context.create_client_context()
    try:
        resp = await post(ctx, base, f"/ota/{device}/poll", {"product": product, "version": version, "battery": 90})
        assert resp.code == Code.CONTENT, resp
        offer = cbor2.loads(resp.payload)
        print("poll ->", {k: v for k, v in offer.items() if k != "sha256"})
        if not offer:
            print("nothing to do", file=sys.stderr)
            return 1
        task = offer["task"]

        img = await ctx.request(Message(code=Code.GET, uri=f"{base}{offer['uri']}")).response
        assert img.code == Code.CONTENT, img
        data = img.payload
        assert len(data) == offer["size"], (len(data), offer["size"])
        for state in ["downloading", "downloaded"]:
            body = {"task": task, "state": state}
            if state == "downloading":
                body["progress"] = 100
            r = await post(ctx, base, f"/ota/{device}/report", body)
            assert r.code == Code.CHANGED, (state, r.code, r.payload)
        if hashlib.sha256(data).digest() != offer["sha256"]:
            await post(ctx, base, f"/ota/{device}/report", {"task": task, "state": "failed", "error": "sha256 mismatch"})
            return 1
        for state in ["verified", "updating"]:
            r = await post(ctx, base, f"/ota/{device}/report", {"task": task, "state": state})
            assert r.code == Code.CHANGED, (state, r.code, r.payload)
        r = await post(ctx, base, f"/ota/{device}/report", {"task": task, "state": "updated", "version": offer["version"]})
        assert r.code == Code.CHANGED, r

        # Reboot on the new version: nothing more to do, Max-Age says when to poll.
        resp = await post(ctx, base, f"/ota/{device}/poll", {"product": product, "version": offer["version"]})
        assert resp.code == Code.CONTENT
        assert cbor2.loads(resp.payload) == {}, resp.payload
        assert resp.opt.max_age is not None
        print("updated to", offer["version"])
        return 0
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:5])))
