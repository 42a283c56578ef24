#!/usr/bin/env bash
# Installs Debian's chromium for the console's browser tests
# (sms/console/browser_test.go) when it is missing, and prints its path on
# stdout; everything else goes to stderr.
#
#   scripts/chromium.sh            # install if needed, print the path
#   SMS_CHROMIUM=/path scripts/chromium.sh   # use that binary if it exists
set -euo pipefail

find_chromium() {
  local c
  for c in "${SMS_CHROMIUM:-}" chromium chromium-browser; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

if path="$(find_chromium)"; then
  echo "$path"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is not installed and there is no apt-get here: install Chromium and set SMS_CHROMIUM to its path" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "chromium is not installed, and installing it needs root (or sudo)" >&2
    exit 1
  fi
fi
echo "installing chromium (Debian package, about 125 MB) ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
# fonts-dejavu-core: text in the screenshots renders the same on every machine.
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
find_chromium || { echo "chromium installed but not found on PATH" >&2; exit 1; }
