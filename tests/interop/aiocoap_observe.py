#!/usr/bin/env python3
"""Hold an Observe on /ota/{device}/task with aiocoap and wait for a task.

usage: aiocoap_observe.py URI TIMEOUT_S

Prints `READY {...}` after the first response, then `TASK <task> <version>`
when a notification carries a task, and exits 0; exits 1 on timeout.
"""
import asyncio
import sys

import aiocoap
import cbor2
from aiocoap import Code, Message


async def main(uri, timeout):
    ctx = await aiocoap.Context.create_client_context()
    try:
        req = ctx.request(Message(code=Code.GET, uri=uri, observe=0))
        first = await req.response
        if not first.code.is_successful() or first.opt.observe is None:
            print(f"not observed: {first.code} {first.payload!r}", file=sys.stderr)
            return 1
        print(f"READY {cbor2.loads(first.payload)!r}", flush=True)

        async def wait_task():
            async for note in req.observation:
                body = cbor2.loads(note.payload)
                if body:
                    return body

        body = await asyncio.wait_for(wait_task(), timeout)
        print(f"TASK {body['task']} {body['version']}", flush=True)
        req.observation.cancel()
        return 0
    except asyncio.TimeoutError:
        print("timed out waiting for a notification", file=sys.stderr)
        return 1
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], float(sys.argv[2]))))
