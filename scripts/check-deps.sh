#!/usr/bin/env bash
# The embeddable plugin host (`plexus-host`) must not pull in what only the daemon,
# the workflow engine or the CLI need: an embedder who wants the runtime compiles
# the runtime. Fails naming any such crate found in its normal dependency tree.
set -euo pipefail
cd "$(dirname "$0")/.."
# Its default feature `wasi-http` brings hyper's *client* (the host sends a
# component's wasi:http requests); without it, no HTTP stack at all.
forbidden='^(axum|rusqlite|libsqlite3-sys|clap|croner|notify|indicatif|prometheus-client|minijinja|jsonschema|serde-saphyr)$'
for features in "" "--no-default-features"; do
  [ -n "$features" ] && forbidden="${forbidden%)\$}|hyper|h2)\$"
  found=$(cargo tree --locked -p plexus-host $features -e normal --prefix none | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
  if [ -n "$found" ]; then
    echo "plexus-host ${features:-(default features)} must not depend on: $(echo $found)" >&2
    exit 1
  fi
  echo "plexus-host ${features:-(default features)}: $(cargo tree --locked -p plexus-host $features -e normal --prefix none | awk '{print $1}' | sort -u | wc -l) crates, none of the daemon's or the CLI's"
done

# The workflow engine and the API's types (plexus-client without its `http`
# feature) need no HTTP stack, SQLite or CLI either.
forbidden='^(axum|hyper|hyper-util|rusqlite|libsqlite3-sys|clap|croner|notify|indicatif|prometheus-client|utoipa)$'
for crate in plexus-workflow; do
  found=$(cargo tree --locked -p "$crate" -e normal --prefix none | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
  if [ -n "$found" ]; then
    echo "$crate must not depend on: $(echo $found)" >&2
    exit 1
  fi
done
found=$(cargo tree --locked -p plexus-client --no-default-features -e normal --prefix none | awk '{print $1}' | sort -u | grep -E '^(hyper|tokio|axum|rusqlite|utoipa)$' || true)
if [ -n "$found" ]; then
  echo "plexus-client without \`http\` must not depend on: $(echo $found)" >&2
  exit 1
fi
echo "plexus-workflow and plexus-client (types only): no HTTP stack, SQLite or CLI"
