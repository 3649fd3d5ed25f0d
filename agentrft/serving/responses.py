"""`POST /v1/responses`: OpenAI's Responses API over the chat completions path.

    ResponsesRequest ──to_chat()──► ChatRequest ──Serving.chat_turn()──► ChatTurn
         input items → messages         (render, forced head, params: chat's own code)
         flat function tools → chat tools
    host.generate / Serving._row_steps (the same sampling as chat) ──► token ids
    Serving.reply() (the same tool-call parsing) ──► Reply ──► output items:
         [reasoning] [message: output_text] [function_call …]

Input items: a string (one user message) or a list of `message` items (role + a string or
`input_text`/`output_text` parts), `function_call` items (consecutive ones, and one right
after an assistant message, make one assistant turn with several tool calls, as the chat
path renders it) and `function_call_output` items (tool messages); `reasoning` items that
clients echo back are accepted and skipped. `instructions` is a system message first.

The server keeps no state: `store: true`, `previous_response_id`, `conversation` and
`item_reference` are 400s; the client sends the whole conversation each time (`store:
false`, as the Agent RFT notebook does). `text.format` `json_object` / `json_schema` (and
strict function tools) are decoded under a grammar (`agentrft.models.structured`).
`include: ["message.output_text.logprobs"]` / `top_logprobs`: per-token log-probs of a text
reply (not streamed). `reasoning.effort` where the chat template has a thinking mode: `none`/`minimal` render thinking off, `low`/`medium`/`high`/`xhigh` give it a
budget of thinking tokens (`THINK_BUDGET`, at most half of `max_output_tokens`): past it
`</think>` is written for the model and the answer follows; `max` leaves it unbounded.
Without a thinking mode it has no effect. The `agentrft-reasoning-effort` header says which.
Streaming sends the events the SDK parses, each with `sequence_number` (streamed replies
get no thinking budget and their `<think>` block is not split out yet).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import replace
from typing import Any, Iterator, Literal

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from agentrft.engines.base import Completion
from agentrft.web.encoding import SafeJSONResponse
from agentrft.web.errors import APIError
from agentrft.serving.chat_turn import ChatTurn, Reply, ToolChoice, call_id
from agentrft.serving.protocol import ChatRequest
from agentrft.serving.stream import StreamedRows, unsent

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
REASONING_HEADER = "agentrft-reasoning-effort"
_PARAMS = {"messages": "input", "max_tokens": "max_output_tokens"}  # chat's names → ours


def _param(chat_param: str | None) -> str | None:
    """A chat request's field name as the Responses API calls it."""
    if chat_param and chat_param.startswith("response_format"):
        return "text.format" + chat_param[len("response_format"):]
    return _PARAMS.get(chat_param, chat_param)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Reasoning(_Body):
    effort: Literal[EFFORTS] | None = None  # type: ignore[valid-type]
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None  # deprecated name


class TextConfig(_Body):
    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class StreamOptions(_Body):
    include_obfuscation: bool | None = None


class ResponsesRequest(_Body):
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None  # ours (chat's field): repeatable sampling above temperature 0
    text: TextConfig | None = None
    store: bool | None = None
    include: list[str] | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    background: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)  # OpenAI's: built-in tools only
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# --- request → chat ----------------------------------------------------------------------

