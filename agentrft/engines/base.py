"""The `Engine` protocol: batched sampling that returns token ids and their log-probabilities.

Engines are synchronous and batched: the `BatchingSampler` (`agentrft.engines.batcher`)
gathers the turns of many concurrent rollouts into one call. A `ContinuousEngine` instead
takes turns one at a time (`submit`), advances all of them (`step`) and hands back each
turn as it finishes; the sampler drives it that way.

    Engine                generate(prompts, params) -> completions
    │                     reseed / rng_state / set_rng_state: the sampling random stream
    │                     sync_weights, take_events, step_metrics, close
    └── ContinuousEngine  submit(prompt, params) -> id; step() -> [(id, completion)]; reset()

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
    import torch

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
    # The random stream sampling draws from. The trainer seeds it (per Ray worker, per judge
    # batch) and saves it with each checkpoint through the three methods below, never directly.
    generator: "torch.Generator"

    @abc.abstractmethod
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Sample one completion per prompt (prompts may differ in length)."""

    def reseed(self, seed: int) -> None:
        """Restart the sampling random stream from `seed`."""
        self.generator.manual_seed(seed)

    def rng_state(self) -> "torch.Tensor":
        """The sampling random stream's state, for a checkpoint."""
        return self.generator.get_state()

    def set_rng_state(self, state: "torch.Tensor") -> None:
        """Continue the sampling random stream from a checkpoint's `rng_state()`."""
        self.generator.set_state(state)

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


class ContinuousEngine(Engine):
    """An engine that batches continuously: a turn joins the running batch at the next `step`
    and comes back as soon as it ends, not when the batch's longest turn does. `generate`
    still works (a batch submitted and stepped to the end). Not thread-safe: one caller (the
    `BatchingSampler`'s worker thread) drives it.

    Example::

        ids = [engine.submit(prompt, params) for prompt in prompts]
        done: dict[int, Completion] = {}
        while len(done) < len(ids):
            done.update(engine.step())
    """

    @abc.abstractmethod
    def submit(self, prompt: list[int], params: SamplingParams) -> int:
        """Queue one turn; returns its id, which `step` reports it under."""

    @abc.abstractmethod
    def step(self) -> list[tuple[int, Completion]]:
        """Run until at least one turn ends (or nothing is left); the turns that ended."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Drop every queued and running turn (after an error, the batch is abandoned)."""
