#!/usr/bin/env bash
# Prove the CUDA paths on a GPU machine:
#   1. the tests marked `gpu` (torch on CUDA, ONNX Runtime's CUDA provider, GPU clocks and memory);
#   2. the real default model installed from its source, exported, checked and benchmarked on
#      torch (CUDA) and ONNX Runtime (CUDA provider), fp32 and fused.
#
#   scripts/gpu_check.sh [OUT_DIR]        (default artifacts/gpu)
#
# Runs with $PYTHON (default: .venv/bin/python if present, else python3), which needs torch with
# CUDA and onnxruntime-gpu: `scripts/setup.sh` installs them when `nvidia-smi` sees a GPU.
# The store is a temporary one, so the user's store is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
out=${1:-artifacts/gpu}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

"$PYTHON" - <<'EOF' | tee "$out/environment.txt"
import onnxruntime as ort
import torch
import transformers

print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))
print("onnxruntime", ort.__version__, ort.get_available_providers())
print("transformers", transformers.__version__)
EOF

echo "==> tests marked gpu"
"$PYTHON" -m pytest -q -m gpu tests/gpu -rA -p no:cacheprovider 2>&1 | tee "$out/gpu-tests.log"

echo "==> the real default model on CUDA"
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export WORKBENCH_HOME="$home"
"$PYTHON" -m workbench store install smollm2-135m-instruct
for variant in fp32 fused; do
  "$PYTHON" -m workbench export smollm2-135m-instruct --variant "$variant"
done
"$PYTHON" -m workbench bench smollm2-135m-instruct --device cuda \
  --backends torch,onnxruntime,onnxruntime-fused --prompt-lengths 16,128,512 --new-tokens 64 \
  --json "$out/bench-cuda.json" 2>"$out/bench-cuda.log" | tee "$out/bench-cuda.txt"
grep -h "^note:" "$out/bench-cuda.log" || true
