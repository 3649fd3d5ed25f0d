#!/usr/bin/env bash
# Sets up .venv and runs the main job on the bundled model. Until the FinQA-lite demo lands,
# that is the small lookup task: baseline eval (step 0), RL training, final eval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m examples.lookup.task examples/lookup/data
exec .venv/bin/agentrft train examples/lookup/job.yaml --out "${OUT:-runs/lookup}" "$@"
