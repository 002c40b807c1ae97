#!/usr/bin/env bash
# Build the daemon's web UI from source: its npm packages, pinned by
# host/daemon/ui/package-lock.json (installed when missing or changed), then
# esbuild into host/daemon/ui/dist, which the daemon embeds when it is built
# (host/daemon/build.rs). Run it before building plexus; without it the daemon
# serves a page saying the UI was not built.
set -euo pipefail
cd "$(dirname "$0")/../host/daemon/ui"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs
