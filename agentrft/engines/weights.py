"""A sampling engine's own copy of the policy: adapters folded in, refreshed in place."""

from __future__ import annotations

import copy

import torch


def merged_weights(model) -> dict[str, torch.Tensor]:
    """The model's weights as one plain network, by the plain model's parameter names: a peft
    LoRA model's active adapters are folded into its base weights (W + scale · B A)."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out: dict[str, torch.Tensor] = {}
    inside = None  # the LoRA layer whose submodules (base_layer, lora_A, lora_B) come next
    for name, module in base.named_modules():  # pre-order: a layer, then its submodules
        if inside and name.startswith(inside):
            continue
        if isinstance(module, LoraLayer):
            inside = name + "."
            inner = module.get_base_layer()
            weight = inner.weight
            if not module.merged and not module.disable_adapters:
                for adapter in module.active_adapters:
                    if adapter in module.lora_A:
                        weight = weight + module.get_delta_weight(adapter)
            out[f"{name}.weight"] = weight
            if getattr(inner, "bias", None) is not None:
                out[f"{name}.bias"] = inner.bias
            continue
        for pname, p in module.named_parameters(recurse=False):
            out[f"{name}.{pname}" if name else pname] = p
    return out


def plain_copy(model, *, device: torch.device, dtype: torch.dtype):
    """A standalone model with `model`'s current weights (adapters folded in), for sampling.
    Parameters in `dtype`; buffers (rotary frequencies) keep their own precision."""
    clone = copy.deepcopy(model)
    if hasattr(clone, "merge_and_unload"):
        clone = clone.merge_and_unload()
    clone = clone.to(device)
    for p in clone.parameters():
        p.data = p.data.to(dtype)
    return clone.eval().requires_grad_(False)


@torch.no_grad()
def load_weights_into(plain, model) -> None:
    """Copy `model`'s merged weights into `plain`'s parameters in place (captured graphs keep
    reading the same addresses)."""
    weights = merged_weights(model)
    for name, param in plain.named_parameters():  # a tied head appears once, as the embedding
        if name not in weights:
            raise ValueError(f"the policy has no weight {name!r} to copy into the engine's model")
        param.copy_(weights[name].detach())
