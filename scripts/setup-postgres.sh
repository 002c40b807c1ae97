#!/usr/bin/env bash
# PostgreSQL's server binaries (initdb, pg_ctl, postgres) for the tests and
# benchmarks that start throw-away servers: Debian's postgresql-15, installed
# when no /usr/lib/postgresql/<version>/bin/initdb is there. The tests do not
# use the system cluster Debian's package creates (and may start): each test
# run starts its own server on a loopback port in a temporary directory and
# stops it after (plexus_daemon::testing). PLEXUS_PG_BIN points at other binaries.
set -euo pipefail
if [ -n "${PLEXUS_PG_BIN:-}" ] && [ -x "$PLEXUS_PG_BIN/initdb" ]; then exit 0; fi
if compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then exit 0; fi
echo "installing PostgreSQL 15 (Debian's postgresql-15)..." >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 >/dev/null
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || { echo "PostgreSQL's initdb not found after installing" >&2; exit 1; }
