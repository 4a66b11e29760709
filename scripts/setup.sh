#!/usr/bin/env bash
# Install everything into .venv at the repo root (idempotent; quick when nothing changed).
#   scripts/setup.sh            packages + the default model
#   scripts/setup.sh --no-model packages only
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras="dev"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  extras="dev,gpu"
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-$extras"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  echo "==> installing the workbench and its libraries into .venv ($extras)"
  .venv/bin/python -m pip install --disable-pip-version-check -q -e ".[$extras]"
  if [ "$extras" = "dev,gpu" ]; then
    # onnxruntime-gpu provides the same module as onnxruntime: keep only the GPU build
    .venv/bin/python -m pip uninstall -y -q onnxruntime || true
    .venv/bin/python -m pip install -q --force-reinstall --no-deps onnxruntime-gpu==1.31.1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
if [ "${1:-}" != "--no-model" ]; then
  echo "==> installing the default model into the store"
  .venv/bin/workbench store install smollm2-135m-instruct
fi
