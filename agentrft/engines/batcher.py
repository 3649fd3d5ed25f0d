"""Share the engine's batches among many concurrent rollouts.

Each rollout awaits `sampler.sample(prompt_ids)`; requests that arrive while the engine is
busy, or within a short gathering window, go into the next batch. The engine runs in a
worker thread so tool calls (on the event loop) proceed while it samples.

A batch of a static engine runs until its longest turn ends, so a turn that arrives just
after a batch closed waits for all of it. After a batch, the rollouts' tool calls come back
spread over the tools' latency (a burst of 60 calls to one server: up to a second or more),
and a window of a few milliseconds would start the next batch with the first one or two of
them. So a rollout says it is live (`with sampler.live():`, around its turns), and the
batch waits, polling every window, until every live rollout has its turn queued, or
`max_gather_s` has passed since the first:

    batch 1: [a b c d] ──decode──┐
                                 ├ a: tool ─┐
                                 ├ b: tool ───┐
                                 ├ c: answers (no longer live)
                                 └ d: tool ─────┐
    batch 2:                                    [a b d] ──decode── …   (not [a], then [b d])

A `ContinuousEngine` (`submit` / `step` / `reset`, as `StaticEngine` is) is driven differently: a turn that becomes ready joins the running batch at the next `step`, and
a finished turn goes back to its rollout at once, instead of waiting for the batch's longest.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from agentrft.engines.base import Completion, ContinuousEngine, Engine, SamplingParams


@dataclass
class _Request:
    prompt: list[int]
    params: SamplingParams
    future: asyncio.Future = field(repr=False)


class BatchingSampler:
    def __init__(self, engine: Engine, *, max_batch_size: int = 64, gather_window_s: float = 0.002,
                 max_gather_s: float = 2.0):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.gather_window_s = gather_window_s
        self.max_gather_s = max_gather_s  # the longest a batch waits for live rollouts' turns
        self._live = 0  # rollouts inside `live()`: their next turn is expected
        self._pending: list[_Request] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.engine_time_s = 0.0  # wall time spent inside engine.generate
        self.batches = 0
        self.turns = 0  # requests sampled: turns / batches is the mean batch

    async def sample(self, prompt: list[int], params: SamplingParams) -> Completion:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run())
        fut = loop.create_future()
        self._pending.append(_Request(prompt, params, fut))
        self._wakeup.set()
        return await fut

    @contextmanager
    def live(self) -> Iterator[None]:
        """Around a rollout's turns: while it is in a tool call, a batch waits for its next turn
        (up to `max_gather_s`); once it has answered, none does."""
        self._live += 1
        try:
            yield
        finally:
            self._live -= 1

    async def _gather(self) -> None:
        """Let concurrently runnable rollouts add their turns before the batch closes: while
        turns keep arriving within the window, and while a live rollout's turn is still to come
        (up to `max_gather_s`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_gather_s
        seen = -1
        while len(self._pending) < self.max_batch_size:
            arriving = len(self._pending) != seen
            expected = len(self._pending) < self._live and loop.time() < deadline
            if not (arriving or expected):
                break
            seen = len(self._pending)
            await asyncio.sleep(self.gather_window_s)

    async def _run(self) -> None:
        if isinstance(self.engine, ContinuousEngine):
            return await self._run_continuous()
        while True:
            await self._wakeup.wait()
            await self._gather()
            self._wakeup.clear()
            batch, self._pending = self._pending[:self.max_batch_size], self._pending[self.max_batch_size:]
            if self._pending:
                self._wakeup.set()
            by_params: dict[SamplingParams, list[_Request]] = {}
            for r in batch:
                by_params.setdefault(r.params, []).append(r)
            for params, reqs in by_params.items():
                t0 = time.perf_counter()
                try:
                    outs = await asyncio.to_thread(self.engine.generate, [r.prompt for r in reqs], params)
                except Exception as e:  # noqa: BLE001 - handed to every waiting rollout
                    for r in reqs:
                        if not r.future.done():
                            r.future.set_exception(e)
                    continue
                finally:
                    self.engine_time_s += time.perf_counter() - t0
                    self.batches += 1
                    self.turns += len(reqs)
                for r, out in zip(reqs, outs):
                    if not r.future.done():
                        r.future.set_result(out)

    async def _run_continuous(self) -> None:
        waiting: dict[int, asyncio.Future] = {}  # engine request id -> the rollout's future
        while True:
            if not waiting:  # idle: gather the first turns as the batched mode does
                await self._wakeup.wait()
                seen = -1
                while len(self._pending) != seen:
                    seen = len(self._pending)
                    await asyncio.sleep(self.gather_window_s)
            self._wakeup.clear()
            new, self._pending = self._pending, []
            t0 = time.perf_counter()
            try:
                ids, done = await asyncio.to_thread(self._tick, new)
            except Exception as e:  # noqa: BLE001 - handed to every rollout in the engine
                for fut in [r.future for r in new] + list(waiting.values()):
                    if not fut.done():
                        fut.set_exception(e)
                waiting.clear()
                self.engine.reset()
                continue
            finally:
                self.engine_time_s += time.perf_counter() - t0
                self.batches += 1
            waiting.update(zip(ids, (r.future for r in new)))
            for rid, completion in done:
                fut = waiting.pop(rid)
                if not fut.done():
                    fut.set_result(completion)

    def _tick(self, new: list[_Request]) -> tuple[list[int], list]:
        """In the worker thread: queue the new turns, then run the engine until a turn ends."""
        ids = [self.engine.submit(r.prompt, r.params) for r in new]
        return ids, self.engine.step()

