"""Structured output: what a reply may be, as a grammar for constrained decoding.

    response_format / text.format ──read_format──► OutputFormat(text | json_object | json_schema)
    OutputFormat + offered tools + tool choice ──reply_grammar──► lark text (or None: free text)
        start: answer | calls              tools offered, tool_choice auto
        start: calls                       tool_choice required (call_NAME: a named function)
        start: answer                      no tools, or tool_choice none
        answer: %json {schema}             json_schema; json_object: any object; text: any
                                           text without <tool_call>
        call_NAME: "<tool_call>" %json {"name": NAME, "arguments": <the tool's parameters
                                           when strict, else any object>} "</tool_call>"

The call format is `agentrft.models.toolcalls`' (what `format_call` renders and
`parse_tool_calls` reads), with the separators `json.dumps` writes by default (`", "`,
`": "`), as the demonstrations in prompts are written; no other whitespace is allowed inside
JSON, so a weak model cannot wander into endless blank space. A grammar is needed only for a
JSON format or a strict tool: otherwise this returns None and the reply is free text, as before.

`agentrft.engines.constrained` compiles the text and masks the engine's logits with it.
Not covered: a thinking block (`<think>…</think>`) ahead of a constrained reply.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Literal

from agentrft.errors import AgentRFTError
from agentrft.models.toolcalls import CLOSE, OPEN

# llguidance's JSON options: compact JSON with json.dumps' default separators.
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class FormatError(AgentRFTError):
    """A response_format (or text.format) that cannot be honoured; `param` names the field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class OutputFormat:
    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None  # json_schema only
    name: str | None = None
    strict: bool = False

    @property
    def is_json(self) -> bool:
        return self.kind != "text"


TEXT = OutputFormat()


def read_format(value: dict[str, Any] | None, *, param: str) -> OutputFormat:
    """Chat completions' `response_format` (`{"type": "json_schema", "json_schema": {name,
    schema, strict}}`) or the Responses API's `text.format` (`{"type": "json_schema", name,
    schema, strict}`), checked. Raises `FormatError` naming the field."""
    if value is None:
        return TEXT
    if not isinstance(value, dict):
        raise FormatError("must be an object with a type", param)
    kind = value.get("type")
    if kind == "text":
        return TEXT
    if kind == "json_object":
        return OutputFormat("json_object")
    if kind != "json_schema":
        raise FormatError(f"type {kind!r} is not supported; use text, json_object or "
                          f"json_schema", f"{param}.type")
    spec, where = value, param
    if "json_schema" in value:  # chat completions nest it
        spec, where = value["json_schema"], f"{param}.json_schema"
        if not isinstance(spec, dict):
            raise FormatError("must be an object with name and schema", where)
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise FormatError("a json_schema format needs a schema (a JSON Schema object)",
                          f"{where}.schema")
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise FormatError("must be a string", f"{where}.name")
    return OutputFormat("json_schema", schema, name, bool(spec.get("strict")))


def answer_schema(fmt: OutputFormat) -> dict[str, Any]:
    return fmt.schema if fmt.kind == "json_schema" else {"type": "object"}


def _json_rule(schema: dict[str, Any], *, strict: bool) -> str:
    """`%json {...}` for one schema: our JSON style; a non-strict schema may use keywords the
    engine does not support (they are then not enforced), a strict one may not."""
    styled = {**schema, "x-guidance": {**_JSON_STYLE, "lenient": not strict}}
    return "%json " + json.dumps(styled, ensure_ascii=False)


def _call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool["function"]
    params = fn.get("parameters") if fn.get("strict") else None
    params = copy.deepcopy(params) if isinstance(params, dict) else {"type": "object"}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"const": fn["name"]}, "arguments": params},
        "required": ["name", "arguments"], "additionalProperties": False}
    for key in ("$defs", "definitions"):  # "#/$defs/x" refs resolve against the root
        if key in params:
            schema[key] = params.pop(key)
    return schema


def needs_grammar(fmt: OutputFormat, tools: list[dict[str, Any]]) -> bool:
    return fmt.is_json or any(t["function"].get("strict") for t in tools)


def reply_grammar(fmt: OutputFormat, tools: list[dict[str, Any]], *, mode: str = "auto",
                  function: str | None = None, parallel: bool = True) -> str | None:
    """The grammar of one assistant reply (lark, llguidance's dialect), or None when nothing
    needs constraining. `tools`: the offered tools in chat shape; `mode`: auto | none |
    required | function (then `function` names it); `parallel`: several calls in one reply."""
    if mode == "none":
        tools = []
    if not needs_grammar(fmt, tools):
        return None
    lines = []
    if fmt.is_json:
        lines.append("answer: " + _json_rule(answer_schema(fmt), strict=fmt.strict))
    else:  # free text that does not start a call (a call must follow its schema)
        lines.append(f"answer: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*){_lark_regex(OPEN)}(?s:.*)/")
    if tools:
        names = []
        for k, tool in enumerate(tools):
            fn = tool["function"]
            if mode == "function" and fn["name"] != function:
                continue
            names.append(f"call_{k}")
            lines.append(f"call_{k}: {json.dumps(OPEN)} "
                         f"{_json_rule(_call_schema(tool), strict=bool(fn.get('strict')))} "
                         f"{json.dumps(CLOSE)}")
        lines.append("call: " + " | ".join(names))
        lines.append('calls: call ("\\n"? call)*' if parallel and mode != "function" else
                     "calls: call")
    start = {"auto": "answer | calls" if tools else "answer", "none": "answer",
             "required": "calls", "function": "calls"}[mode]
    return "\n".join([f"start: {start}", *lines]) + "\n"


def _lark_regex(text: str) -> str:
    return "".join("\\" + c if c in r"\/.*+?()[]{}|^$" else c for c in text)


def parse_json_answer(text: str) -> Any | None:
    """The JSON value of a constrained answer, or None when it is not JSON (cut off by the
    token budget)."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None
