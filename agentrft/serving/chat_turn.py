"""One assistant turn as both `/v1/chat/completions` and `/v1/responses` run it: the request's
messages and tools → prompt ids (+ a forced reply head) → sampled ids → a parsed reply.

    messages, tools, tool_choice ──► ChatTurn(prompt, known tools, prefix, max_calls, params)
    sampled token ids ──► Reply(content, calls, finish_reason, reasoning)

`tool_choice` without constrained decoding: `none` offers no tools; `auto` offers them all;
`required` writes the reply's head `<tool_call>` into the prompt, so the model continues a
call; a named function writes `<tool_call>{"name": "NAME", "arguments":` (our call format,
the one `format_call` renders demonstrations in). The forced head is part of the prompt
(never a sampled token) and is put back in front of the sampled text before parsing.
`allowed_tools` (Responses) narrows the tools offered. `parallel_tool_calls: false` keeps
the first call of a turn that wrote several.

Thinking: where the chat template has a thinking mode, `thinking=False` renders it off
(`enable_thinking=False`) and a reply's `<think>…</think>` head is reasoning, counted as
reasoning tokens and kept out of the content.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from agentrft.engines.base import SamplingParams
from agentrft.models.toolcalls import OPEN, ParsedCall, parse_tool_calls
from agentrft.web.errors import APIError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class ToolChoice:
    """What a request's tool_choice asks, in one shape for both APIs."""

    mode: str = "auto"  # auto | none | required | function
    function: str | None = None  # mode == "function": the one tool to call
    allowed: tuple[str, ...] | None = None  # allowed_tools: offer only these


@dataclass(frozen=True)
class ChatTurn:
    adapter: str | None
    prompt: list[int]  # the rendered conversation and the forced head's ids
    known: frozenset[str]  # names of the tools offered
    params: SamplingParams
    prefix: str = ""  # the reply's forced head (text), see the module docstring
    max_calls: int | None = None  # 1 when parallel_tool_calls is false


@dataclass
class Reply:
    content: str | None
    calls: list[ParsedCall] = field(default_factory=list)
    finish_reason: str = "stop"  # stop | length | tool_calls
    reasoning: str | None = None  # the thinking block's text, when the template has one
    reasoning_tokens: int = 0


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def select_tools(tools: list[dict[str, Any]], choice: ToolChoice, *, param: str
                 ) -> tuple[list[dict[str, Any]], str]:
    """(the tools to render, the reply's forced head) for tools in chat shape
    (`{"type": "function", "function": {"name", ...}}`). Raises a 400 naming `param` when the
    choice names a tool the request does not declare."""
    names = [t["function"]["name"] for t in tools]
    if choice.mode == "none":
        return [], ""
    offered = tools
    if choice.allowed is not None:
        unknown = [n for n in choice.allowed if n not in names]
        if unknown:
            raise APIError(400, f"tool_choice allows {unknown[0]!r}, which is not among the "
                                f"request's tools ({', '.join(names) or 'none'})", param=param)
        offered = [t for t in tools if t["function"]["name"] in choice.allowed]
    if choice.mode == "required":
        if not offered:
            raise APIError(400, "tool_choice 'required' needs at least one tool", param=param)
        return offered, OPEN
    if choice.mode == "function":
        if choice.function not in names:
            raise APIError(400, f"tool_choice names the function {choice.function!r}, which is "
                                f"not among the request's tools ({', '.join(names) or 'none'})",
                           param=param)
        return offered, OPEN + '{"name": "' + choice.function + '", "arguments":'
    return offered, ""


def parse_reply(text: str, turn: ChatTurn, finish_reason: str, *,
                think_ids: tuple[int, int] | None = None, token_ids: list[int] = ()) -> Reply:
    """The reply in `text` (the sampled text, special tokens skipped), with the forced head
    put back in front. `think_ids`: the (open, close) ids of a thinking template, to count
    the reasoning tokens in `token_ids`."""
    text = turn.prefix + text
    reasoning, tokens = None, 0
    if think_ids is not None and THINK_CLOSE in text:
        head, _, text = text.partition(THINK_CLOSE)
        reasoning = head.replace(THINK_OPEN, "", 1).strip()
        close = think_ids[1]
        tokens = token_ids.index(close) + 1 if close in token_ids else 0
        text = text.lstrip()
    if turn.known:
        parsed = parse_tool_calls(text, set(turn.known))
        if parsed.calls:
            calls = parsed.calls[:turn.max_calls] if turn.max_calls else parsed.calls
            return Reply(parsed.content or None, calls, "tool_calls", reasoning, tokens)
    return Reply(text, [], finish_reason, reasoning, tokens)
