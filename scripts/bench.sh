#!/usr/bin/env bash
# Criterion benchmarks of the host (README, "Speed"). Results: target/criterion/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh "$PWD/target/plugins"
cargo bench --locked -p plexus-host -p plexus-workflow -p plexus-daemon --benches "$@"
