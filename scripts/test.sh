#!/usr/bin/env bash
# The README's test command: installs the third-party peers the interop
# tests drive when they are missing (scripts/setup.sh), then runs the whole
# test suite. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release "$@"
