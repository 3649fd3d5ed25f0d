"""Rollouts end to end through real `HttpTool`s and a real tool server on loopback.

Only the policy is fake: `ScriptedEngine(Engine)` answers each prompt with the next
pre-written assistant turn for the prompt's user question (encoded with the bundled
tokenizer, plus `<|im_end|>`), behind the real `BatchingSampler`. Everything else is the
production path: `run_rollout(s)` → `ChatRenderer` → `parse_tool_calls` → `HttpTool` over a
socket → `LoopbackToolServer` (uvicorn) → back into the next prompt → grader.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

import pytest

from agentrft.engines.base import Completion, Engine, SamplingParams
from agentrft.graders.base import Grader, GraderResult
from agentrft.graders.python_callable import PythonCallableGrader
from agentrft.graders.string_check import StringCheckGrader
from agentrft.models.toolcalls import format_call
from agentrft.engines.batcher import BatchingSampler
from agentrft.rollout.loop import RolloutEnv, run_rollout, run_rollouts
from agentrft.rollout.types import Rollout
from agentrft.spec.dataset import DatasetRow
from agentrft.tools.http import HttpTool
from tests.tool_server import LoopbackToolServer

SECRET = "Bearer sk-loopback-test-123"
LOGPROB = -0.25  # what the scripted engine reports for every token it "samples"
_USER = re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.DOTALL)
LOOKUP_SCHEMA = {"type": "function", "function": {
    "name": "lookup", "description": "Look a fact up by key",
    "parameters": {"type": "object", "properties": {"key": {"type": "string"}}}}}


def call(name: str, **arguments: Any) -> str:
    return format_call(name, arguments)


class ScriptedEngine(Engine):
    """Answers a prompt with turn k of the script for its user question, k = turns so far.

    Records every prompt and completion so tests can check what the model was shown.
    """

    def __init__(self, tokenizer, scripts: dict[str, list[str]]):
        self.tok = tokenizer
        self.scripts = scripts
        self.im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.served: list[tuple[str, list[int], Completion]] = []  # (question, prompt, completion)
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        outs = []
        for prompt in prompts:
            text = self.tok.decode(prompt, skip_special_tokens=False)
            assert text.endswith("<|im_start|>assistant\n"), text[-200:]
            question = _USER.search(text).group(1)
            turn = text.count("<|im_start|>assistant") - 1
            script = self.scripts[question]
            assert turn < len(script), f"script for {question!r} has no turn {turn}"
            ids = self.tok.encode(script[turn], add_special_tokens=False) + [self.im_end]
            stop_at = next((i + 1 for i, t in enumerate(ids) if t in params.stop_token_ids), None)
            if stop_at is not None and stop_at <= params.max_new_tokens:
                ids, reason = ids[:stop_at], "stop"
            else:
                ids, reason = ids[:params.max_new_tokens], "length"
            outs.append(Completion(token_ids=ids, logprobs=[LOGPROB] * len(ids),
                                   finish_reason=reason))
            with self._lock:
                self.served.append((question, list(prompt), outs[-1]))
        with self._lock:
            self.batch_sizes.append(len(prompts))
        return outs

    def prompts_for(self, question: str) -> list[str]:
        """Every prompt this question's rollout was sampled from, decoded, in order."""
        return [self.tok.decode(p, skip_special_tokens=False)
                for q, p, _ in self.served if q == question]

    def turns_for(self, question: str) -> list[tuple[list[int], Completion]]:
        return [(p, c) for q, p, c in self.served if q == question]


class RecordingGrader(Grader):
    """Scores 1.0 and remembers what it was given."""

    name, type = "recording", "python"

    def __init__(self):
        self.seen: list[tuple[dict, dict, str]] = []

    async def grade(self, sample, item, trace_id):
        self.seen.append((sample, item, trace_id))
        return GraderResult.make(1.0, name=self.name, type=self.type)


def row(question: str, **item: Any) -> DatasetRow:
    return DatasetRow.model_validate({"messages": [{"role": "user", "content": question}],
                                      "tools": [LOOKUP_SCHEMA], **item})


@pytest.fixture(scope="module")
def server():
    with LoopbackToolServer(lookup={"revenue": "$42M", "ceo": "Ada", "year": "2023"},
                            slow_s=0.5) as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh_records(server):
    server.clear()


@pytest.fixture
async def tools(server):
    made = {
        "lookup": HttpTool("lookup", server.url("/lookup"), headers={"Authorization": SECRET},
                           backoff_s=0.01),
        "slow": HttpTool("slow", server.url("/slow"), backoff_s=0.01),
        "down": HttpTool("down", server.url("/flaky503"), max_retries=2, backoff_s=0.01),
        "notjson": HttpTool("notjson", server.url("/notjson"), backoff_s=0.01),
    }
    yield made
    for tool in made.values():
        await tool.aclose()


