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
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from agentrft.engines.transformers_engine import common_prefix_len

# Below this many shared tokens the extra pass saves too little to bother.
MIN_SHARED_TOKENS = 64


def shared_head_len(token_ids: list[list[int]], masks: list[list[int]]) -> int:
    """How many leading tokens all sequences share and none of them is trained on: the head
    ends before the last position whose prediction carries loss (position t predicts t + 1)."""
    n = common_prefix_len(token_ids)
    first_written = min((m.index(1) if 1 in m else len(m)) for m in masks)
    return max(0, min(n, first_written - 1))


class SharedPrefix:
    def __init__(self, backbone, ids: list[int], device: torch.device | str):
        self.length = len(ids)
        cache = backbone(input_ids=torch.tensor([ids], device=device), use_cache=True).past_key_values
        self._computed = [(layer.keys, layer.values) for layer in cache.layers]
        # What the micro-batches attend to: detached copies that collect their gradients.
        self._leaves = [(k.detach().requires_grad_(k.requires_grad),
                         v.detach().requires_grad_(v.requires_grad)) for k, v in self._computed]

    def cache_for(self, batch_size: int) -> DynamicCache:
        return DynamicCache(ddp_cache_data=[(k.expand(batch_size, -1, -1, -1),
                                             v.expand(batch_size, -1, -1, -1))
                                            for k, v in self._leaves])

    def backward(self) -> None:
        """Propagate the gradients the micro-batches left on the head's keys and values."""
        outputs, grads = [], []
        for computed, leaves in zip(self._computed, self._leaves):
            for tensor, leaf in zip(computed, leaves):
                if leaf.grad is not None:
                    outputs.append(tensor)
                    grads.append(leaf.grad)
        if outputs:
            torch.autograd.backward(outputs, grads)
        self._computed, self._leaves = [], []
