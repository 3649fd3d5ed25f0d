"""BatchingSampler: which turns share a batch of a static engine. The engine here records
the batches it is given and takes a fixed time per batch; tool calls are sleeps."""

from __future__ import annotations

import asyncio
import time

from agentrft.engines.base import Completion, Engine, SamplingParams
from agentrft.engines.batcher import BatchingSampler

PARAMS = SamplingParams(max_new_tokens=4)


class RecordingEngine(Engine):
    def __init__(self, batch_s: float = 0.05):
        self.batch_s = batch_s
        self.batches: list[list[int]] = []  # each batch's rollouts (the prompt's first token)

    def generate(self, prompts, params):
        self.batches.append(sorted(p[0] for p in prompts))
        time.sleep(self.batch_s)
        return [Completion(token_ids=[1], logprobs=[0.0], finish_reason="stop") for _ in prompts]


async def agent(sampler: BatchingSampler, who: int, tool_s: list[float], *, live: bool = True):
    """A rollout: a turn, then for each tool latency a tool call and another turn."""
    async def turns():
        await sampler.sample([who], PARAMS)
        for seconds in tool_s:
            await asyncio.sleep(seconds)
            await sampler.sample([who], PARAMS)

    if live:
        with sampler.live():
            await turns()
    else:
        await turns()


def run(*agents):
    async def main():
        await asyncio.gather(*agents)
    asyncio.run(main())


def test_second_turns_wait_for_every_live_rollouts_tool_call():
    engine = RecordingEngine()
    sampler = BatchingSampler(engine)
    # tool latencies spread over 0.1 s, as a burst of calls to one server returns
    run(*(agent(sampler, i, [0.02 * i]) for i in range(6)))
    assert engine.batches == [list(range(6)), list(range(6))]


def test_without_live_the_first_tool_result_starts_a_batch_alone():
    """The behaviour `live()` replaces, kept for callers that do not say (a judge's sampler)."""
    engine = RecordingEngine()
    sampler = BatchingSampler(engine)
    run(*(agent(sampler, i, [0.02 * i], live=False) for i in range(6)))
    assert engine.batches[0] == list(range(6))
    assert len(engine.batches) > 2 and engine.batches[1] == [0]


def test_a_rollout_that_answered_is_not_waited_for():
    engine = RecordingEngine()
    sampler = BatchingSampler(engine, max_gather_s=30.0)
    t0 = time.perf_counter()
    # rollout 2 answers in its first turn; 0 and 1 call a tool, then answer
    run(agent(sampler, 0, [0.01]), agent(sampler, 1, [0.03]), agent(sampler, 2, []))
    assert engine.batches == [[0, 1, 2], [0, 1]]
    assert time.perf_counter() - t0 < 5  # not the 30 s cap


def test_a_slow_tool_holds_the_batch_no_longer_than_max_gather_s():
    engine = RecordingEngine()
    sampler = BatchingSampler(engine, max_gather_s=0.2)
    run(agent(sampler, 0, [0.01]), agent(sampler, 1, [0.02]), agent(sampler, 2, [1.5]))
    assert engine.batches == [[0, 1, 2], [0, 1], [2]]
