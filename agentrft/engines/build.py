"""Choose and build the job's engine from `method.reinforcement.engine`.

    engine: {type: static}          # in-process: slots, continuous batching, CUDA graphs (GPU default)
            # optional: max_slots (sequences decoded at once), cuda_graphs (true)
    engine: {type: transformers}    # in-process: one left-padded batch at a time (CPU default)
    engine: {type: remote, base_url: "http://127.0.0.1:8001/v1"}   # vLLM, SGLang, agentrft serve
            # optional: model (the base model's id on the server; default: the first listed),
            # api_key_env (the variable holding the server's key), adapter_dir (a folder the
            # server can read, for the adapters pushed between steps), timeout_s, seeds
    engine: {type: vllm}            # a vLLM server agentrft starts from .venv-vllm (scripts/setup_vllm.sh)
            # optional: python, kv_cache_gb (2), gpu_memory_utilization, dtype, max_model_len,
            # startup_timeout_s, max_restarts, extra_args, seeds, timeout_s
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

from agentrft.engines.base import Engine
from agentrft.errors import SpecError
from agentrft.spec.job import JobSpec

FIELD = "method.reinforcement.engine"
CHECKOUT_VLLM_PYTHON = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"


def default_engine_type(device: str) -> str:
    """Slots and CUDA graphs pay off on a GPU. On CPU the static engine measured only 5% faster
    on first turns and 13% on two-turn rollouts (bench/cpu_rollout.py), while its fixed slots
    hold max_slots × max_len keys and values from the start (~6 GB in fp32 for 64 × 2,100
    tokens of SmolLM2); the plain engine's cache grows with what runs, and it is what the CPU
    demo's figures were taken with."""
    return "static" if str(device).startswith("cuda") else "transformers"


def check_engine(job: JobSpec) -> None:
    """What the spec's types cannot say: a remote engine needs LoRA and its key variable."""
    decl = job.rl.engine
    if decl is not None and decl.type == "vllm":  # LoRA or full weights; it needs its Python
        python = Path(decl.python).expanduser() if decl.python else default_vllm_python()
        if not python.is_file():
            raise SpecError(f"no Python for vLLM at {python}: run scripts/setup_vllm.sh, or "
                            f"name vLLM's interpreter here", field=f"{FIELD}.python")
        if job.hp.max_staleness and job.hp.finetune == "full":
            raise SpecError("asynchronous RL (hyperparameters.max_staleness > 0) needs LoRA with "
                            "a vLLM engine: a full fine-tune's weights reach vLLM by reloading "
                            "or restarting it, which would cut off the rollouts still running",
                            field="hyperparameters.max_staleness")
        return
    if decl is None or decl.type != "remote":
        return
    if job.hp.finetune != "lora":
        raise SpecError("a remote engine samples the server's base model plus the LoRA adapter "
                        "pushed after every step, so hyperparameters.finetune must be 'lora' "
                        f"(got {job.hp.finetune!r})", field=f"{FIELD}.type")
    if decl.api_key_env and not os.environ.get(decl.api_key_env):
        raise SpecError(f"environment variable {decl.api_key_env!r} is not set",
                        field=f"{FIELD}.api_key_env")


def build_engine(job: JobSpec, model, tokenizer, *, device: str) -> Engine:
    """The job's engine over `model`; with `max_staleness` > 0 an in-process engine samples
    from its own copy (engines/snapshot.py) and a remote one keeps the previous adapter loaded
    for the requests still running when the next one arrives."""
    decl = job.rl.engine
    kind = decl.type if decl is not None and decl.type else default_engine_type(device)
    if job.hp.max_staleness and kind in ("transformers", "static"):
        from agentrft.engines.snapshot import SnapshotEngine

        return SnapshotEngine(model, lambda copy: _in_process(job, kind, copy, tokenizer, device))
    if kind in ("transformers", "static"):
        return _in_process(job, kind, model, tokenizer, device)
    if kind == "vllm":
        engine = build_managed_vllm(job, model, tokenizer, device=device)
    else:
        from agentrft.engines.remote import RemoteEngine

        check_engine(job)
        engine = RemoteEngine(decl.base_url, model=decl.model, seed=job.effective_seed,
                              api_key=os.environ.get(decl.api_key_env) if decl.api_key_env else None,
                              timeout_s=decl.timeout_s, adapter_dir=decl.adapter_dir,
                              send_seeds=decl.seeds)
    if job.hp.max_staleness:
        engine.keep_adapters = 2
    if hasattr(model, "peft_config"):  # the server starts from what the policy holds now
        engine.sync_weights(model)
    return engine


