#!/usr/bin/env bash
# Build the Python API (host/python: `import plexus`) as a wheel with maturin
# and install it into the SDK's virtualenv (target/python-sdk, made by
# scripts/setup-sdks.sh, which also installs maturin).
#   scripts/build-python-api.sh            dev profile: shares the build of `cargo test --workspace`
#   scripts/build-python-api.sh --release  release profile (benchmarks, a wheel to hand out)
# The wheel lands in target/wheels/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=dev
[ "${1:-}" = --release ] && profile=release
bash scripts/setup-sdks.sh python
venv=$root/target/python-sdk
rm -f target/wheels/plexus_host-*.whl
"$venv/bin/maturin" build --quiet --locked --strip --profile "$profile" \
  -m host/python/Cargo.toml -i "$venv/bin/python" -o target/wheels
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels/plexus_host-*.whl