@pytest.fixture
def make_env(renderer, tools, tokenizer):
    """make_env(scripts, **RolloutEnv overrides) -> (env, engine)."""

    def make(scripts: dict[str, list[str]], **overrides: Any) -> tuple[RolloutEnv, ScriptedEngine]:
        engine = ScriptedEngine(tokenizer, scripts)
        config = dict(sampler=BatchingSampler(engine), renderer=renderer, tools=tools,
                      params=SamplingParams(temperature=1.0, max_new_tokens=96,
                                            stop_token_ids=renderer.stop_token_ids),
                      max_episode_steps=5, max_rollout_tokens=8192)
        config.update(overrides)
        return RolloutEnv(**config), engine

    return make


def assert_mask_marks_exactly_the_sampled_tokens(rollout: Rollout, engine: ScriptedEngine,
                                                 question: str, script: list[str]) -> None:
    turns = engine.turns_for(question)
    assert len(turns) == len(script) == rollout.turns
    assert len(rollout.mask) == len(rollout.token_ids) == len(rollout.logprobs)
    assert rollout.prompt_len == len(turns[0][0])
    written = set()
    for (prompt, completion), text in zip(turns, script):
        # Each prompt is the rollout so far: nothing was re-tokenized or re-rendered.
        assert rollout.token_ids[:len(prompt)] == prompt
        span = range(len(prompt), len(prompt) + len(completion.token_ids))
        expected = engine.tok.encode(text, add_special_tokens=False) + [engine.im_end]
        assert completion.token_ids == expected
        assert [rollout.token_ids[i] for i in span] == expected  # unchanged, stop token included
        written.update(span)
    assert [i for i, m in enumerate(rollout.mask) if m] == sorted(written)
    assert all(m in (0, 1) for m in rollout.mask)
    assert [rollout.logprobs[i] for i in sorted(written)] == [LOGPROB] * len(written)
    assert all(lp == 0.0 for i, lp in enumerate(rollout.logprobs) if i not in written)
    assert rollout.completion_tokens == len(written)


# -- wire format, trace ids, headers, masks ------------------------------------------

async def test_concurrent_rollouts_speak_the_wire_format(server, make_env):
    scripts = {
        "Q-revenue": ["Let me look that up.\n" + call("lookup", key="revenue"),
                      "Checking the year too.\n" + call("lookup", key="year"),
                      "ACME's 2023 revenue was $42M."],
        "Q-ceo": [call("lookup", key="ceo") + "\n" + call("lookup", key="year"),
                  "The CEO in 2023 was Ada."],
        "Q-direct": ["I already know: 7."],
    }
    grader = RecordingGrader()
    env, engine = make_env(scripts, grader=grader)
    items = {"Q-revenue": {"answer": "$42M", "row": 0, "meta": {"topic": "finance"}},
             "Q-ceo": {"answer": "Ada", "row": 1}, "Q-direct": {"answer": "7", "row": 2}}
    rows = [(i, row(q, **items[q])) for i, q in enumerate(scripts)]

    rollouts = await run_rollouts(rows, env)

    assert [r.status for r in rollouts] == ["completed"] * 3
    assert [r.row_index for r in rollouts] == [0, 1, 2]
    assert [r.final_text for r in rollouts] == [s[-1] for s in scripts.values()]
    assert [r.turns for r in rollouts] == [3, 2, 1]
    assert [len(r.tool_calls) for r in rollouts] == [2, 2, 0]
    assert max(engine.batch_sizes) > 1  # turns of concurrent rollouts shared engine batches

    requests = server.requests_for("/lookup")
    assert len(requests) == 4
    by_trace = {r.trace_id: r for r in rollouts}
    assert len(by_trace) == 3 and all(t.startswith("trace_") for t in by_trace)
    for seen in requests:
        body = seen.json
        assert seen.method == "POST"
        assert set(body) == {"type", "id", "call_id", "name", "arguments", "trace_id", "item"}
        assert body["type"] == "function_call" and body["name"] == "lookup"
        assert body["id"].startswith("fc_") and body["call_id"].startswith("call_")
        assert isinstance(body["arguments"], str) and set(json.loads(body["arguments"])) == {"key"}
        rollout = by_trace[body["trace_id"]]  # the trace_id of one of our rollouts ...
        assert body["item"] == items[list(items)[rollout.row_index]] == rollout.item
        assert "messages" not in body["item"] and "tools" not in body["item"]
        # ... and the call is one that rollout recorded, with the same call_id and arguments.
        (record,) = [c for c in rollout.tool_calls if c.call_id == body["call_id"]]
        assert record.arguments == body["arguments"] and record.name == "lookup"
        assert seen.headers["authorization"] == SECRET
        assert seen.headers["content-type"] == "application/json"
    assert len({s.json["id"] for s in requests}) == len({s.json["call_id"] for s in requests}) == 4
    # One trace_id per rollout, on every one of its calls (two turns for Q-revenue).
    assert [sorted(json.loads(s.json["arguments"])["key"] for s in requests
                   if s.json["trace_id"] == r.trace_id) for r in rollouts] \
        == [["revenue", "year"], ["ceo", "year"], []]

    # The grader got every rollout, with that rollout's trace_id and item.
    assert sorted(t for _, _, t in grader.seen) == sorted(by_trace)
    for sample, item, trace_id in grader.seen:
        assert item == by_trace[trace_id].item and sample["output_text"] == by_trace[trace_id].final_text
    assert [r.reward for r in rollouts] == [1.0, 1.0, 1.0]

    # Tool outputs reached the model, in the order of the calls.
    revenue_prompts = engine.prompts_for("Q-revenue")
    assert revenue_prompts[1].endswith("<|im_start|>tool\n$42M<|im_end|>\n<|im_start|>assistant\n")
    assert revenue_prompts[2].endswith("<|im_start|>tool\n2023<|im_end|>\n<|im_start|>assistant\n")
    assert engine.prompts_for("Q-ceo")[1].endswith(
        "<|im_start|>tool\nAda<|im_end|>\n<|im_start|>tool\n2023<|im_end|>\n<|im_start|>assistant\n")
    assert [c.output for c in rollouts[1].tool_calls] == ["Ada", "2023"]
    assert all(not c.is_error and c.status_code == 200 and c.latency_s > 0
               for r in rollouts for c in r.tool_calls)

    for r, (question, script) in zip(rollouts, scripts.items()):
        assert_mask_marks_exactly_the_sampled_tokens(r, engine, question, script)


