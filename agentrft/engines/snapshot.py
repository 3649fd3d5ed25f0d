"""An in-process engine that samples from its own copy of the policy's weights.

Asynchronous RL (train/pipeline.py) updates the policy while later steps' rollouts are
still being sampled. An engine that samples from the policy's own model object would read
weights half-way through an optimizer step, so with `max_staleness` > 0 the in-process
engine gets a copy, refreshed after every update:

    trainer:  policy.model ──update──► sync_weights ─┐ copies what trains (LoRA adapters,
                                                     │ or every weight for full fine-tuning)
    sampler:  copy ◄─────────────────────────────────┘ under the lock that each generate()
              generate(batch) … generate(batch) …        call holds, so no batch sees a mix

The sampler waits at most for the copy (milliseconds for adapters); the trainer waits at
most for the batch being sampled to finish. The copy costs one more model in memory.
"""

from __future__ import annotations

import copy
import threading
from typing import Callable

import torch

from agentrft.engines.base import Completion, Engine, SamplingParams


class SnapshotEngine(Engine):
    """Wraps the engine `build(copy)` makes over a deep copy of `model`."""

    def __init__(self, model, build: Callable[[torch.nn.Module], Engine]):
        self.model = copy.deepcopy(model)
        self.model.eval()
        self.inner = build(self.model)
        self._lock = threading.Lock()
        self._trained = {name for name, p in model.named_parameters() if p.requires_grad}
        self.syncs = 0

    # the sampling random stream is the inner engine's (the checkpoint saves it)
    def reseed(self, seed: int) -> None:
        self.inner.reseed(seed)

    def rng_state(self) -> torch.Tensor:
        return self.inner.rng_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.inner.set_rng_state(state)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        with self._lock:
            return self.inner.generate(prompts, params)

    @torch.no_grad()
    def sync_weights(self, model) -> None:
        source = dict(model.named_parameters())
        with self._lock:
            for name, param in self.model.named_parameters():
                if name in self._trained:
                    param.copy_(source[name])
            self.inner.sync_weights(self.model)  # e.g. a kept prompt head, now stale
        self.syncs += 1

    def take_events(self):
        return self.inner.take_events()

    def step_metrics(self) -> dict[str, float]:
        return self.inner.step_metrics()

    def close(self) -> None:
        self.inner.close()
