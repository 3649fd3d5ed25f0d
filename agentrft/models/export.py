"""`agentrft export`: a trained checkpoint as a plain Hugging Face model directory.

    agentrft export runs/x/checkpoints/step_000003 exported/   # or ft:…, or any model reference
    AutoModelForCausalLM.from_pretrained("exported/")           # transformers alone, no agentrft

A LoRA checkpoint is merged into its base (`merge_and_unload`), so the result has no peft
dependency; a full fine-tune is re-saved without the trainer's state. What is written:
`config.json`, `model.safetensors` (sharded when large), `generation_config.json` where the
base has one, and the tokenizer. Not written: the optimizer, RNG states and our
`agentrft_checkpoint.json`, which only `--resume` needs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from agentrft.errors import ModelLoadError
from agentrft.models.loading import load_model, load_tokenizer, resolve_model_dir

EXPORT_META = "agentrft_export.json"  # provenance only; transformers ignores unknown files


def merged_model(ref: str, *, dtype: torch.dtype = torch.float32):
    """The model a reference names, with any LoRA adapter merged into plain weights."""
    model = load_model(ref, device="cpu", dtype=dtype)
    if hasattr(model, "merge_and_unload"):  # a PeftModel
        model = model.merge_and_unload()
    return model


def export_model(ref: str, out_dir: str | Path, *, dtype: str = "float32",
                 overwrite: bool = False, name: str | None = None) -> Path:
    """Write `ref` (checkpoint, local directory or bundled model) to `out_dir`. `name`: what
    the provenance file calls the source (default `ref`), e.g. the `ft:` name the CLI
    resolved to `ref`."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ModelLoadError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                   "float16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise ModelLoadError(f"unknown dtype {dtype!r}: float32, bfloat16 or float16")
    source = resolve_model_dir(ref)
    model = merged_model(str(source), dtype=torch_dtype)
    tokenizer = load_tokenizer(str(source))
    # Written next to the target, then renamed: a crash never leaves a half export behind.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.config.torch_dtype = torch_dtype  # what from_pretrained(dtype="auto") picks
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {"source": name or ref, "source_dir": str(source), "dtype": dtype}
        ckpt_meta = source / "agentrft_checkpoint.json"
        if ckpt_meta.is_file():
            meta["checkpoint"] = json.loads(ckpt_meta.read_text())
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