def _text_of(content: Any, param: str) -> str:
    """A message's or tool output's content: a string, or text parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise APIError(400, "content must be a string or a list of content parts", param=param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        key = "refusal" if kind == "refusal" else "text"
        if kind not in ("input_text", "output_text", "text", "refusal") or \
                not isinstance(part.get(key), str):
            raise APIError(400, f"content part of type {kind!r} is not supported: this server "
                                f"takes input_text and output_text parts",
                           param=f"{param}[{j}]")
        texts.append(part[key])
    return "".join(texts)


def input_messages(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The conversation of `input` (and `instructions`) as chat messages."""
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    items = [{"type": "message", "role": "user", "content": req.input}] \
        if isinstance(req.input, str) else req.input
    if not items:
        raise APIError(400, "input is empty", param="input")
    open_turn: dict[str, Any] | None = None  # the assistant turn function calls join
    calls: set[str] = set()
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise APIError(400, "an input item must be an object", param=where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise APIError(400, "role must be one of assistant, developer, system, user",
                               param=f"{where}.role")
            message = {"role": role, "content": _text_of(item.get("content"), f"{where}.content")}
            messages.append(message)
            open_turn = message if role == "assistant" else None
        elif kind == "function_call":
            name, args, cid = item.get("name"), item.get("arguments"), item.get("call_id")
            for key, value in (("name", name), ("arguments", args), ("call_id", cid)):
                if not isinstance(value, str):
                    raise APIError(400, f"a function_call item needs a string {key}",
                                   param=f"{where}.{key}")
            if open_turn is None:
                open_turn = {"role": "assistant", "content": ""}
                messages.append(open_turn)
            open_turn.setdefault("tool_calls", []).append(
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}})
            calls.add(cid)
        elif kind == "function_call_output":
            cid = item.get("call_id")
            if not isinstance(cid, str):
                raise APIError(400, "a function_call_output item needs a string call_id",
                               param=f"{where}.call_id")
            if cid not in calls:
                raise APIError(400, f"no function_call item with call_id {cid!r} comes before "
                                    f"this output", param=f"{where}.call_id")
            messages.append({"role": "tool", "tool_call_id": cid,
                             "content": _text_of(item.get("output"), f"{where}.output")})
            open_turn = None
        elif kind == "reasoning":
            continue  # echoed back by clients (store: false); the template has no slot for it
        elif kind == "item_reference":
            raise APIError(400, "item_reference needs stored responses; this server keeps no "
                                "state: send the items themselves", param=f"{where}.type")
        else:
            raise APIError(400, f"input items of type {kind!r} are not supported (message, "
                                f"function_call, function_call_output, reasoning)",
                           param=f"{where}.type")
    if not any(m["role"] != "system" for m in messages):
        raise APIError(400, "input holds no message", param="input")
    return messages


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Flat Responses function tools as chat tools (`{"type", "function": {...}}`)."""
    out = []
    for i, t in enumerate(tools or []):
        if not isinstance(t, dict) or t.get("type") != "function":
            kind = t.get("type") if isinstance(t, dict) else None
            raise APIError(400, f"only function tools are supported (got {kind!r})",
                           param=f"tools[{i}].type")
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise APIError(400, "a function tool needs a name", param=f"tools[{i}].name")
        out.append({"type": "function", "function": {
            k: t[k] for k in ("name", "description", "parameters", "strict") if t.get(k) is not None}})
    return out


def tool_choice(value: str | dict[str, Any] | None) -> ToolChoice:
    if value is None or value in ("auto", "none", "required"):
        return ToolChoice(mode=value or "auto")
    bad = APIError(400, 'tool_choice must be "auto", "none", "required", {"type": "function", '
                        '"name": ...} or {"type": "allowed_tools", "mode": ..., "tools": [...]}',
                   param="tool_choice")
    if not isinstance(value, dict):
        raise bad
    if value.get("type") == "function" and isinstance(value.get("name"), str):
        return ToolChoice(mode="function", function=value["name"])
    if value.get("type") == "allowed_tools" and value.get("mode") in ("auto", "required") \
            and isinstance(value.get("tools"), list):
        names = [t.get("name") for t in value["tools"] if isinstance(t, dict)]
        if len(names) != len(value["tools"]) or not all(isinstance(n, str) for n in names):
            raise bad
        return ToolChoice(mode=value["mode"], allowed=tuple(names))
    raise bad


def check_supported(req: ResponsesRequest) -> None:
    """400s for what this server does not do: kept state, background runs, streamed log-probs."""
    if req.store:
        raise APIError(400, "store: true is not supported: this server keeps no responses; "
                            "send store: false and the whole conversation as input", param="store")
    if req.previous_response_id:
        raise APIError(400, "previous_response_id is not supported: this server keeps no "
                            "responses; send the whole conversation as input",
                       param="previous_response_id")
    if req.conversation:
        raise APIError(400, "conversations are not supported: this server keeps no state",
                       param="conversation")
    if req.background:
        raise APIError(400, "background responses are not supported", param="background")
    if req.stream and (req.top_logprobs or LOGPROBS in (req.include or [])):
        raise APIError(400, "log-probs are not streamed by /v1/responses here; send stream: "
                            "false, or use /v1/chat/completions", param="include")


def thinking(req: ResponsesRequest, has_thinking: bool) -> tuple[dict[str, Any], str | None]:
    """(chat template variables, the note for the reasoning header) for `reasoning.effort`."""
    effort = req.reasoning.effort if req.reasoning else None
    if effort is None:
        return {}, None
    if not has_thinking:
        return {}, f"{effort}: no effect (the chat template has no thinking mode)"
    if effort in ("none", "minimal"):
        return {"enable_thinking": False}, f"{effort}: thinking off"
    budget = think_budget(req)
    return {"enable_thinking": True}, f"{effort}: thinking on, " + (
        f"at most {budget} thinking tokens" if budget else "no token budget") + (
        " (not applied to streamed replies)" if req.stream and budget else "")


THINK_BUDGET = {"low": 256, "medium": 1024, "high": 4096, "xhigh": 16384}


def think_budget(req: ResponsesRequest) -> int | None:
    """Thinking tokens allowed before `</think>` is forced (None: unbounded)."""
    effort = req.reasoning.effort if req.reasoning else None
    budget = THINK_BUDGET.get(effort or "")
    if budget is not None and req.max_output_tokens:
        budget = max(1, min(budget, req.max_output_tokens // 2))  # room left for the answer
    return budget


def generate_with_budget(serving, turn: ChatTurn, seed: int | None, budget: int | None,
                         think_ids: tuple[int, int] | None) -> tuple[list[int], str]:
    """(reply token ids, finish reason). With a budget: sample the thinking up to `budget`
    tokens (or its own `</think>`), write `</think>` if the model did not, then sample the
    answer after it in a second call of the same generation, within `max_output_tokens`."""
    ids, finish, _ = sample_reply(serving, turn, seed, budget, think_ids)
    return ids, finish


def sample_reply(serving, turn: ChatTurn, seed: int | None, budget: int | None,
                 think_ids: tuple[int, int] | None) -> tuple[list[int], str, list[float] | None]:
    """`generate_with_budget` plus the sampled tokens' log-probs (None when part of the reply
    was written for the model: a forced `</think>`)."""
    host, params = serving.host, turn.params
    if budget is None or think_ids is None:
        (c,) = host.generate([turn.prompt], params, adapter=turn.adapter, seed=seed)
        return c.token_ids, c.finish_reason, c.logprobs
    close = think_ids[1]
    first = replace(params, max_new_tokens=min(budget, params.max_new_tokens),
                    stop_token_ids=tuple(sorted({*params.stop_token_ids, close})))
    (c,) = host.generate([turn.prompt], first, adapter=turn.adapter, seed=seed)
    head = list(c.token_ids)
    if head and head[-1] in params.stop_token_ids:
        return head, "stop", c.logprobs  # the turn ended inside the thinking
    logprobs = list(c.logprobs)
    if not head or head[-1] != close:
        head += [close] + serving.tok.encode("\n\n", add_special_tokens=False)
        logprobs = None
    room = params.max_new_tokens - len(head)
    if room < 1:
        return head, "length", logprobs
    (rest,) = host.generate([turn.prompt + head], replace(params, max_new_tokens=room),
                            adapter=turn.adapter, seed=seed)
    return head + rest.token_ids, rest.finish_reason, \
        None if logprobs is None else logprobs + rest.logprobs


def to_chat(req: ResponsesRequest, template_kwargs: dict[str, Any]) -> ChatRequest:
    return ChatRequest(
        model=req.model, messages=input_messages(req), tools=chat_tools(req.tools) or None,
        parallel_tool_calls=req.parallel_tool_calls, max_completion_tokens=req.max_output_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p, seed=req.seed,
        chat_template_kwargs=template_kwargs or None,
        response_format=req.text.format if req.text else None)


# --- reply → response --------------------------------------------------------------------

def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [text_part(text)]}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, name: str, arguments: str, status: str, cid: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": cid,
            "name": name, "arguments": arguments}


def reasoning_item(text: str) -> dict[str, Any]:
    return {"id": _new_id("rs"), "type": "reasoning", "status": "completed", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}], "encrypted_content": None}


def output_items(reply: Reply, incomplete: bool) -> list[dict[str, Any]]:
    out = [reasoning_item(reply.reasoning)] if reply.reasoning is not None else []
    if reply.content or not reply.calls:
        out.append(message_item(_new_id("msg"), reply.content or "",
                                "incomplete" if incomplete else "completed"))
    out += [call_item(_new_id("fc"), c.name, c.arguments_json, "completed", call_id())
            for c in reply.calls]
    return out


def usage(turn: ChatTurn, output_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    return {"input_tokens": len(turn.prompt), "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": len(turn.prompt) + output_tokens}


class ResponseShell:
    """The response object's fields that echo the request, and its id and time."""

    def __init__(self, req: ResponsesRequest):
        self.req = req
        self.id = _new_id("resp")
        self.created_at = int(time.time())

    def body(self, *, status: str, output: list[dict[str, Any]],
             usage: dict[str, Any] | None) -> dict[str, Any]:
        req = self.req
        tools = [{"type": "function", "name": t["name"], "description": t.get("description"),
                  "parameters": t.get("parameters"), "strict": t.get("strict", True)}
                 for t in req.tools or []]
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "model": req.model, "output": output,
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": None,
            "reasoning": {"effort": req.reasoning.effort if req.reasoning else None,
                          "summary": None},
            "store": False,
            "temperature": 1.0 if req.temperature is None else req.temperature,
            "top_p": 1.0 if req.top_p is None else req.top_p,
            "text": {"format": (req.text.format if req.text else None) or {"type": "text"}},
            "tool_choice": req.tool_choice or "auto", "tools": tools,
            "truncation": "disabled", "usage": usage, "user": req.user,
            "metadata": req.metadata or {},
        }


