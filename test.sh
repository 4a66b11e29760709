#!/usr/bin/env bash
# One command on a fresh machine: install what the tests need, then run every test tier.
# Extra arguments go to pytest, e.g.  ./test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --no-model
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "color emoji" || ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; then
  echo "==> installing Chromium for the browser tests"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium fonts-noto-color-emoji fonts-noto-cjk
fi
exec .venv/bin/python -m pytest -ra "$@"
