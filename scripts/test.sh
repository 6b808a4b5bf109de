#!/usr/bin/env bash
# The README's test command: installs the third-party peers the interop
# tests drive (libcoap's coap-client, Python aiocoap + cbor2) when they are
# missing, then runs the whole test suite. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

have_coap_client() {
  command -v coap-client >/dev/null 2>&1 || command -v coap-client-notls >/dev/null 2>&1 \
    || command -v coap-client-openssl >/dev/null 2>&1 || command -v coap-client-gnutls >/dev/null 2>&1
}

if ! have_coap_client; then
  echo "installing libcoap3-bin (coap-client)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libcoap3-bin >/dev/null
fi

# CoAPS (issue 11): libcoap's OpenSSL client (coap-client-openssl, in
# libcoap3-bin), OpenSSL headers for the server's DTLS engine, and the
# autotools that pip needs to build aiocoap's tinydtls (DTLSSocket).
need_apt=""
command -v coap-client-openssl >/dev/null 2>&1 || need_apt="$need_apt libcoap3-bin"
pkg-config --exists openssl 2>/dev/null || need_apt="$need_apt libssl-dev pkg-config"
for tool in autoconf automake libtool pkg-config; do
  command -v "$tool" >/dev/null 2>&1 || need_apt="$need_apt $tool"
done
if [ -n "$need_apt" ]; then
  echo "installing$need_apt"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need_apt >/dev/null
fi

if ! python3 -c "import aiocoap, cbor2" >/dev/null 2>&1; then
  echo "installing aiocoap and cbor2"
  python3 -m pip install --quiet --disable-pip-version-check aiocoap cbor2 \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages aiocoap cbor2
fi

if ! python3 -c "import aiocoap, DTLSSocket" >/dev/null 2>&1; then
  echo "installing aiocoap[tinydtls]"
  python3 -m pip install --quiet --disable-pip-version-check "aiocoap[tinydtls]" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "aiocoap[tinydtls]"
fi

# tests/openapi.rs validates the admin API's OpenAPI document with it.
if ! python3 -c "import openapi_spec_validator, jsonschema" >/dev/null 2>&1; then
  echo "installing openapi-spec-validator"
  python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openapi-spec-validator
fi

cargo test --release "$@"