def _in_process(job: JobSpec, kind: str, model, tokenizer, device: str) -> Engine:
    decl = job.rl.engine
    if kind == "transformers":
        from agentrft.engines.transformers_engine import TransformersEngine

        # the trainer tells the engine when the weights change (sync_weights): a kept prompt
        # head is safe to reuse between updates
        return TransformersEngine(model, pad_token_id=tokenizer.pad_token_id, device=device,
                                  seed=job.effective_seed, prefix_cache=True)
    if kind == "static":
        from agentrft.engines.static_engine import StaticEngine

        on_gpu = str(device).startswith("cuda")
        hp = job.hp
        return StaticEngine(model, pad_token_id=tokenizer.pad_token_id, device=device,
                            seed=job.effective_seed,
                            max_slots=(decl and decl.max_slots) or (256 if on_gpu else 64),
                            # a turn may begin just under the rollout budget and write a whole turn
                            max_len=hp.max_rollout_tokens + hp.max_new_tokens,
                            cuda_graphs=decl.cuda_graphs if decl is not None else True)


def default_vllm_python() -> Path:
    """`AGENTRFT_VLLM_PYTHON`, else the `.venv-vllm` that scripts/setup_vllm.sh makes in this
    checkout, else one in the working directory, else this interpreter if it has vLLM
    (`pip install "agentrft[vllm]"`, the one-environment GPU recipe). With none of them: the
    working directory's `.venv-vllm`, for the error that names where it was looked for."""
    if os.environ.get("AGENTRFT_VLLM_PYTHON"):
        return Path(os.environ["AGENTRFT_VLLM_PYTHON"])
    here = Path.cwd() / ".venv-vllm" / "bin" / "python"
    for venv in (CHECKOUT_VLLM_PYTHON, here):
        if venv.is_file():
            return venv
    if importlib.util.find_spec("vllm") is not None:
        return Path(sys.executable)
    return here


def serving_base_dir(model_ref: str) -> Path:
    """The Hugging Face folder a server loads for `model_ref`: the model itself, or for a
    LoRA checkpoint the base it names (the adapter is pushed after the server starts)."""
    from agentrft.models.loading import resolve_model_dir

    path = resolve_model_dir(model_ref)
    meta = path / "agentrft_checkpoint.json"
    if (path / "adapter_config.json").is_file() and meta.is_file():
        return serving_base_dir(json.loads(meta.read_text())["base_model"])
    return path


def build_managed_vllm(job: JobSpec, model, tokenizer, *, device: str) -> Engine:
    from agentrft.engines.vllm_managed import ManagedVLLMEngine, write_full_weights
    from agentrft.engines.vllm_process import VLLMConfig, VLLMProcess

    decl, hp = job.rl.engine, job.hp
    gpu = str(device).startswith("cuda")
    full = hp.finetune == "full"
    sync_dir = Path(tempfile.mkdtemp(prefix="agentrft-vllm-"))
    if full:  # the server serves our own copy, which every update rewrites
        write_full_weights(model, sync_dir / "weights", tokenizer)
        model_dir = sync_dir / "weights"
    else:
        model_dir = serving_base_dir(job.model)
    config = VLLMConfig(
        python=str(Path(decl.python).expanduser() if decl.python else default_vllm_python()),
        model_dir=model_dir, log_path=sync_dir.with_name(sync_dir.name + ".log"), gpu=gpu,
        dtype=decl.dtype or ("bfloat16" if gpu else "float32"),
        max_model_len=decl.max_model_len or hp.max_rollout_tokens + hp.max_new_tokens,
        kv_cache_gb=decl.kv_cache_gb,
        # the trainer shares the GPU: leave it most of the memory
        gpu_memory_utilization=decl.gpu_memory_utilization or (0.4 if gpu else None),
        lora_rank=None if full else hp.lora_r, seed=job.effective_seed,
        startup_timeout_s=decl.startup_timeout_s, extra_args=tuple(decl.extra_args))
    try:
        return ManagedVLLMEngine(VLLMProcess(config), full_finetune=full, sync_dir=sync_dir,
                                 seed=job.effective_seed, timeout_s=decl.timeout_s,
                                 max_restarts=decl.max_restarts, send_seeds=decl.seeds)
    except BaseException:
        import shutil

        shutil.rmtree(sync_dir, ignore_errors=True)
        raise
