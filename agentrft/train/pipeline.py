"""Asynchronous RL: later steps' rollouts are sampled while the trainer updates, at most
`max_staleness` policy versions behind.

The policy's version is the number of updates its weights have seen. Step t (counted from 0)
is on-policy when its rollouts were sampled at version t. With `max_staleness` k, once step t
has its rollouts the pipeline starts sampling steps t+1 … t+k at once, under the weights the
sampler holds then (version t), while step t trains:

    k = 0 (the default, strictly sequential)
        sample 0 ─ train 0 ─ sample 1 ─ train 1 ─ sample 2 ─ train 2
    k = 1
        sample 0 ─ train 0 ─────────── train 1 ─────────── train 2
                   sample 1 (v0) ───── sample 2 (v1) ───── sample 3 (v2)

So a step's staleness, t − (the version when its sampling started), is never above k.
A multi-turn rollout that is still running when new weights arrive writes its later turns
with them (a partial rollout); every token's behaviour log-prob is the one it was sampled
with, and the loss's importance ratio against it (clipped, truncated at `tis_cap`,
train/loss.py) is what corrects for the lag.

What stays as in the sequential loop:
- groups stay whole: a step samples all its rows' rollouts together and trains on them
  together;
- rows: a step's rows are a pure function of (seed, step) (`loop.step_rows`), so a checkpoint
  after step s says exactly which rows were trained. Rollouts sampled ahead and not yet
  trained when the job stops (pause, cancel, a crash) are dropped, and `--resume` samples
  those steps again: no row is trained twice or skipped;
- pause and cancel are checked before each step; in-flight sampling is cancelled with them.

Not reproducible bit for bit when k > 0: which turn sees which weights depends on timing.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from agentrft.rollout.types import Rollout


class RolloutPipeline:
    """Sampling tasks for steps, started up to `max_staleness` steps ahead of training.

    `sample(step)` samples a step's rollouts; `version()` is the sampler's policy version
    now (read when a step's sampling starts); `total_steps` bounds what is started.
    """

    def __init__(self, sample: Callable[[int], Awaitable[list[Rollout]]], *,
                 max_staleness: int, total_steps: int, version: Callable[[], int]):
        self._sample, self._version = sample, version
        self.max_staleness, self.total_steps = max_staleness, total_steps
        self._tasks: dict[int, tuple[asyncio.Task, int]] = {}  # step -> (task, version)

    def _start(self, step: int) -> None:
        if step < self.total_steps and step not in self._tasks:
            self._tasks[step] = (asyncio.ensure_future(self._sample(step)), self._version())

    async def take(self, step: int) -> tuple[list[Rollout], int]:
        """Step `step`'s rollouts (started now unless already running) and its staleness; then
        the next `max_staleness` steps start sampling, under the weights the sampler holds."""
        self._start(step)
        task, version = self._tasks[step]
        rollouts = await task
        del self._tasks[step]
        for ahead in range(step + 1, step + 1 + self.max_staleness):
            self._start(ahead)
        return rollouts, step - version

    def in_flight(self) -> list[int]:
        return sorted(self._tasks)

    async def cancel(self) -> None:
        """Drop every step sampled ahead (a pause, a cancel, the end of the job)."""
        tasks = [task for task, _ in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
