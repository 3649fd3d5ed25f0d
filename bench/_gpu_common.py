"""What the GPU benches share: the device line, timing with synchronisation, model FLOPs,
out-of-memory handling and hyperparameters that tolerate fields another branch adds.

    from _gpu_common import device_line, flops_per_token, hyperparameters, synchronize
"""

from __future__ import annotations

import gc
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # agentrft from this checkout

import torch  # noqa: E402
import yaml  # noqa: E402

from agentrft.spec.job import Hyperparameters  # noqa: E402

try:  # the per-load progress bars would interleave with the table
    from transformers.utils import logging as _hf_logging
    _hf_logging.disable_progress_bar()
except ImportError:
    pass

MODEL = "bundled:smollm2-135m-instruct"
H100_SXM_BF16_TFLOPS = 989.0  # dense bf16, NVIDIA's H100 SXM datasheet (sparsity excluded)


def device_line(device: torch.device) -> str:
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {versions}"
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}, {versions}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    free_memory(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def matmul_params(model) -> int:
    """Parameters that take part in a matrix product per token: all of them, except an input
    embedding that is not also the output head (a lookup costs no FLOPs) and LoRA's adapters;
    a tied head's matrix is counted once, as the head's product."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    seen, n = set(), 0
    for name, p in base.named_parameters():
        if id(p) not in seen and "lora_" not in name:  # LoRA's own matrices are left out
            seen.add(id(p))
            n += p.numel()
    embed, head = base.get_input_embeddings(), base.get_output_embeddings()
    if head is None or embed.weight is not head.weight:
        n -= embed.weight.numel()
    return n


def flops_per_token(model, seq_len: int, *, full_finetune: bool) -> float:
    """Model FLOPs of one training token (PaLM's appendix B): 6·N for the weights' forward and
    backward, + 12·layers·hidden·seq for attention scores and their use. LoRA computes no
    gradients for frozen weights: 4·N (its own small matrices are left out)."""
    config = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
    per_weight = 6 if full_finetune else 4
    return (per_weight * matmul_params(model)
            + 12 * config.num_hidden_layers * config.hidden_size * seq_len)


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` pairs (values parsed as YAML: `true`, `2048`, `bf16`)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--hp expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def efficiency_settings(hp: Hyperparameters) -> str:
    """The trainer-efficiency hyperparameters, as `name value` pairs."""
    names = ("micro_batch_size", "micro_batch_tokens", "precision", "gradient_checkpointing",
             "pack_sequences")
    return ", ".join(f"{n} {getattr(hp, n)}" for n in names)
