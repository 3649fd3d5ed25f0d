"""Choose and build the job's engine from `method.reinforcement.engine`.

    engine: {type: transformers}                                   # the default: in-process
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
    if decl is None or decl.type == "transformers":
        from agentrft.engines.transformers_engine import TransformersEngine

        return TransformersEngine(model, pad_token_id=tokenizer.pad_token_id, device=device,
                                  seed=job.effective_seed)
    from agentrft.engines.remote import RemoteEngine

    check_engine(job)
    engine = RemoteEngine(decl.base_url, model=decl.model, seed=job.effective_seed,
                          api_key=os.environ.get(decl.api_key_env) if decl.api_key_env else None,
                          timeout_s=decl.timeout_s, adapter_dir=decl.adapter_dir)
    if hasattr(model, "peft_config"):  # the server starts from what the policy holds now
        engine.sync_weights(model)
    return engine
