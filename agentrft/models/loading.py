"""Resolve a `model:` reference to a (model, tokenizer) pair ready for sampling and training.

References: `bundled:NAME` (see `bundled.py`), a local Hugging Face directory, or a
checkpoint directory written by the trainer (a LoRA adapter with `adapter_config.json`
and `agentrft_checkpoint.json` naming its base, or a full model). An `ft:` name of the jobs
service is not one: the entry points resolve it to its directory first (`agentrft.jobs.models`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from agentrft.errors import ModelLoadError
from agentrft.models.bundled import BUNDLED, bundled_model_dir


def resolve_model_dir(ref: str) -> Path:
    if ref in BUNDLED:
        return bundled_model_dir(ref)
    if ref.startswith("ft:"):  # a fine-tuned model of the jobs service, a layer above this one
        raise ModelLoadError(f"model {ref!r} is an ft: name: resolve it through the jobs service "
                             f"to its checkpoint directory before loading "
                             f"(agentrft.jobs.models.resolve_fine_tuned; the agentrft commands do)")
    path = Path(ref).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"model {ref!r} is neither a bundled model ({', '.join(BUNDLED)}) "
                             f"nor a local directory")
    return path


def _base_dir(checkpoint: Path) -> Path:
    """The directory of the base model an adapter checkpoint names in its
    agentrft_checkpoint.json (a directory or `bundled:` name; `ft:` only in checkpoints
    written before runs were handed resolved specs)."""
    base_ref = json.loads((checkpoint / "agentrft_checkpoint.json").read_text())["base_model"]
    try:
        return resolve_model_dir(base_ref)
    except ModelLoadError as e:
        raise ModelLoadError(f"the base model of checkpoint {checkpoint}: {e}") from None


def load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    path = resolve_model_dir(ref)
    if (path / "adapter_config.json").is_file() and not (path / "tokenizer_config.json").is_file():
        path = _base_dir(path)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(ref: str, *, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """Load weights for sampling/training. A LoRA checkpoint comes back as a PeftModel."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_dir(ref)
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        meta = path / "agentrft_checkpoint.json"
        if not meta.is_file():
            raise ModelLoadError(f"{path} is an adapter without agentrft_checkpoint.json naming its base")
        base = AutoModelForCausalLM.from_pretrained(_base_dir(path), dtype=dtype)
        model = PeftModel.from_pretrained(base, path, is_trainable=False)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except OSError as e:
            raise ModelLoadError(f"cannot load model from {path}: {e}") from None
    return model.to(device)
