#!/usr/bin/env bash
# The cost of a WASM plugin per language (README, "Cost per language"): for the
# Rust, Python and JavaScript example components, the component's size, the
# time to build it (Python and JavaScript: the SDK's build), the first load
# (compiling it into an empty cache), a start from the cache, and one trivial
# call (the median `elapsed_ms` of `plexus call --json` over N runs: a fresh
# instance, the call, its output).
# Usage: scripts/lang-costs.sh [N]   (default 20; uses target/release/plexus and
# target/plugins, building them first as scripts/demo.sh does)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-20}
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --locked --release -p plexus --bin plexus >&2
plexus=$target/release/plexus
bash scripts/build-plugins.sh "$root/target/plugins" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

seconds() { python3 -c 'import sys, time; s = time.monotonic(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(f"{time.monotonic() - s:.2f}")' "$@"; }

median_call() { # artifact operation params
  for _ in $(seq "$runs"); do
    "$plexus" call --artifact "$1" "$2" --params "$3" --json --cache-dir "$work/cache-$4" -q | python3 -c 'import json, sys; print(json.load(sys.stdin)["elapsed_ms"])'
  done | sort -g | awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] }'
}

echo "| language | example | component | build | first load (compile) | start from cache | one call |"
echo "|---|---|---|---|---|---|---|"
while read -r lang name artifact op params; do
  wasm=$root/target/plugins/$name-wasm/$artifact
  size=$(python3 -c "import os, sys; print(f'{os.path.getsize(sys.argv[1]) / 1e6:.1f} MB')" "$wasm")
  case $lang in
    Rust) build="cargo (incremental)" ;;
    Python) build="$(seconds target/python-sdk/bin/python -m plexus_sdk build "plugins/$name" --out "$work/$artifact") s" ;;
    JavaScript) build="$(cd "plugins/$name" && seconds npx --no-install plexus-plugin-sdk build . --out "$work/$artifact") s" ;;
  esac
  cold=$(seconds "$plexus" call --artifact "$wasm" "$op" --params "$params" --cache-dir "$work/cache-$name" -q)
  warm=$(seconds "$plexus" call --artifact "$wasm" "$op" --params "$params" --cache-dir "$work/cache-$name" -q)
  call=$(median_call "$wasm" "$op" "$params" "$name")
  echo "| $lang | \`$name\` \`$op\` | $size | $build | $cold s | $warm s | $call ms |"
done <<'EOF'
Rust echo plexus_echo.wasm echo {"a":1}
Python climate-py plexus_climate.wasm counts {"rows":[{"w":"sun"}],"field":"w"}
JavaScript report-js plexus_report.wasm rank {"rows":[{"x":1}],"by":"x"}
EOF
