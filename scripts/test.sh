#!/usr/bin/env bash
# Run every test: unit, doc and integration tests of the Rust workspace (the
# integration tests in tests/ build the example plugins from source: native,
# Rust WASM, Python and JavaScript components, into target/test-plugins), then
# the Python and JavaScript SDKs' own tests and their example plugins' tests
# (pytest, node --test), which also build components and run them through the
# `plexus` just built, then the Python API's tests (host/python, built as a
# wheel from the same build and installed), on both of its backends. The
# daemon's tests run twice: on SQLite and on PostgreSQL (PostgreSQL 15 is
# installed from Debian's packages when missing; the tests start and stop
# their own servers). Last, the web UI's end-to-end tests in headless
# Chromium (Debian's, installed when missing) against the daemon just built;
# their screenshots go to target/ui-screenshots. The UI is built first: the
# daemon embeds it.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
bash scripts/setup-postgres.sh
bash scripts/setup-browser.sh
cargo test --workspace --locked "$@"
# The daemon's suites again on PostgreSQL (a throw-away server on loopback): the
# in-process one, and the daemon processes' (but the tests of SQLite's file:
# its lock, a read-only or deleted file).
PLEXUS_TEST_STORE=postgres cargo test -p plexus-daemon --lib --locked tests::
PLEXUS_TEST_STORE=postgres cargo test -p plexus --test integration --locked -- \
  daemon:: daemon_faults::concurrent daemon_faults::sigterm lifecycle::in_a_daemon \
  isolation::the_daemon hostile::the_daemon secrets::a_secret_reaches hooks:: map:: artifacts:: ui::

bash scripts/setup-sdks.sh
export PLEXUS_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/plexus
target/python-sdk/bin/python -m pytest -q plugin-sdk/python/tests plugins/climate-py
# Built by the integration tests above; built here when they were filtered out.
[ -d target/test-plugins/csv-native ] || bash scripts/build-plugins.sh target/test-plugins
bash scripts/build-python-api.sh
target/python-sdk/bin/python -m pytest -q host/python/tests
(cd plugin-sdk/js && node --test)
(cd plugins/report-js && { [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error; } && node --test)
PLEXUS_TEST_PLUGINS=$PWD/target/test-plugins node --test host/daemon/ui/tests/*.test.mjs
