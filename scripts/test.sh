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

if ! python3 -c "import aiocoap, cbor2" >/dev/null 2>&1; then
  echo "installing aiocoap and cbor2"
  python3 -m pip install --quiet --disable-pip-version-check aiocoap cbor2 \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages aiocoap cbor2
fi

# lwm2m-node-lib 1.4.0 (third-party LwM2M 1.0 client, tests/lwm2m_interop.rs):
# pinned by tests/interop/node/package-lock.json; reinstalled only when the
# lock file changed. No node/npm is an error, never a skip.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
  || { echo "node and npm are needed for the LwM2M interop tests (apt install nodejs npm)" >&2; exit 1; }
if ! cmp -s tests/interop/node/package-lock.json tests/interop/node/node_modules/.lwota-installed; then
  echo "installing lwm2m-node-lib (npm ci)"
  (cd tests/interop/node && npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.lwota-installed)
fi

# tests/openapi.rs validates the admin API's OpenAPI document with it.
if ! python3 -c "import openapi_spec_validator, jsonschema" >/dev/null 2>&1; then
  echo "installing openapi-spec-validator"
  python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openapi-spec-validator
fi

# Issue 12: the web console's browser test drives Debian's chromium through
# its chromedriver with Python selenium (a missing one fails that test).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! python3 -c "import selenium" >/dev/null 2>&1; then
  echo "installing selenium"
  python3 -m pip install --quiet --disable-pip-version-check selenium \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages selenium
fi

cargo test --release "$@"
