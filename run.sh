#!/usr/bin/env bash
# One command on a fresh machine: install everything (.venv + the default model), start the app.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
echo "==> starting the workbench on http://127.0.0.1:${PORT:-8501}"
exec .venv/bin/streamlit run app.py --server.port "${PORT:-8501}" "$@"
