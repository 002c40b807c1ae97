#!/usr/bin/env bash
# Criterion benchmarks of the host (README, "Speed"). Results: target/criterion/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh "$PWD/target/plugins"
# The worker program of the `*_workers` benchmarks (native plugins in worker processes).
cargo build --release --locked -p plexus-host --bin plexus-worker
# Only the benchmark targets, so that criterion's options reach criterion alone:
#   bash scripts/bench.sh -- --measurement-time 5 run_10k
bash scripts/setup-postgres.sh
# daemon (SQLite and PostgreSQL) and cluster: a throw-away PostgreSQL server on
# loopback, or $PLEXUS_BENCH_POSTGRES (a base URL) for an external one.
cargo bench --locked -p plexus-host -p plexus-workflow -p plexus-daemon -p plexus \
  --bench host --bench workflow --bench memory --bench daemon --bench cluster "$@"
# The Python API's side of `run_5_chain` (release wheel into target/python-sdk).
bash scripts/build-python-api.sh --release
PLEXUS_BENCH_PLUGINS="$PWD/target/plugins" target/python-sdk/bin/python host/python/benches/execute.py
