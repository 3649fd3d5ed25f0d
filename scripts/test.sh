#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite, slow tests on the bundled model included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -rs "$@"
