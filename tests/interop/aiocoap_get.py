#!/usr/bin/env python3
"""Download a resource with aiocoap (block-wise handled by aiocoap itself).

usage: aiocoap_get.py URI OUTFILE [SZX]
"""
import asyncio
import sys

import aiocoap
from aiocoap import Code, Message
from aiocoap.optiontypes import BlockOption


async def main(uri, out, szx):
    ctx = await aiocoap.Context.create_client_context()
    try:
        # RFC 9175: the server bounds responses to an address it has not
        # verified and offers an Echo value; echoing it (in every block
        # request, which aiocoap copies from this one) gets full-size
        # blocks. aiocoap 0.4 does not echo by itself.
        probe = Message(code=Code.GET, uri=uri)
        probe.opt.block2 = BlockOption.BlockwiseTuple(0, False, 0)
        first = await ctx.request(probe, handle_blockwise=False).response
        msg = Message(code=Code.GET, uri=uri)
        if first.opt.echo is not None:
            msg.opt.echo = first.opt.echo
        if szx is not None:
            msg.opt.block2 = BlockOption.BlockwiseTuple(0, False, szx)
        resp = await ctx.request(msg).response
        print("echoed" if first.opt.echo is not None else "no echo offered")
        if not resp.code.is_successful():
            print(f"error {resp.code}: {resp.payload!r}", file=sys.stderr)
            return 1
        with open(out, "wb") as f:
            f.write(resp.payload)
        return 0
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    szx = int(sys.argv[3]) if len(sys.argv) > 3 else None
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], szx)))