# --- the endpoint ------------------------------------------------------------------------

async def create_response(serving, req: ResponsesRequest):
    """`serving`: the `Serving` of `agentrft.serving.app` whose model answers."""
    check_supported(req)
    choice = tool_choice(req.tool_choice)
    template_kwargs, note = thinking(req, serving.host.renderer.has_thinking)
    try:
        turn = serving.chat_turn(to_chat(req, template_kwargs), choice=choice, param="input")
    except APIError as e:
        e.param = _param(e.param)
        raise
    headers = {REASONING_HEADER: note} if note else None
    shell = ResponseShell(req)
    if req.stream:
        return StreamingResponse(_stream(serving, req, turn, shell), headers=headers,
                                 media_type="text/event-stream")
    budget = think_budget(req) if template_kwargs.get("enable_thinking") else None
    if turn.params.constraint is not None:  # the grammar has no thinking block to budget
        budget = None
    ids, finish, logprobs = await run_in_threadpool(sample_reply, serving, turn, req.seed, budget,
                                                    serving.think_ids())
    reply = serving.reply(turn, ids, finish)
    incomplete = reply.finish_reason == "length"
    output = output_items(reply, incomplete)
    if LOGPROBS in (req.include or []) or req.top_logprobs:
        entries = await run_in_threadpool(text_logprobs, serving, req, turn, reply, ids, logprobs)
        for item in output:
            if item["type"] == "message":
                item["content"][0]["logprobs"] = entries
    return SafeJSONResponse(shell.body(
        status="incomplete" if incomplete else "completed", output=output,
        usage=usage(turn, len(ids), reply.reasoning_tokens)), headers=headers)


