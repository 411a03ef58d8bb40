#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard browser test, once, and prints its
# path. Needs root (or passwordless sudo) for apt-get on a fresh machine.
set -euo pipefail

for candidate in "${SIGHTLINE_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "$candidate"
    exit 0
  fi
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo -n"
fi
echo "==> installing Debian's chromium (for the dashboard browser test)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -qq --no-install-recommends chromium >&2; then
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends chromium >&2
fi
echo /usr/bin/chromium
