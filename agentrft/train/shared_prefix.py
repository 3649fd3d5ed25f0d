"""The prompt that every sequence of a training step starts with, run through the model once.

A task's rows usually share a long head: system prompt, tool list, demonstrations (FinQA-lite:
~950 of its ~1,300 tokens), and a group's rollouts share their whole first prompt. Run per
sequence, that head is most of the forward and backward compute of a step. Here it runs once:

    prefix = SharedPrefix(model, ids)            # forward over the head, graph kept
    for micro-batch:
        token_logprobs(model, batch_of_suffixes, prefix=prefix)   # attends to the head's keys
        loss.backward()                          # gradients stop at the head's keys/values
    prefix.backward()                            # …and go through the head's pass once

Exact, not an approximation: each suffix attends to the same keys and values it would have
computed itself, and gradients reach the weights through the head exactly once per sequence
(summed over the micro-batches, as separate passes would have summed them).

The head's activations are not kept between its forward and `prefix.backward()` (with
`recompute`, the default): its forward runs without a graph, and `backward()` runs it again with
one, just before propagating. Kept, they were the largest thing in a FinQA-lite update (~1.3 GB
for a 950-token head of SmolLM2-135M in fp32, held through every micro-batch); recomputed, they
cost one more forward over the head per step, not per sequence. The recomputation runs the same
kernels on the same inputs, so the keys and values the micro-batches attended to are the ones
whose gradients flow back.

That recomputation is itself checkpointed layer by layer (`checkpoint`, the default; see
train/checkpointing.py): its graph holds each layer's input and its keys and values, and one
layer's activations at a time in backward, ~1/30 of the whole graph, for a third forward over
the head per step:

    __init__      no graph          keys/values → the micro-batches attend to them
    backward()    forward again     kept per layer: its input, its keys/values
                  backward          layer 29 re-runs, propagates, frees; layer 28 …

The caches involved never grow: the head's pass records each layer's keys and values, and a
micro-batch's cache returns head + its own states without storing them. So a decoder layer that
activation checkpointing runs a second time in backward sees exactly what its first run saw
(a `DynamicCache` would have appended the recomputed states a second time).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager

import torch
from transformers.cache_utils import Cache, DynamicLayer

from agentrft.engines.transformers_engine import common_prefix_len
from agentrft.train.checkpointing import checkpointed_layers
from agentrft.models.kv_cache import cache_kwarg

# Below this many shared tokens the extra pass saves too little to bother.
MIN_SHARED_TOKENS = 64


def shared_head_len(token_ids: list[list[int]], masks: list[list[int]]) -> int:
    """How many leading tokens all sequences share and none of them is trained on: the head
    ends before the last position whose prediction carries loss (position t predicts t + 1)."""
    n = common_prefix_len(token_ids)
    first_written = min((m.index(1) if 1 in m else len(m)) for m in masks)
    return max(0, min(n, first_written - 1))


class SharedPrefix:
    def __init__(self, backbone, ids: list[int], device: torch.device | str, *,
                 recompute: bool = True, checkpoint: bool = True,
                 autocast: Callable[[], ContextManager] = nullcontext):
        """`autocast` makes the context the head's forward runs in (a fresh one for the
        recomputation, which runs outside the caller's). `checkpoint` (with `recompute`) runs
        the recomputation checkpointed layer by layer."""
        self.length = len(ids)
        self._backbone, self._autocast = backbone, autocast
        self._checkpoint = recompute and checkpoint
        self._ids = torch.tensor([ids], device=device)
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in backbone.parameters())
        with torch.no_grad() if recompute else nullcontext():
            computed = self._forward()
        self._computed = None if recompute else computed
        # What the micro-batches attend to: detached copies that collect their gradients.
        self._leaves = [(k.detach().requires_grad_(grad), v.detach().requires_grad_(grad))
                        for k, v in computed]

    def _forward(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        cache = Cache(layer_class_to_replicate=_RecordingLayer)
        with self._autocast():
            self._backbone(input_ids=self._ids, use_cache=True, **cache_kwarg(cache))
        return [(layer.keys, layer.values) for layer in cache.layers]

    def cache_for(self, batch_size: int) -> Cache:
        """A read-only cache of the head for a micro-batch of `batch_size` rows."""
        return Cache(layers=[_ReadOnlyLayer(k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1))
                             for k, v in self._leaves])

    def backward(self) -> None:
        """Propagate the gradients the micro-batches left on the head's keys and values."""
        if not any(leaf.grad is not None for pair in self._leaves for leaf in pair):
            self._computed, self._leaves = [], []
            return
        if self._computed is not None:
            states = self._computed
        else:
            with checkpointed_layers(self._backbone) if self._checkpoint else nullcontext():
                states = self._forward()
        outputs, grads = [], []
        for computed, leaves in zip(states, self._leaves):
            for tensor, leaf in zip(computed, leaves):
                if leaf.grad is not None:
                    outputs.append(tensor)
                    grads.append(leaf.grad)
        if outputs:
            torch.autograd.backward(outputs, grads)
        self._computed, self._leaves = [], []


class _RecordingLayer(DynamicLayer):
    """Keeps the states of the one forward it serves; a recomputation replaces them with equal ones."""

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self.values = key_states, value_states
        return key_states, value_states


class _ReadOnlyLayer(DynamicLayer):
    """The head's states for one layer: `update` returns head + new states and stores nothing."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values

    def update(self, key_states, value_states, *args, **kwargs):
        return torch.cat([self.keys, key_states], -2), torch.cat([self.values, value_states], -2)
