#!/usr/bin/env bash
# Build the example plugins from source and lay them out as a plugins directory:
#   OUT/<plugin>-native/{plugin.toml, lib<crate>.so}
#   OUT/<plugin>-wasm/{plugin.toml, <crate>.wasm, data/}
# A plugin folder with a Cargo.toml is Rust (both kinds, as its manifests say); one
# with a pyproject.toml is Python and one with a package.json JavaScript, built into
# a WASM component by its SDK (scripts/setup-sdks.sh installs the SDKs and their
# pinned componentize-py / componentize-js).
# Each manifest is copied from plugins/<plugin>/manifest/{native,wasm}.toml with the
# artifact's sha256 added. Usage: scripts/build-plugins.sh [OUT [SRC]]
# (default: target/plugins, from plugins/; the tests build tests/plugins/ too).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/plugins}
src=${2:-plugins}
cd "$root"

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# Prints the path of the cdylib artifact cargo built for package $1 (extra cargo args follow).
build_artifact() {
  local package=$1; shift
  cargo build --release --locked -p "$package" --message-format=json-render-diagnostics "$@" |
    python3 -c '
import json, sys
want = sys.argv[1].replace("-", "_")
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == want and "cdylib" in msg["target"]["kind"]:
        for f in msg["filenames"]:
            if f.endswith((".so", ".dylib", ".dll", ".wasm")):
                print(f)
' "$package"
}

install_plugin() { # name kind artifact
  local name=$1 kind=$2 artifact=$3 dest="$out/$1-$2"
  rm -rf "$dest" && mkdir -p "$dest"
  cp "$artifact" "$dest/"
  [ -d "$src/$name/data" ] && [ "$kind" = wasm ] && cp -r "$src/$name/data" "$dest/data"
  { cat "$src/$name/manifest/$kind.toml"; } > "$dest/plugin.toml"
  local sum; sum=$(sha256sum "$artifact" | cut -d' ' -f1)
  # sha256 is a top-level key: insert it before the first table header.
  python3 - "$dest/plugin.toml" "$sum" <<'PY'
import sys
path, digest = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
at = next((i for i, l in enumerate(lines) if l.startswith("[")), len(lines))
lines.insert(at, f'sha256 = "{digest}"\n')
open(path, "w").write("\n".join(lines) + "\n")
PY
  echo "installed $dest"
}

# The artifact file name a manifest names.
artifact_name() { sed -n 's/^artifact *= *"\(.*\)"/\1/p' "$1" | head -1; }

# A digest of the sources of a component built by an SDK (the plugin's and the
# SDK's): a component whose digest is unchanged is not built again.
sources_digest() {
  find -L "$@" -type f -not -path '*/node_modules/*' -not -path '*/__pycache__/*' -not -path '*/.venv/*' \
    -not -path '*/build/*' -not -path '*.egg-info/*' -not -path '*/.pytest_cache/*' -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

# Build the Python or JavaScript plugin in $1 into the component $2 with its SDK,
# unless its sources and those of the SDK folders that follow ($3...) are unchanged.
build_component() {
  local dir=$1 artifact=$2; shift 2
  local digest; digest=$(sources_digest "$dir" "$@")
  if [ -f "$artifact" ] && [ "$(cat "$artifact.digest" 2>/dev/null)" = "$digest" ]; then
    return
  fi
  mkdir -p "$(dirname "$artifact")"
  rm -f "$artifact" "$artifact.digest"
  if [ -f "$dir/pyproject.toml" ]; then
    "$root/target/python-sdk/bin/python" -m plexus_sdk build "$dir" --out "$artifact" >/dev/null
  else
    (cd "$dir" && { [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error; } &&
      npx --no-install plexus-plugin-sdk build . --out "$artifact" >/dev/null)
  fi
  echo "$digest" > "$artifact.digest"
}

for dir in "$src"/*/; do
  name=$(basename "$dir")
  if [ -f "$dir/pyproject.toml" ] || [ -f "$dir/package.json" ]; then
    if [ -f "$dir/pyproject.toml" ]; then lang=python; else lang=js; fi
    bash "$root/scripts/setup-sdks.sh" "$lang"
    # Built outside OUT: every folder in OUT is read as a plugin folder.
    artifact="$root/target/sdk-builds/$name/$(artifact_name "$dir/manifest/wasm.toml")"
    build_component "$dir" "$artifact" "$root/plugin-sdk/$lang/"
    install_plugin "$name" wasm "$artifact"
    continue
  fi
  package=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)
  if [ -f "$dir/manifest/native.toml" ]; then
    install_plugin "$name" native "$(build_artifact "$package")"
  fi
  if [ -f "$dir/manifest/wasm.toml" ]; then
    install_plugin "$name" wasm "$(build_artifact "$package" --target wasm32-wasip2)"
  fi
done
