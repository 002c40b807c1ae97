#!/usr/bin/env bash
# Set up, build, and run the main job on a fresh machine: build the example
# plugins (native cdylib + WASM component from one source), list them, and call
# an operation of each kind through the one execution-context contract.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
bash scripts/build-plugins.sh "$PWD/target/plugins"
cargo build --locked --release -p plexus-host --bin plexus
plexus=target/release/plexus
[ -n "${CARGO_TARGET_DIR:-}" ] && plexus="$CARGO_TARGET_DIR/release/plexus"
export PLEXUS_PLUGINS_DIR=target/plugins

set -x
"$plexus" plugins list
"$plexus" call plexus.echo.native count --params '{"key": "runs", "steps": 4}'
"$plexus" call plexus.echo.wasm count --params '{"key": "runs", "steps": 4}'
"$plexus" call plexus.echo.wasm read_file --params '{"path": "/data/hello.txt"}'
"$plexus" call plexus.echo.wasm spin --params '{"ms": 0}' --timeout 200ms || echo "exit code $? (4 = timeout), as expected"
