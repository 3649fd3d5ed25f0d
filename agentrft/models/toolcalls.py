"""Find tool calls in generated text.

Format (our fallback for chat templates without tool support, and what Hermes/Qwen-style
templates use natively):

    <tool_call>{"name": "search", "arguments": {"query": "ACME 2023 revenue"}}</tool_call>

Several blocks in one turn are parallel calls. A block that is not valid JSON, lacks a name,
names an unknown tool or has non-object arguments becomes a `CallProblem`; the agent loop
shows its `message` to the model as the tool's output, so the model can learn the format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.DOTALL)


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(frozen=True)
class CallProblem:
    raw: str
    message: str  # shown to the model


@dataclass(frozen=True)
class ParsedTurn:
    content: str  # the text with the tool-call blocks removed
    calls: list[ParsedCall]
    problems: list[CallProblem]

    @property
    def attempted(self) -> int:
        return len(self.calls) + len(self.problems)


def _parse_block(raw: str, known: set[str] | None) -> ParsedCall | CallProblem:
    try:
        data = json.loads(raw.strip())
    except json.JSONDecodeError as e:
        return CallProblem(raw, f"Error: the tool call is not valid JSON ({e.msg}). "
                                f'Write {OPEN}{{"name": "...", "arguments": {{...}}}}{CLOSE}')
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return CallProblem(raw, 'Error: a tool call needs a JSON object with a string "name".')
    name = data["name"]
    if known is not None and name not in known:
        return CallProblem(raw, f"Error: unknown tool {name!r}. Available tools: "
                                f"{', '.join(sorted(known)) or 'none'}.")
    args = data.get("arguments", {})
    if isinstance(args, str):  # OpenAI-style arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return CallProblem(raw, f"Error: arguments of {name!r} are not valid JSON.")
    if not isinstance(args, dict):
        return CallProblem(raw, f'Error: "arguments" of {name!r} must be a JSON object.')
    return ParsedCall(name, args)


def parse_tool_calls(text: str, known_tools: set[str] | None = None) -> ParsedTurn:
    calls: list[ParsedCall] = []
    problems: list[CallProblem] = []
    for match in _BLOCK.finditer(text):
        parsed = _parse_block(match.group(1), known_tools)
        (calls if isinstance(parsed, ParsedCall) else problems).append(parsed)
    content = _BLOCK.sub("", text)
    if OPEN in content:  # an unclosed block: cut off mid-call or never closed
        head, _, tail = content.partition(OPEN)
        problems.append(CallProblem(OPEN + tail, f"Error: {OPEN} was opened but never closed "
                                                 f"with {CLOSE}."))
        content = head
    return ParsedTurn(content=content.strip(), calls=calls, problems=problems)


def format_call(name: str, arguments: dict[str, Any] | str) -> str:
    """The text form of one call, as the fallback format expects it."""
    if isinstance(arguments, str):
        arguments = json.loads(arguments) if arguments.strip() else {}
    return f"{OPEN}{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}{CLOSE}"
