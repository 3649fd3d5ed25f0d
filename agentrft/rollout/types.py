"""A rollout: one attempt at one dataset row, as data.

`token_ids` is the whole sequence exactly as fed to and sampled from the engine; `mask` is 1
only on tokens the model wrote; `logprobs` holds the engine's log-probability for those
tokens as it sampled them (NaN where it reported none; 0.0 on tokens it did not write): the
behaviour policy the trainer's importance ratio is taken against. Everything else is for graders, metrics and people reading traces.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["completed", "budget_exceeded", "truncated", "discarded"]


@dataclass
class ToolCallRecord:
    turn: int
    call_id: str
    name: str
    arguments: str  # JSON string
    output: str
    is_error: bool  # model-caused: shown to the model, counted as a tool error
    latency_s: float = 0.0
    status_code: int | None = None


@dataclass
class Rollout:
    trace_id: str
    row_index: int
    item: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)  # the whole conversation
    token_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prompt_len: int = 0
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    final_text: str = ""
    turns: int = 0
    reasoning_tokens: int = 0
    status: Status = "completed"
    discard_reason: str | None = None
    tool_infra_failures: int = 0
    reward: float | None = None  # the grader's reward in [0, 1]
    shaped_reward: float | None = None  # after penalties; what advantages are computed from
    grader_result: dict[str, Any] | None = None
    timing: dict[str, float] = field(default_factory=dict)

    def append(self, ids: list[int], *, model_written: bool, logprobs: list[float] | None = None):
        self.token_ids.extend(ids)
        self.mask.extend([1 if model_written else 0] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))

    @property
    def completion_tokens(self) -> int:
        return sum(self.mask)

    @property
    def discarded(self) -> bool:
        return self.status == "discarded"

    def to_sample(self) -> dict[str, Any]:
        """The sample object graders see (OpenAI's fields plus our `trajectory`)."""
        try:
            output_json = json.loads(self.final_text)
        except (json.JSONDecodeError, ValueError):
            output_json = None
        last_calls = [c for c in self.tool_calls if c.turn == self.turns - 1] if self.tool_calls else []
        return {
            "output_text": self.final_text,
            "output_json": output_json,
            "output_tools": [{"id": c.call_id, "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments}}
                             for c in last_calls],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.final_text}}],
            "output_reasoning_summary": None,
            "trajectory": {"messages": self.messages,
                           "tool_calls": [asdict(c) for c in self.tool_calls],
                           "status": self.status},
        }

    def to_record(self) -> dict[str, Any]:
        """One line of rollouts.jsonl."""
        return {
            "trace_id": self.trace_id, "row_index": self.row_index, "status": self.status,
            "discard_reason": self.discard_reason, "reward": self.reward,
            "shaped_reward": self.shaped_reward, "grader": self.grader_result,
            "final_text": self.final_text, "turns": self.turns,
            "messages": self.messages, "tool_calls": [asdict(c) for c in self.tool_calls],
            "prompt_tokens": self.prompt_len, "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens, "total_tokens": len(self.token_ids),
            "timing": self.timing,
        }
