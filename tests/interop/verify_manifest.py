#!/usr/bin/env python3
"""A device that checks lwota's signed manifest (docs/PROTOCOL.md, "Signed
manifests"), written with aiocoap, cbor2 and cryptography only: poll,
verify the COSE_Sign1 manifest with the product's Ed25519 public key,
download the image block-wise, check size and SHA-256 against the
manifest, report `verified` (or `failed` with the reason).

usage: verify_manifest.py HOST:PORT DEVICE PRODUCT VERSION PUBLIC_KEY [--tamper]
  PUBLIC_KEY: 64 hex digits (`public_key` of GET /api/v1/products/P/signing-key)
              or a PEM file (`lwota key show --product P --pem > key.pem`)
  --tamper:   change the manifest's version before verifying (must fail)
exit status: 0 verified and downloaded, 2 manifest or image rejected, 1 other error
"""
import asyncio
import hashlib
import sys

import aiocoap
import cbor2
from aiocoap import Code, Message
from aiocoap.optiontypes import BlockOption
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

CBOR = 60
COSE_SIGN1_TAG = 18
ALG, KID, EDDSA = 1, 4, -8  # COSE header labels / algorithm (RFC 9052, 9053)


class Rejected(Exception):
    pass


def load_key(arg):
    if arg.endswith(".pem"):
        with open(arg, "rb") as f:
            key = load_pem_public_key(f.read())
    else:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(arg))
    raw = key.public_bytes_raw()
    return key, hashlib.sha256(raw).digest()[:8]


def verify_manifest(manifest, key, kid, tamper=False):
    """Returns the manifest's payload map, or raises Rejected."""
    obj = cbor2.loads(manifest)
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG or len(obj.value) != 4:
        raise Rejected("not a tagged COSE_Sign1")
    protected, _unprotected, payload, signature = obj.value
    header = cbor2.loads(protected)
    if header.get(ALG) != EDDSA:
        raise Rejected(f"algorithm {header.get(ALG)}, expected EdDSA (-8)")
    if header.get(KID) != kid:
        raise Rejected(f"signed by key id {header.get(KID).hex()}, not {kid.hex()}")
    if tamper:
        fields = cbor2.loads(payload)
        fields["version"] = fields["version"] + "-evil"
        payload = cbor2.dumps(fields)
    # RFC 9052 section 4.4: Sig_structure = ["Signature1", protected, external_aad, payload]
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    try:
        key.verify(signature, to_be_signed)
    except InvalidSignature:
        raise Rejected("bad signature")
    return cbor2.loads(payload)


async def post(ctx, base, path, body):
    msg = Message(code=Code.POST, uri=base + path, payload=cbor2.dumps(body), content_format=CBOR)
    resp = await ctx.request(msg).response
    if resp.code == Code.UNAUTHORIZED and resp.opt.echo is not None:
        # RFC 9175: a signed answer is larger than lwota sends to an
        # address that has not proven it receives (3x the request); the
        # server answers 4.01 with an Echo value and the device repeats
        # the request with it (a poll is safe to repeat).
        msg = Message(code=Code.POST, uri=base + path, payload=cbor2.dumps(body), content_format=CBOR)
        msg.opt.echo = resp.opt.echo
        resp = await ctx.request(msg).response
    return resp


async def main(hostport, device, product, version, key_arg, tamper):
    key, kid = load_key(key_arg)
    base = f"coap://{hostport}"
    ctx = await aiocoap.Context.create_client_context()
    try:
        resp = await post(ctx, base, f"/ota/{device}/poll", {"product": product, "version": version})
        offer = cbor2.loads(resp.payload)
        if resp.code != Code.CONTENT or not offer:
            print(f"no task: {resp.code} {offer}", file=sys.stderr)
            return 1
        try:
            if "manifest" not in offer:
                raise Rejected("the answer carries no manifest")
            m = verify_manifest(offer["manifest"], key, kid, tamper)
            if m["product"] != product or m["version"] != offer["version"]:
                raise Rejected(f"manifest names {m['product']} {m['version']}")
            # Block-wise (64-byte blocks); aiocoap fetches every block.
            get = Message(code=Code.GET, uri=base + offer["uri"])
            get.opt.block2 = BlockOption.BlockwiseTuple(0, False, 2)
            image = (await ctx.request(get).response).payload
            if len(image) != m["size"] or hashlib.sha256(image).digest() != m["sha256"]:
                raise Rejected("image does not match the manifest's size and sha256")
        except Rejected as why:
            await post(ctx, base, f"/ota/{device}/report",
                       {"task": offer["task"], "state": "failed", "error": f"manifest: {why}"})
            print(f"REJECTED: {why}")
            return 2
        for state in ["downloaded", "verified"]:
            r = await post(ctx, base, f"/ota/{device}/report", {"task": offer["task"], "state": state})
            assert r.code == Code.CHANGED, (state, r.code, r.payload)
        print(f"manifest verified: {m['product']} {m['version']} {m['size']} bytes "
              f"sha256 {m['sha256'].hex()} kid {kid.hex()}")
        return 0
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--tamper"]
    if len(args) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(1)
    sys.exit(asyncio.run(main(*args, tamper="--tamper" in sys.argv)))
