"""Any exception in a rollout is a discarded rollout with its reason, never a failed job: an
unexpected error in a tool client (an MCP SDK's, a bug), a Python tool's, the engine's (the
batcher hands it to every waiting turn), the parser's. The turn's other calls are cancelled and
the other rollouts complete. Cancellation is not a failure.

Only the policy is scripted (`ScriptedEngine(Engine)` from test_rollout_http); the tools are
real `PythonTool`s and a `ToolClient` subclass, behind the real loop and batcher."""

from __future__ import annotations

import asyncio

import pytest

from agentrft.engines.base import Engine, SamplingParams
from agentrft.errors import EngineError
from agentrft.engines.batcher import BatchingSampler
from agentrft.rollout.loop import RolloutEnv, run_rollout, run_rollouts
from agentrft.tools.base import ToolCallRequest, ToolClient, ToolOutcome
from agentrft.tools.python_tool import PythonTool
from agentrft.train.metrics import rollout_metrics
from tests.test_rollout_http import RecordingGrader, ScriptedEngine, call, row


class SessionLost(Exception):
    """What an SDK might raise: not ToolInfraFailure, not anything the loop knows."""


class CrashingTool(ToolClient):
    """A tool client with a bug in it (or in its SDK): raises a plain exception."""

    name = "crash"

    async def call(self, request: ToolCallRequest) -> ToolOutcome:
        await asyncio.sleep(0.05)  # its sibling is running by then
        raise SessionLost("the session went away")


class Sibling:
    """An async Python tool that takes a while and records whether it was cancelled."""

    def __init__(self):
        self.started = 0
        self.cancelled = 0
        self.finished = 0

    async def __call__(self, arguments: dict, context) -> str:
        self.started += 1
        try:
            await asyncio.sleep(arguments.get("sleep_s", 5.0))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return "slept"


def python_bug(arguments: dict, context) -> str:
    """A Python tool with a bug: not one of the model's errors (ValueError, KeyError, ...)."""
    raise ZeroDivisionError("division by zero in the tool")


def lookup(arguments: dict, context) -> str:
    return {"ceo": "Ada"}[arguments["key"]]


@pytest.fixture
def sibling():
    return Sibling()


@pytest.fixture
def make_env(renderer, tokenizer, sibling):
    def make(scripts, engine: Engine | None = None, **overrides) -> tuple[RolloutEnv, Engine]:
        engine = engine or ScriptedEngine(tokenizer, scripts)
        tools = {"crash": CrashingTool(), "slow": PythonTool("slow", sibling),
                 "bug": PythonTool("bug", python_bug), "lookup": PythonTool("lookup", lookup)}
        config = dict(sampler=BatchingSampler(engine), renderer=renderer, tools=tools,
                      params=SamplingParams(temperature=1.0, max_new_tokens=96,
                                            stop_token_ids=renderer.stop_token_ids),
                      max_episode_steps=5, max_rollout_tokens=8192, grader=RecordingGrader())
        config.update(overrides)
        return RolloutEnv(**config), engine

    return make


def _no_call_tasks_left() -> bool:
    return not [t for t in asyncio.all_tasks() if "_call_one" in repr(t.get_coro())]


async def test_a_tool_client_error_discards_its_rollout_cancels_its_sibling_and_spares_the_rest(
        make_env, sibling):
    scripts = {"Q-crash": [call("crash") + call("slow", sleep_s=5.0), "never reached"],
               "Q-fine": [call("lookup", key="ceo"), "Ada."]}
    env, engine = make_env(scripts)

    crashed, fine = await run_rollouts([(0, row("Q-crash")), (1, row("Q-fine"))], env)

    assert crashed.status == "discarded" and crashed.reward is None
    assert crashed.discard_reason == ("tool client failure: tool 'crash' raised SessionLost: "
                                      "the session went away")
    assert crashed.tool_infra_failures == 0  # not an infrastructure failure: a bug, counted apart
    assert sibling.started == 1 and sibling.cancelled == 1 and sibling.finished == 0
    assert _no_call_tasks_left()
    assert len(engine.prompts_for("Q-crash")) == 1  # the model saw nothing after it
    assert fine.status == "completed" and fine.reward == 1.0
    assert [t for _, _, t in env.grader.seen] == [fine.trace_id]
    metrics = rollout_metrics([crashed, fine], "train")
    assert metrics["discarded_rollouts"] == 1 and metrics["train_reward_mean"] == 1.0


async def test_a_python_tool_bug_discards_with_type_and_message(make_env, sibling):
    env, _ = make_env({"Q": [call("bug") + call("slow", sleep_s=5.0), "never reached"]})
    rollout = await run_rollout(row("Q"), 0, env)
    assert rollout.status == "discarded"
    assert "ZeroDivisionError" in rollout.discard_reason
    assert "division by zero in the tool" in rollout.discard_reason
    assert sibling.cancelled == 1 and _no_call_tasks_left()


class FailingEngine(Engine):
    """An engine whose server fails: every waiting turn gets the error from the batcher."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        raise EngineError("POST http://vllm:8000/v1/completions answered 400: bad lora name")


async def test_an_engine_error_discards_every_waiting_rollout_without_raising(make_env):
    engine = FailingEngine()
    env, _ = make_env({}, engine=engine)
    rollouts = await run_rollouts([(i, row(f"Q{i}")) for i in range(4)], env)
    assert engine.calls >= 1
    assert [r.status for r in rollouts] == ["discarded"] * 4
    assert all(r.discard_reason.startswith("EngineError: POST http://vllm:8000") for r in rollouts)
    assert all(r.reward is None and "rollout" in r.timing for r in rollouts)


async def test_a_parser_bug_discards_the_rollout(make_env, monkeypatch):
    import agentrft.rollout.loop as loop

    def broken(text, known):
        raise IndexError("parser bug")

    monkeypatch.setattr(loop, "parse_tool_calls", broken)
    env, _ = make_env({"Q": ["Ada."]})
    rollout = await run_rollout(row("Q"), 0, env)
    assert rollout.status == "discarded" and rollout.discard_reason == "IndexError: parser bug"
    assert rollout.turns == 0 and rollout.completion_tokens > 0  # the sampled turn is kept


async def test_cancelling_a_rollout_is_not_a_discard(make_env, sibling):
    env, _ = make_env({"Q": [call("slow", sleep_s=5.0), "never reached"]})
    task = asyncio.ensure_future(run_rollout(row("Q"), 0, env))
    while not sibling.started:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sibling.cancelled == 1 and _no_call_tasks_left()


def test_an_engine_failing_mid_job_pauses_it_through_the_discard_rate(tmp_path, tiny_model_dir,
                                                                       monkeypatch):
    """The trainer sees discarded rollouts, not an exception: its discard-rate pause decides."""
    from agentrft.engines.transformers_engine import TransformersEngine
    from agentrft.train.loop import Trainer
    from tests.test_train_tiny import make_job

    def down(self, prompts, params):
        raise EngineError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(TransformersEngine, "generate", down)
    job = make_job(tmp_path, tiny_model_dir, max_steps=1)
    trainer = Trainer(job, tmp_path / "run", evaluate=False)
    asyncio.run(trainer.run_async())
    assert trainer.outcome == "paused" and "8 of 8 rollouts discarded" in trainer.pause_reason
    assert "EngineError: CUDA error" in trainer.pause_reason
