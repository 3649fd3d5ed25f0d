#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite, slow tests on the bundled model included.
# Also sets up .venv-vllm (scripts/setup_vllm.sh, ~5 min the first time) for the tests marked
# `vllm`; AGENTRFT_SKIP_VLLM=1 skips that for a quick local run (those tests then skip, or
# fail when CI=true: CI must run them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${AGENTRFT_SKIP_VLLM:-0}" = 1 ]; then
  echo "note: AGENTRFT_SKIP_VLLM=1: not setting up .venv-vllm"
else
  bash scripts/setup_vllm.sh
fi
exec .venv/bin/python -m pytest -q -rs "$@"
