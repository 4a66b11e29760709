#!/usr/bin/env bash
# One command on a fresh machine: install what the tests need, then run every test tier.
# Extra arguments go to pytest. The tiers (a test's folder is its tier, see tests/conftest.py):
#   ./test.sh                                   everything (CI: .ci/run)
#   ./test.sh -m "not slow and not browser"     the quick tier: unit and page tests on tiny models
#   ./test.sh -m browser                        the app in headless Chromium (tests/browser/)
#   ./test.sh -m slow                           the real store models (downloads, conversions)
# Every test is bounded (pytest-timeout, see pyproject.toml): a hang fails with a traceback.
# A selection that matches no test (pytest's exit status 5) is reported and counts as a pass.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --no-model
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "color emoji" || ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; then
  echo "==> installing Chromium for the browser tests"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium fonts-noto-color-emoji fonts-noto-cjk
fi
status=0
.venv/bin/python -m pytest -ra "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "==> no test matched the selection ($*): nothing to run"
  exit 0
fi
exit "$status"
