"""Choose and build the job's engine from `method.reinforcement.engine`.

    engine: {type: static}          # in-process: slots, continuous batching, CUDA graphs (GPU default)
            # optional: max_slots (sequences decoded at once), cuda_graphs (true)
    engine: {type: transformers}    # in-process: one left-padded batch at a time (CPU default)
    engine: {type: remote, base_url: "http://127.0.0.1:8001/v1"}   # vLLM, SGLang, agentrft serve
            # optional: model (the base model's id on the server; default: the first listed),
            # api_key_env (the variable holding the server's key), adapter_dir (a folder the
            # server can read, for the adapters pushed between steps), timeout_s
"""

from __future__ import annotations

import os

from agentrft.engines.base import Engine
from agentrft.errors import SpecError
from agentrft.spec.job import JobSpec

FIELD = "method.reinforcement.engine"


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
    decl = job.rl.engine
    kind = decl.type if decl is not None and decl.type else default_engine_type(device)
    if kind == "transformers":
        from agentrft.engines.transformers_engine import TransformersEngine

        return TransformersEngine(model, pad_token_id=tokenizer.pad_token_id, device=device,
                                  seed=job.effective_seed)
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
    from agentrft.engines.remote import RemoteEngine

    check_engine(job)
    engine = RemoteEngine(decl.base_url, model=decl.model, seed=job.effective_seed,
                          api_key=os.environ.get(decl.api_key_env) if decl.api_key_env else None,
                          timeout_s=decl.timeout_s, adapter_dir=decl.adapter_dir)
    if hasattr(model, "peft_config"):  # the server starts from what the policy holds now
        engine.sync_weights(model)
    return engine
