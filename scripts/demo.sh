#!/usr/bin/env bash
# Set up, build, and run the main job on a fresh machine: build the example
# plugins from source (native cdylibs and WASM components; the Python and
# JavaScript ones after installing their SDKs: scripts/setup-sdks.sh), build `plexus`,
# then run the main pipeline (load → validate → normalise → save) over
# examples/data/seattle-weather.csv on its embedded defaults, and show one
# call of each plugin kind; then the same data through Rust, Python and
# JavaScript plugins together (examples/climate.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
bash scripts/build-plugins.sh "$PWD/target/plugins"
# The daemon's web UI (embedded into plexus; Node.js and npm).
bash scripts/build-ui.sh
cargo build --locked --release -p plexus --bin plexus
plexus=target/release/plexus
[ -n "${CARGO_TARGET_DIR:-}" ] && plexus="$CARGO_TARGET_DIR/release/plexus"
export PLEXUS_PLUGINS_DIR=$PWD/target/plugins

set -x
"$plexus" plugins list
"$plexus" workflow plan examples/pipeline.yaml
"$plexus" run examples/pipeline.yaml --output target/pipeline-results.json
head -3 target/seattle-weather-normalized.csv
"$plexus" call plexus.echo.native count --params '{"key": "runs", "steps": 4}'
"$plexus" call plexus.echo.wasm read_file --params '{"path": "/data/hello.txt"}'
"$plexus" run examples/climate.yaml --json --outputs-only
