#!/usr/bin/env bash
# Sets up .venv and runs the main job on the bundled model: the FinQA-lite demo (corpus and
# tool server, baseline eval, RL training, final eval, report). Extra arguments go to
# `agentrft demo` (--quick, --device cuda, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/agentrft demo "$@"
