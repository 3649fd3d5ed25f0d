"""The agent loop: render → generate → parse tool calls → call tools (in parallel) → append → repeat.

One `trace_id` per rollout, sent with every tool call and to the grader. A rollout ends when
the model answers without a tool call (`completed`), when its next calls would exceed
`max_episode_steps` (`budget_exceeded`), when the token budget runs out (`truncated`), or
when something fails that is not the model's doing (`discarded`: never scored, with a
`discard_reason`): a tool or grader infrastructure failure, and any other exception in the
rollout too (an engine error handed to every waiting turn, a bug in a tool client, its SDK or
the parser). A failure is a value: `run_rollouts` always returns every rollout, the turn's
other tool calls are cancelled, and the trainer's discard-rate pause decides what happens
next. Cancellation (`asyncio.CancelledError`) and `KeyboardInterrupt` are not failures and
propagate.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from agentrft.engines.base import SamplingParams
from agentrft.engines.constrained import Constraint
from agentrft.errors import GraderInfraFailure, ToolInfraFailure
from agentrft.graders.base import Grader
from agentrft.models.chat import ChatRenderer
from agentrft.models.structured import TEXT, OutputFormat, reply_grammar
from agentrft.models.toolcalls import parse_tool_calls
from agentrft.engines.batcher import BatchingSampler
from agentrft.rollout.types import Rollout, ToolCallRecord
from agentrft.spec.dataset import DatasetRow
from agentrft.tools.base import ToolCallRequest, ToolClient

_THINK = re.compile(r"<think>(.*?)(</think>|$)", re.DOTALL)
log = logging.getLogger(__name__)


class ToolCrashed(Exception):
    """A tool client raised something other than `ToolInfraFailure` (a bug in it or its SDK):
    its rollout is discarded. Internal to the loop; the reason names the tool."""

    def __init__(self, name: str, error: Exception):
        super().__init__(f"tool '{name}' raised {type(error).__name__}: {error}")


@dataclass
class RolloutEnv:
    """Everything a rollout needs besides its row; shared by all rollouts of a job."""

    sampler: BatchingSampler
    renderer: ChatRenderer
    tools: dict[str, ToolClient]
    params: SamplingParams
    max_episode_steps: int
    max_rollout_tokens: int
    grader: Grader | None = None
    # The final answer's format (the job's response_format); with a JSON one, or a row tool
    # marked strict, every turn samples under a grammar: an answer in the format, or tool calls.
    answer_format: OutputFormat = TEXT
    _constraints: dict[str, Constraint] = field(default_factory=dict, repr=False)

    def turn_params(self, schemas: list[dict[str, Any]]) -> SamplingParams:
        """The sampling parameters of a turn offered `schemas`, constrained when needed."""
        grammar = reply_grammar(self.answer_format, schemas)
        if grammar is None:
            return self.params
        if grammar not in self._constraints:  # one object per grammar: rows batch together
            self._constraints[grammar] = Constraint.compile(
                grammar, self.renderer.tok, self.params.stop_token_ids)
        return replace(self.params, constraint=self._constraints[grammar])


def new_trace_id() -> str:
    return f"trace_{uuid.uuid4().hex}"


def _tool_schemas(row: DatasetRow, env: RolloutEnv) -> list[dict[str, Any]]:
    """The row's tool schemas; a job tool the row does not describe is offered with the schema
    its client knows (an MCP server's own), else by name only."""
    schemas = row.tools_as_dicts()
    described = {t["function"]["name"] for t in schemas}
    for name, client in env.tools.items():
        if name not in described:
            schemas.append(client.schema or {"type": "function", "function": {
                "name": name, "description": "", "parameters": {"type": "object"}}})
    return schemas


async def _call_one(env: RolloutEnv, rollout: Rollout, turn: int, name: str, arguments: str
                    ) -> ToolCallRecord:
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    request = ToolCallRequest(id=f"fc_{uuid.uuid4().hex[:24]}", call_id=call_id, name=name,
                              arguments=arguments, trace_id=rollout.trace_id, item=rollout.item)
    t0 = time.perf_counter()
    try:
        outcome = await env.tools[name].call(request)
    except ToolInfraFailure:
        raise
    except Exception as e:  # noqa: BLE001 - named here, discarded by the loop
        raise ToolCrashed(name, e) from e
    return ToolCallRecord(turn=turn, call_id=call_id, name=name, arguments=arguments,
                          output=outcome.output, is_error=outcome.is_error,
                          latency_s=outcome.latency_s or (time.perf_counter() - t0),
                          status_code=outcome.status_code)


async def run_rollout(row: DatasetRow, row_index: int, env: RolloutEnv,
                      trace_id: str | None = None) -> Rollout:
    """One rollout of `row`; whatever fails in it comes back as a discarded rollout."""
    rollout = Rollout(trace_id=trace_id or new_trace_id(), row_index=row_index, item=row.item)
    t_start = time.perf_counter()
    try:
        await _run_rollout(row, env, rollout)
    except Exception as e:  # noqa: BLE001 - failures are data; CancelledError is a BaseException
        _discard(rollout, f"{type(e).__name__}: {e}")
        log.debug("rollout %s failed", rollout.trace_id, exc_info=True)
    finally:  # however it ended, also cancelled: tools release what they hold for it (sandboxes)
        rollout.timing.setdefault("rollout", time.perf_counter() - t_start)  # failed: not set
        closing = [t.close_trace(rollout.trace_id) for t in env.tools.values()]
        await asyncio.shield(asyncio.gather(*closing, return_exceptions=True))
    return rollout


def _discard(rollout: Rollout, reason: str) -> None:
    rollout.status, rollout.discard_reason = "discarded", reason
    rollout.reward = rollout.shaped_reward = None


async def _run_rollout(row: DatasetRow, env: RolloutEnv, rollout: Rollout) -> None:
    t_start = time.perf_counter()
    schemas = _tool_schemas(row, env)
    known = set(env.tools)
    rollout.messages = row.messages_as_dicts()
    prompt = env.renderer.prompt_ids(rollout.messages, schemas)
    rollout.append(prompt, model_written=False)
    rollout.prompt_len = len(prompt)
    steps_used = 0
    tool_time = 0.0
    params = env.turn_params(schemas)

    with env.sampler.live():  # while it is in a tool call, the next batch waits for it (batcher.py)
        while True:
            if len(rollout.token_ids) + params.max_new_tokens > env.max_rollout_tokens:
                rollout.status = "truncated"
                break
            completion = await env.sampler.sample(rollout.token_ids, params)
            rollout.append(completion.token_ids, model_written=True, logprobs=completion.logprobs)
            text = env.renderer.tok.decode(completion.token_ids, skip_special_tokens=True)
            rollout.reasoning_tokens += sum(len(env.renderer.tok.encode(m.group(1), add_special_tokens=False))
                                            for m in _THINK.finditer(text))
            parsed = parse_tool_calls(_THINK.sub("", text), known)
            turn = rollout.turns
            rollout.turns += 1
            assistant: dict[str, Any] = {"role": "assistant", "content": text}
            if parsed.attempted == 0:
                rollout.messages.append(assistant)
                rollout.final_text = parsed.content
                # An answer cut off by max_new_tokens is still graded, but flagged.
                rollout.status = "completed" if completion.finish_reason == "stop" else "truncated"
                break
            if steps_used + parsed.attempted > env.max_episode_steps:
                rollout.messages.append(assistant)
                rollout.final_text = parsed.content
                rollout.status = "budget_exceeded"
                break
            steps_used += parsed.attempted

            t_tools = time.perf_counter()
            calls = [asyncio.ensure_future(_call_one(env, rollout, turn, c.name, c.arguments_json))
                     for c in parsed.calls]
            try:
                records = await asyncio.gather(*calls)
            except Exception as e:  # noqa: BLE001 - a failed call ends the rollout as a value
                # gather leaves the turn's other calls running; the rollout is over, so stop them.
                for task in calls:
                    task.cancel()
                await asyncio.gather(*calls, return_exceptions=True)
                rollout.messages.append(assistant)
                if isinstance(e, ToolInfraFailure):
                    rollout.tool_infra_failures += 1
                    _discard(rollout, f"tool infrastructure failure: {e}")
                elif isinstance(e, ToolCrashed):
                    _discard(rollout, f"tool client failure: {e}")
                else:
                    raise
                break
            finally:
                tool_time += time.perf_counter() - t_tools
            records = list(records) + [
                ToolCallRecord(turn=turn, call_id=f"call_{uuid.uuid4().hex[:24]}", name="(malformed)",
                               arguments=p.raw, output=p.message, is_error=True)
                for p in parsed.problems]
            rollout.tool_calls.extend(records)
            # OpenAI's shape: the calls in `tool_calls`, the rest of the text in `content`
            # (the exact text stays in the token ids).
            assistant["content"] = parsed.content
            assistant["tool_calls"] = [{"id": r.call_id, "type": "function",
                                        "function": {"name": r.name, "arguments": r.arguments}}
                                       for r in records]
            rollout.messages.append(assistant)
            tool_messages = [{"role": "tool", "tool_call_id": r.call_id, "content": r.output}
                             for r in records]
            rollout.messages.extend(tool_messages)
            rollout.append(env.renderer.close_turn_ids(completion.token_ids) +
                           env.renderer.tool_results_ids(tool_messages), model_written=False)

    rollout.timing["tools"] = tool_time
    rollout.timing["rollout"] = time.perf_counter() - t_start
    if env.grader is not None and not rollout.discarded:
        await grade_rollout(rollout, env.grader)


async def grade_rollout(rollout: Rollout, grader: Grader) -> None:
    t0 = time.perf_counter()
    try:
        result = await grader.grade(rollout.to_sample(), rollout.item, rollout.trace_id)
    except GraderInfraFailure as e:
        rollout.status, rollout.discard_reason = "discarded", f"grader failure: {e}"
        return
    except Exception as e:  # noqa: BLE001 - a grader bug discards this rollout, not the step
        rollout.status, rollout.discard_reason = "discarded", f"grader crashed: {type(e).__name__}: {e}"
        return
    finally:
        rollout.timing["grading"] = time.perf_counter() - t0
    rollout.grader_result = result.to_dict()
    if result.should_discard:  # the grader could not score it: not the model's fault
        rollout.status = "discarded"
        rollout.discard_reason = f"grader error: {', '.join(result.raised_flags)}"
        return
    rollout.reward = min(1.0, max(0.0, float(result.reward)))


async def run_rollouts(rows: list[tuple[int, DatasetRow]], env: RolloutEnv) -> list[Rollout]:
    """Run many rollouts concurrently; their turns share the engine's batches. Every rollout
    comes back, failed ones discarded with their reason."""
    return list(await asyncio.gather(*(run_rollout(row, i, env) for i, row in rows)))
