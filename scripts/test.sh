#!/usr/bin/env bash
# Run every test: unit tests, doc tests, and the integration tests in tests/
# (which build the example plugins from source, native and WASM).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo test --workspace --locked "$@"
