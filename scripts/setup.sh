#!/usr/bin/env bash
# Installs what building and testing lwota needs on a fresh Debian machine,
# each piece only when it is missing (safe to run again):
#   - build: libssl-dev + pkg-config (the `openssl` crate behind src/dtls/);
#   - interop peers the tests drive (a missing one fails its test, never
#     skips it): libcoap's coap-client / coap-client-openssl /
#     coap-server-openssl, Python aiocoap (+ tinydtls), cbor2, selenium with
#     Debian's chromium + chromium-driver (console), openapi-spec-validator,
#     systemd-analyze (packaging), npm lwm2m-node-lib (pinned by its lock file).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

need_apt=""
want() { need_apt="$need_apt $*"; }
command -v coap-client-openssl >/dev/null 2>&1 || want libcoap3-bin
pkg-config --exists openssl 2>/dev/null || want libssl-dev pkg-config
# (aiocoap[tinydtls] builds tinydtls with autotools; Debian's libtool
# package provides `libtoolize`.)
command -v autoconf >/dev/null 2>&1 || want autoconf
command -v automake >/dev/null 2>&1 || want automake
command -v libtoolize >/dev/null 2>&1 || want libtool
command -v pkg-config >/dev/null 2>&1 || want pkg-config
command -v systemd-analyze >/dev/null 2>&1 || want systemd
{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } \
  || want chromium chromium-driver
{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || want nodejs npm
if [ -n "$need_apt" ]; then
  echo "installing (apt):$need_apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need_apt >/dev/null
fi

pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}
need_pip=()
python3 -c "import aiocoap, cbor2" >/dev/null 2>&1 || need_pip+=(aiocoap cbor2)
python3 -c "import DTLSSocket" >/dev/null 2>&1 || need_pip+=("aiocoap[tinydtls]")
python3 -c "import openapi_spec_validator, jsonschema" >/dev/null 2>&1 || need_pip+=(openapi-spec-validator)
python3 -c "import selenium" >/dev/null 2>&1 || need_pip+=(selenium)
# Signed manifests (tests/interop/verify_manifest.py): Ed25519 verification.
python3 -c "import cryptography" >/dev/null 2>&1 || need_pip+=(cryptography)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing (pip): ${need_pip[*]}"
  pip_install "${need_pip[@]}"
fi

# lwm2m-node-lib 1.4.0 (a third-party LwM2M 1.0 client, tests/lwm2m_interop.rs):
# reinstalled only when its lock file changed.
if ! cmp -s tests/interop/node/package-lock.json tests/interop/node/node_modules/.lwota-installed; then
  echo "installing lwm2m-node-lib (npm ci)"
  (cd tests/interop/node && npm ci --no-audit --no-fund --silent \
    && cp package-lock.json node_modules/.lwota-installed)
fi
