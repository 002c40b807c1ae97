#!/usr/bin/env bash
# Set up this checkout's Python and JavaScript plugin SDKs, for building and
# testing plugins written with them:
#   python: a virtualenv at target/python-sdk with plugin-sdk/python installed
#           (editable) and pytest; pip fetches the pinned componentize-py from PyPI,
#           and maturin, which builds the Python API (scripts/build-python-api.sh).
#   js:     plugin-sdk/js's pinned npm dependencies (componentize-js, esbuild),
#           from its package-lock.json.
# Quick when already done (a stamp per SDK records what was installed).
# Usage: scripts/setup-sdks.sh [python|js|all]   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}

# One setup at a time (the integration tests may start two at once).
mkdir -p "$root/target"
exec 9>"$root/target/.setup-sdks.lock"
flock 9

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

if [ "$what" = python ] || [ "$what" = all ]; then
  venv=$root/target/python-sdk
  maturin=maturin==1.16.0
  stamp=$( (cat "$root/plugin-sdk/python/pyproject.toml"; echo "$maturin") | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$venv/.plexus-stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root/plugin-sdk/python[test]" "$maturin"
    echo "$stamp" > "$venv/.plexus-stamp"
  fi
fi

if [ "$what" = js ] || [ "$what" = all ]; then
  sdk=$root/plugin-sdk/js
  stamp=$(stamp_of "$sdk/package.json" "$sdk/package-lock.json")
  if [ "$(cat "$sdk/node_modules/.plexus-stamp" 2>/dev/null)" != "$stamp" ]; then
    # `npm install` (it keeps to package-lock.json): npm 11's `npm ci` refuses this lock
    # file over optional platform packages declared without a version (jco's).
    (cd "$sdk" && npm install --no-audit --no-fund --loglevel=error)
    echo "$stamp" > "$sdk/node_modules/.plexus-stamp"
  fi
fi
