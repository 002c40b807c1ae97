#!/usr/bin/env bash
# The browser the web UI's end-to-end tests drive: Debian's Chromium
# (/usr/bin/chromium), installed when missing, and the UI's npm packages
# (playwright-core among them: it drives that Chromium and downloads no
# browser). PLEXUS_CHROMIUM points at another Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PLEXUS_CHROMIUM:-}" ] && ! [ -x /usr/bin/chromium ]; then
  echo "installing Chromium (Debian's chromium)..." >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  [ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium not found after installing" >&2; exit 1; }
fi
bash scripts/build-ui.sh