LOGPROBS = "message.output_text.logprobs"


def text_logprobs(serving, req: ResponsesRequest, turn: ChatTurn, reply: Reply, ids: list[int],
                  logprobs: list[float] | None) -> list[dict[str, Any]]:
    """`include: ["message.output_text.logprobs"]`: each sampled token of the output text with
    its log-prob (of the distribution sampled from: a grammar's mask included) and its
    `top_logprobs` alternatives (of the unmasked model). Only where the text is all the
    reply's tokens: a reply with a thinking block, tool calls or a forced head gets []."""
    if logprobs is None or reply.calls or reply.reasoning is not None or turn.prefix:
        return []
    n = len(ids) - (1 if ids and ids[-1] in turn.params.stop_token_ids else 0)
    ids, logprobs = ids[:n], logprobs[:n]
    temperature = 1.0 if req.temperature is None else req.temperature
    top = serving._top(turn.prompt, Completion(ids, logprobs, "stop"), temperature,
                       req.top_logprobs or 0, turn.adapter)
    return serving._logprobs_content(ids, logprobs, top, False)


def _stream(serving, req: ResponsesRequest, turn: ChatTurn, shell: ResponseShell) -> Iterator[str]:
    """The SSE events of one response, in the order the Responses API sends them: text
    deltas as they are sampled (nothing from `<tool_call>` on), then each call whole."""
    seq = itertools.count()

    def event(kind: str, **fields: Any) -> str:
        data = {"type": kind, "sequence_number": next(seq), **fields}
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    start = shell.body(status="in_progress", output=[], usage=None)
    yield event("response.created", response=start)
    yield event("response.in_progress", response=start)
    output: list[dict[str, Any]] = []
    msg_id = _new_id("msg")

    def open_message() -> Iterator[str]:
        output.append(message_item(msg_id, "", "in_progress"))
        output[-1]["content"] = []
        yield event("response.output_item.added", output_index=len(output) - 1, item=output[-1])
        yield event("response.content_part.added", item_id=msg_id, output_index=len(output) - 1,
                    content_index=0, part=text_part(""))

    def delta(text: str) -> str:
        return event("response.output_text.delta", item_id=msg_id, output_index=len(output) - 1,
                     content_index=0, delta=text, logprobs=[])

    rows = StreamedRows(1)
    for step in serving._row_steps(rows, turn.prompt, turn.params, turn.adapter, req.seed, 0,
                                   True, hide_tool_calls=bool(turn.known), prefix=turn.prefix):
        for _, _, _, _, text in step:
            if text:
                if not output:
                    yield from open_message()
                yield delta(text)
    finish = "stop" if rows.stopped[0] else "length"
    reply = serving.reply(turn, rows.ids[0], finish)
    incomplete = reply.finish_reason == "length"
    if output or reply.content or not reply.calls:
        if not output:
            yield from open_message()
        text = reply.content or ""
        rest = unsent(text, rows.sent[0])
        if rest:
            yield delta(rest)
        index = len(output) - 1
        yield event("response.output_text.done", item_id=msg_id, output_index=index,
                    content_index=0, text=text, logprobs=[])
        yield event("response.content_part.done", item_id=msg_id, output_index=index,
                    content_index=0, part=text_part(text))
        output[index] = message_item(msg_id, text, "incomplete" if incomplete else "completed")
        yield event("response.output_item.done", output_index=index, item=output[index])
    for c in reply.calls:
        item = call_item(_new_id("fc"), c.name, "", "in_progress", call_id())
        output.append(item)
        index = len(output) - 1
        yield event("response.output_item.added", output_index=index, item=dict(item))
        yield event("response.function_call_arguments.delta", item_id=item["id"],
                    output_index=index, delta=c.arguments_json)
        yield event("response.function_call_arguments.done", item_id=item["id"],
                    output_index=index, name=c.name, arguments=c.arguments_json)
        item.update(arguments=c.arguments_json, status="completed")
        yield event("response.output_item.done", output_index=index, item=item)
    status = "incomplete" if incomplete else "completed"
    body = shell.body(status=status, output=output,
                      usage=usage(turn, len(rows.ids[0]), reply.reasoning_tokens))
    yield event(f"response.{status}", response=body)
