"""The `Engine` protocol: batched sampling that returns token ids and their log-probabilities.

Engines are synchronous and batched: the agent loop's `BatchingSampler`
(`agentrft.rollout.batcher`) gathers the turns of many concurrent rollouts into one call.

Example::

    class Constant(Engine):
        def generate(self, prompts, params):
            return [Completion(token_ids=[7, 2], logprobs=[-0.1, -0.2], finish_reason="stop")
                    for _ in prompts]
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from agentrft.engines.constrained import Constraint


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop_token_ids: tuple[int, ...] = ()  # generation ends after writing one of these (kept)
    # A grammar every completion must follow (`agentrft.engines.constrained`); None: free text.
    # Engines that cannot mask per row refuse it rather than ignore it.
    constraint: "Constraint | None" = None


@dataclass(frozen=True)
class Completion:
    token_ids: list[int]  # as sampled, the stop token included when one ended the turn
    # log-probability of each sampled token under the distribution it was drawn from
    # (logits / temperature, before top-p truncation, after a constraint's mask); the trainer
    # computes the same quantity (without a mask: the importance ratio accounts for it).
    logprobs: list[float]
    finish_reason: Literal["stop", "length"]


class Engine(abc.ABC):
    @abc.abstractmethod
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Sample one completion per prompt (prompts may differ in length)."""

    def sync_weights(self, model) -> None:
        """Called by the trainer after the policy's weights change (an update, a checkpoint
        loaded). An engine that samples from the policy's own model object has nothing to
        do; one that samples elsewhere (`RemoteEngine`) sends the new weights there."""

    def take_events(self) -> list[tuple[str, str, dict | None]]:
        """(message, level, data) the job should log once, gathered since the last call: a
        server that cannot take seeds, a restarted server, a weight sync's cost. The trainer
        asks after building the engine and after every step."""
        return []

    def step_metrics(self) -> dict[str, float]:
        """Numbers the engine adds to each step's metrics event (none by default)."""
        return {}

    def close(self) -> None:
        """Release what the engine holds outside this process (a server it started, adapters
        it loaded); idempotent. The trainer calls it when the job ends, however it ends."""