async def test_messages_record_the_conversation(make_env):
    script = ["Let me check. " + call("lookup", key="revenue"), "It was $42M."]
    env, _ = make_env({"Q": script})
    rollout = await run_rollout(row("Q"), 0, env)
    roles = [m["role"] for m in rollout.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assistant, tool = rollout.messages[1], rollout.messages[2]
    assert assistant["tool_calls"] == [{"id": rollout.tool_calls[0].call_id, "type": "function",
                                        "function": {"name": "lookup",
                                                     "arguments": '{"key": "revenue"}'}}]
    assert tool == {"role": "tool", "tool_call_id": rollout.tool_calls[0].call_id,
                    "content": "$42M"}
    assert rollout.messages[3] == {"role": "assistant", "content": "It was $42M."}


# -- failures that are the infrastructure's: discard, never score -------------------

async def test_a_5xx_tool_is_retried_then_the_rollout_is_discarded(server, make_env):
    scripts = {"Q-down": ["Trying. " + call("down", x=1), "never reached"],
               "Q-fine": [call("lookup", key="ceo"), "Ada."]}
    grader = RecordingGrader()
    env, engine = make_env(scripts, grader=grader)

    down, fine = await run_rollouts([(0, row("Q-down", answer="1")), (1, row("Q-fine"))], env)

    assert server.count("/flaky503") == 1 + 2  # 1 + max_retries
    assert down.status == "discarded" and down.discarded
    assert down.reward is None and down.shaped_reward is None and down.grader_result is None
    assert down.tool_infra_failures == 1
    assert "down" in down.discard_reason and "503" in down.discard_reason
    assert len(engine.prompts_for("Q-down")) == 1  # the model was never shown anything after it
    assert down.tool_calls == []
    # Only the healthy rollout was graded; the other rollout in the batch is unaffected.
    assert [t for _, _, t in grader.seen] == [fine.trace_id]
    assert fine.status == "completed" and fine.reward == 1.0 and fine.tool_infra_failures == 0


async def test_an_infra_failure_stops_the_other_calls_of_its_turn(server, make_env):
    env, _ = make_env({"Q": [call("down") + call("slow", sleep_s=0.6), "never reached"]})
    start = time.monotonic()
    rollout = await run_rollout(row("Q"), 0, env)

    assert rollout.status == "discarded" and time.monotonic() - start < 0.5
    assert server.count("/slow") == 1  # it was sent ...
    # ... and is no longer running on our side once the rollout is over.
    assert not [t for t in asyncio.all_tasks() if "_call_one" in repr(t.get_coro())]


# -- failures that are the model's: shown to the model -------------------------------

async def test_a_4xx_is_shown_to_the_model_as_the_tool_output(server, make_env):
    script = [call("lookup", key="nope"), call("lookup", key="revenue"), "$42M"]
    env, engine = make_env({"Q": script})
    rollout = await run_rollout(row("Q"), 0, env)

    assert rollout.status == "completed" and rollout.final_text == "$42M"
    assert server.count("/lookup") == 2  # a 4xx is not retried
    bad, good = rollout.tool_calls
    assert bad.is_error and bad.status_code == 400
    assert bad.output.startswith("Error 400: unknown key 'nope'")
    assert not good.is_error and good.output == "$42M"
    second_prompt = engine.prompts_for("Q")[1]
    assert ("<|im_start|>tool\n" + bad.output + "<|im_end|>\n<|im_start|>assistant\n") in second_prompt
    assert "unknown key 'nope'" in second_prompt


async def test_a_non_json_reply_is_a_tool_error_the_model_sees(make_env):
    env, engine = make_env({"Q": [call("notjson"), "ok"]})
    rollout = await run_rollout(row("Q"), 0, env)
    (record,) = rollout.tool_calls
    assert record.is_error and record.status_code == 200
    assert record.output.startswith("Error: tool 'notjson' returned a non-JSON body")
    assert record.output in engine.prompts_for("Q")[1]
    assert "plain text, not JSON" in engine.prompts_for("Q")[1]
    assert rollout.status == "completed"


@pytest.mark.parametrize("bad_text, message", [
    ('<tool_call>{"name": "lookup", "arguments": {key: revenue}}</tool_call>',
     "Error: the tool call is not valid JSON"),
    ('<tool_call>{"name": "shell", "arguments": {}}</tool_call>', "Error: unknown tool 'shell'"),
    ('<tool_call>{"arguments": {"key": "ceo"}}</tool_call>', 'a string "name"'),
    ('<tool_call>{"name": "lookup", "arguments": ["ceo"]}</tool_call>', "must be a JSON object"),
    ('Let me call <tool_call>{"name": "lookup", "arguments": {"key"', "opened but never closed"),
])
async def test_a_malformed_call_is_shown_to_the_model(server, make_env, bad_text, message):
    env, engine = make_env({"Q": [bad_text, "Sorry, I give up."]})
    rollout = await run_rollout(row("Q"), 0, env)

    assert server.requests == []  # nothing reached any tool
    (record,) = rollout.tool_calls
    assert record.is_error and record.name == "(malformed)" and message in record.output
    second_prompt = engine.prompts_for("Q")[1]
    assert ("<|im_start|>tool\n" + record.output + "<|im_end|>\n<|im_start|>assistant\n") \
        in second_prompt
    assert rollout.status == "completed" and rollout.final_text == "Sorry, I give up."


async def test_good_and_malformed_calls_in_one_turn(server, make_env):
    env, engine = make_env({"Q": [call("lookup", key="ceo") + "<tool_call>oops</tool_call>", "Ada"]})
    rollout = await run_rollout(row("Q"), 0, env)
    assert server.count("/lookup") == 1
    good, bad = rollout.tool_calls
    assert good.output == "Ada" and not good.is_error
    assert bad.is_error and bad.arguments == "oops"
    assert engine.prompts_for("Q")[1].endswith(
        "<|im_start|>tool\nAda<|im_end|>\n<|im_start|>tool\n" + bad.output
        + "<|im_end|>\n<|im_start|>assistant\n")


# -- budgets -------------------------------------------------------------------------

async def test_max_episode_steps_is_enforced_before_calls_reach_the_server(server, make_env):
    script = [call("lookup", key="revenue"),
              "Two more. " + call("lookup", key="ceo") + call("lookup", key="year"),
              "never reached"]
    grader = RecordingGrader()
    env, engine = make_env({"Q": script}, max_episode_steps=2, grader=grader)
    rollout = await run_rollout(row("Q"), 0, env)

    assert rollout.status == "budget_exceeded"
    assert [json.loads(r.json["arguments"]) for r in server.requests_for("/lookup")] \
        == [{"key": "revenue"}]  # the turn that would pass the budget made no call at all
    assert [c.output for c in rollout.tool_calls] == ["$42M"]
    assert len(engine.prompts_for("Q")) == 2 and rollout.turns == 2
    assert rollout.final_text == "Two more."
    assert rollout.reward == 1.0  # still graded: the model's own doing, not an infra failure


async def test_calls_up_to_the_budget_are_allowed(server, make_env):
    script = [call("lookup", key="revenue"), call("lookup", key="year"), "$42M in 2023"]
    env, _ = make_env({"Q": script}, max_episode_steps=2)
    rollout = await run_rollout(row("Q"), 0, env)
    assert rollout.status == "completed" and server.count("/lookup") == 2


async def test_malformed_calls_count_against_the_budget(server, make_env):
    env, _ = make_env({"Q": ["<tool_call>nope</tool_call>", call("lookup", key="ceo"), "x"]},
                      max_episode_steps=1)
    rollout = await run_rollout(row("Q"), 0, env)
    assert rollout.status == "budget_exceeded" and server.count("/lookup") == 0


# -- parallel calls ------------------------------------------------------------------

async def test_calls_of_one_turn_overlap_in_time_on_the_server(server, make_env):
    script = [call("slow", sleep_s=0.5, n=1) + "\n" + call("slow", sleep_s=0.5, n=2), "done"]
    env, engine = make_env({"Q": script})
    rollout = await run_rollout(row("Q"), 0, env)

    first, second = server.requests_for("/slow")
    assert first.finished_at is not None and second.finished_at is not None
    assert max(first.received_at, second.received_at) < min(first.finished_at, second.finished_at)
    assert rollout.timing["tools"] < 0.95  # not 0.5 + 0.5
    # Results come back in the order of the calls, whichever finished first.
    assert [json.loads(c.output)["n"] for c in rollout.tool_calls] == [1, 2]
    assert len({first.json["trace_id"], second.json["trace_id"], rollout.trace_id}) == 1


# -- which turns share a batch -------------------------------------------------------

async def test_turns_after_tool_calls_of_different_latency_share_one_batch(server, make_env):
    """Each rollout is live around its turns (batcher.py), so the batch after the tools waits
    for the slowest reply instead of starting with the first one."""
    scripts = {f"Q{i}": [call("slow", sleep_s=0.05 + 0.1 * i), f"answer {i}"] for i in range(4)}
    scripts["Q-direct"] = ["I already know: 7."]  # answers at once: not waited for
    env, engine = make_env(scripts)
    rollouts = await run_rollouts([(i, row(q)) for i, q in enumerate(scripts)], env)

    assert [r.status for r in rollouts] == ["completed"] * 5
    assert engine.batch_sizes == [5, 4]


# -- graders see the answer and the trajectory ---------------------------------------

async def test_python_grader_sees_the_final_answer_and_the_trajectory(make_env):
    seen: list[tuple[dict, dict]] = []

    def grade(sample: dict, item: dict) -> float:
        seen.append((sample, item))
        return 0.75

    script = ["Looking up. " + call("lookup", key="revenue"), "ACME's revenue was $42M."]
    env, _ = make_env({"Q": script}, grader=PythonCallableGrader("trajectory", grade))
    rollout = await run_rollout(row("Q", answer="$42M"), 0, env)

    ((sample, item),) = seen
    assert item == {"answer": "$42M"}
    assert sample["output_text"] == "ACME's revenue was $42M."
    assert sample["choices"][0]["message"]["content"] == "ACME's revenue was $42M."
    trajectory = sample["trajectory"]
    assert trajectory["status"] == "completed"
    assert [m["role"] for m in trajectory["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert trajectory["messages"][0]["content"] == "Q"
    (tool_call,) = trajectory["tool_calls"]
    assert tool_call["name"] == "lookup" and json.loads(tool_call["arguments"]) == {"key": "revenue"}
    assert tool_call["output"] == "$42M" and tool_call["is_error"] is False
    assert tool_call["call_id"] == trajectory["messages"][2]["tool_call_id"]
    assert rollout.reward == 0.75 and rollout.grader_result["metadata"]["name"] == "trajectory"


@pytest.mark.parametrize("answer, reward", [("$42M", 1.0), ("$41M", 0.0)])
async def test_string_check_grader_scores_the_final_answer(make_env, answer, reward):
    script = [call("lookup", key="revenue"), "$42M"]
    grader = StringCheckGrader(name="exact", input="{{sample.output_text}}",
                               reference="{{item.answer}}", operation="eq")
    env, _ = make_env({"Q": script}, grader=grader)
    rollout = await run_rollout(row("Q", answer=answer), 0, env)
    assert rollout.status == "completed" and rollout.reward == reward  # 0.0 is a score, not None
    assert rollout.grader_result["metadata"]["type"] == "string_check"
