"""Activation checkpointing per decoder layer: a layer keeps only its inputs for backward and
runs its forward again there (torch's non-reentrant `checkpoint`).

    forward:   x0 ─[layer 0]─ x1 ─[layer 1]─ x2 … ─[layer 29]─ x30     kept: x0 … x29 (+ outputs)
    backward:  layer 29 re-runs from x29, backward through it, frees; then layer 28 …

Peak memory for backward goes from every layer's activations to one layer's, for one more
forward. Ours rather than transformers' `gradient_checkpointing_enable`, which turns the KV
cache off and with it a `SharedPrefix`, whose caches never grow: a layer run a second time
sees what its first run saw.

Used for a whole update when a job asks (`gradient_checkpointing`), and always for the
recomputation of a shared prompt head (train/shared_prefix.py), the largest graph of an
agent task's update. Blocks nest: an inner block leaves the layers an outer one wrapped.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

import torch
from torch.utils.checkpoint import checkpoint

from agentrft.train.loss import backbone_and_head


def decoder_layers(model) -> torch.nn.ModuleList | None:
    """The decoder layers of a causal LM (through a peft wrapper), or of its backbone."""
    split = backbone_and_head(model)
    owner = split[0] if split else model
    layers = getattr(owner, "layers", None)
    return layers if isinstance(layers, torch.nn.ModuleList) else None


@contextmanager
def checkpointed_layers(model) -> Iterator[None]:
    """Within the block, each of `model`'s decoder layers is checkpointed."""
    layers = decoder_layers(model)
    if layers is None:
        raise ValueError("activation checkpointing needs a decoder with a `layers` list")
    # a layer with a forward of its own is already wrapped by an enclosing block
    wrapped = [layer for layer in layers if "forward" not in vars(layer)]
    for layer in wrapped:
        layer.forward = functools.partial(_checkpointed, layer.forward)
    try:
        yield
    finally:
        for layer in wrapped:
            del layer.forward  # the class's again


def _checkpointed(forward, *args, **kwargs):
    if not torch.is_grad_enabled():  # e.g. the KL reference pass: nothing to save anyway
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
