"""`agentrft serve`: OpenAI's inference API over one model (a trained checkpoint, a local
directory or the bundled model), plus vLLM's run-time LoRA endpoints. `agentrft server`
mounts the same inference routes over a pool of models (`inference_routes`, `pool.py`).

    POST /v1/chat/completions     messages, tools → content or tool_calls; stream; logprobs
    POST /v1/responses            OpenAI's Responses API over the same chat path (responses.py)
    POST /v1/completions          prompt as text or token ids (a batch of them); stream; logprobs
    GET  /v1/models, /v1/models/{id}
    POST /v1/load_lora_adapter    {"lora_name", "lora_path"}  (vLLM's body and plain-text answer)
    POST /v1/unload_lora_adapter  {"lora_name"}
    POST /v1/embeddings           OpenAI's embeddings (see embeddings.py)
    GET  /health

Tool calls: the tools of a request are rendered as the chat template allows (natively, or
the fallback in the system message, see `ChatRenderer`), and `<tool_call>` blocks in the
sampled text come back as OpenAI `tool_calls` with `finish_reason: "tool_calls"`. Token ids
and log-probs on request, with vLLM's names (see `protocol.py`). Errors are OpenAI's shape:
a bad body is a 400 naming the field, an unknown model a 404.

    app = create_app(ModelHost.load("runs/x/checkpoints/step_000003"), api_keys=[])
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from typing import Any, Awaitable, Callable, Iterator

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from agentrft import __version__
from agentrft.engines.base import Completion, SamplingParams
from agentrft.engines.constrained import Constraint, GrammarError
from agentrft.models.structured import FormatError, read_format, reply_grammar
from agentrft.web.encoding import SafeJSONResponse, StrictJSONRoute
from agentrft.web.errors import APIError, CatchAllMiddleware, install_error_handlers
from agentrft.web.middleware import GuardMiddleware
from agentrft.serving.embeddings import EmbeddingModels, embeddings_router
from agentrft.serving.chat_turn import (THINK_CLOSE, THINK_OPEN, ChatTurn, Reply, ToolChoice,
                                        call_id, parse_reply, select_tools)
from agentrft.serving.host import AdapterError, ModelHost, UnknownModel
from agentrft.serving.protocol import (ChatRequest, CompletionRequest, LoadAdapterRequest,
                                       UnloadAdapterRequest)
from agentrft.serving.responses import ResponsesRequest, create_response
from agentrft.serving.stream import StreamedRows, unsent, visible

MAX_BODY_BYTES = 16 * 2**20
MAX_CACHED_GRAMMARS = 64
DEFAULT_CHAT_TOKENS = 512


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class Serving:
    """The request handling behind the routes, over one `ModelHost`."""

    def __init__(self, host: ModelHost, *, adapter_of: Callable[[str], str | None] | None = None):
        """`adapter_of`: a request's model name → the adapter it selects (None: the host's own
        weights), for a pool that names models its own way (`pool.py`); by default the
        host's names (`ModelHost.check_model`)."""
        self.host = host
        self.adapter_of = adapter_of
        self.tok = host.tokenizer
        self.vocab = len(host.tokenizer)
        self.created = int(time.time())
        self._constraints: dict[tuple[str, tuple[int, ...]], Constraint] = {}

    # --- shared pieces -----------------------------------------------------------------------

    def _adapter(self, model: str) -> str | None:
        if self.adapter_of is not None:
            return self.adapter_of(model)
        try:
            return self.host.check_model(model)
        except UnknownModel as e:
            raise APIError(404, str(e), param="model", code="model_not_found") from None

    def _params(self, req, prompt_len: int, max_tokens: int | None, default: int) -> SamplingParams:
        room = self.host.max_context - prompt_len
        if room < 1:
            raise APIError(400, f"the prompt is {prompt_len} tokens; this model's context is "
                                f"{self.host.max_context}", param="messages", code="context_length_exceeded")
        if max_tokens is not None and max_tokens > room:
            raise APIError(400, f"max_tokens {max_tokens} + the prompt's {prompt_len} tokens exceed "
                                f"this model's context of {self.host.max_context}",
                           param="max_tokens", code="context_length_exceeded")
        stop = set(self.host.renderer.stop_token_ids) | set(req.stop_token_ids)
        return SamplingParams(temperature=req.temperature, top_p=req.top_p,
                              max_new_tokens=max_tokens or min(default, room),
                              stop_token_ids=tuple(sorted(stop)))

    def _token_str(self, token_id: int, as_ids: bool) -> str:
        return f"token_id:{token_id}" if as_ids else self.tok.decode([token_id])

    def _text(self, ids: list[int], skip_special: bool) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special)

    def _top(self, prompt: list[int], c: Completion, temperature: float, k: int,
             adapter: str | None) -> list[list[tuple[int, float]]]:
        if not k:
            return [[] for _ in c.token_ids]
        return self.host.top_logprobs(prompt, c.token_ids, temperature=temperature, top_k=k,
                                      adapter=adapter)

    # --- chat --------------------------------------------------------------------------------

    def chat_turn(self, req: ChatRequest, *, choice: ToolChoice | None = None,
                  param: str = "messages") -> ChatTurn:
        """The request rendered for sampling. `choice`: the tool choice already read (the
        Responses API has its own shape); `param`: the field bad messages are named by."""
        adapter = self._adapter(req.model)
        messages = [_message(m, i) for i, m in enumerate(req.messages)]
        tools = [_tool(t, i) for i, t in enumerate(req.tools or [])]
        choice = choice or _chat_tool_choice(req.tool_choice)
        offered, prefix = select_tools(tools, choice, param="tool_choice")
        grammar = self._reply_grammar(req, offered, choice)
        if grammar is not None:
            prefix = ""  # the grammar forces what the forced head would have
        try:
            prompt = self.host.renderer.prompt_ids(messages, offered,
                                                   **(req.chat_template_kwargs or {}))
        except Exception as e:  # noqa: BLE001 - the template rejected these messages
            raise APIError(400, f"the chat template cannot render these messages: "
                                f"{type(e).__name__}: {e}", param=param) from None
        prompt = prompt + (self.tok.encode(prefix, add_special_tokens=False) if prefix else [])
        params = self._params(req, len(prompt), req.new_tokens, DEFAULT_CHAT_TOKENS)
        if grammar is not None:
            params = replace(params, constraint=self.constraint(grammar, params.stop_token_ids))
        return ChatTurn(adapter, prompt, frozenset(t["function"]["name"] for t in offered),
                        params, prefix, 1 if req.parallel_tool_calls is False else None)

    def _reply_grammar(self, req: ChatRequest, offered: list[dict[str, Any]],
                       choice: ToolChoice) -> str | None:
        try:
            fmt = read_format(req.response_format, param="response_format")
        except FormatError as e:
            raise APIError(400, str(e), param=e.param) from None
        return reply_grammar(fmt, offered, mode=choice.mode, function=choice.function,
                             parallel=req.parallel_tool_calls is not False)

    def constraint(self, grammar: str, stop_token_ids: tuple[int, ...]) -> Constraint:
        """The compiled grammar, cached: the same format and tools compile once."""
        key = (grammar, stop_token_ids)
        if key not in self._constraints:
            try:
                c = Constraint.compile(grammar, self.tok, stop_token_ids,
                                       vocab_size=self.host.vocab_size)
            except GrammarError as e:
                raise APIError(400, f"cannot decode under this schema: {e}",
                               param="response_format") from None
            if len(self._constraints) >= MAX_CACHED_GRAMMARS:
                self._constraints.pop(next(iter(self._constraints)))
            self._constraints[key] = c
        return self._constraints[key]

    def think_ids(self) -> tuple[int, int] | None:
        """The ids of `<think>` and `</think>` where the template has a thinking mode."""
        if not self.host.renderer.has_thinking:
            return None
        ids = [self.tok.convert_tokens_to_ids(t) for t in (THINK_OPEN, THINK_CLOSE)]
        ok = all(isinstance(i, int) and i != self.tok.unk_token_id for i in ids)
        return (ids[0], ids[1]) if ok else None

    def reply(self, turn: ChatTurn, token_ids: list[int], finish_reason: str) -> Reply:
        return parse_reply(self._text(token_ids, True), turn, finish_reason,
                           think_ids=self.think_ids(), token_ids=token_ids)

    def _logprobs_content(self, ids: list[int], logps: list[float], top, as_ids: bool) -> list[dict]:
        out = []
        for t, lp, alts in zip(ids, logps, top):
            entry = self._logprob_entry(t, lp, as_ids)
            entry["top_logprobs"] = [self._logprob_entry(a, v, as_ids) for a, v in alts]
            out.append(entry)
        return out

    def _logprob_entry(self, token_id: int, logprob: float, as_ids: bool) -> dict:
        token = self._token_str(token_id, as_ids)
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    def _message_of(self, turn: ChatTurn, c: Completion, skip_special: bool) -> tuple[dict, str]:
        r = self.reply(turn, c.token_ids, c.finish_reason)
        if r.calls:
            calls = [{"id": call_id(), "type": "function",
                      "function": {"name": p.name, "arguments": p.arguments_json}}
                     for p in r.calls]
            return {"role": "assistant", "content": r.content, "tool_calls": calls}, "tool_calls"
        content = r.content if skip_special else turn.prefix + self._text(c.token_ids, False)
        message = {"role": "assistant", "content": content}
        if r.reasoning is not None:  # a thinking template's <think> block, as vLLM names it
            message["reasoning_content"] = r.reasoning
        return message, r.finish_reason

    async def chat(self, req: ChatRequest):
        turn = self.chat_turn(req)
        adapter, prompt, params = turn.adapter, turn.prompt, turn.params
        top_k = req.top_logprobs or 0 if req.logprobs else 0
        if req.stream:
            return StreamingResponse(self._chat_stream(req, turn, top_k),
                                     media_type="text/event-stream")
        completions = await run_in_threadpool(self.host.generate, [prompt] * req.n, params,
                                              adapter=adapter, seed=req.seed)
        choices = []
        for i, c in enumerate(completions):
            message, finish = self._message_of(turn, c, req.skip_special_tokens)
            choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": finish,
                                      "logprobs": None}
            if req.logprobs:
                top = await run_in_threadpool(self._top, prompt, c, req.temperature, top_k, adapter)
                choice["logprobs"] = {"content": self._logprobs_content(
                    c.token_ids, c.logprobs, top, req.return_tokens_as_token_ids)}
            if req.return_token_ids:
                choice["token_ids"] = c.token_ids
            choices.append(choice)
        body: dict[str, Any] = {
            "id": _id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": req.model, "choices": choices,
            "usage": _usage(len(prompt), sum(len(c.token_ids) for c in completions))}
        if req.return_token_ids:
            body["prompt_token_ids"] = prompt
        return SafeJSONResponse(body)

    def _chat_stream(self, req: ChatRequest, turn: ChatTurn, top_k: int) -> Iterator[str]:
        """Content streams as it is sampled; once a row writes `<tool_call>`, its content
        stops and its calls are sent whole at the end, parsed from the full text."""
        rid, created, n = _id("chatcmpl"), int(time.time()), req.n
        prompt = turn.prompt

        def chunk(choices: list[dict], **extra) -> str:
            return _sse({"id": rid, "object": "chat.completion.chunk", "created": created,
                         "model": req.model, "choices": choices, **extra})

        first: dict[str, Any] = {}
        if req.return_token_ids:
            first["prompt_token_ids"] = prompt
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                      "logprobs": None, "finish_reason": None} for i in range(n)], **first)
        rows = StreamedRows(n)
        for step in self._row_steps(rows, prompt, turn.params, turn.adapter, req.seed, top_k,
                                    req.skip_special_tokens, hide_tool_calls=bool(turn.known),
                                    prefix=turn.prefix):
            out = []
            for b, tok, logp, top, delta in step:
                choice: dict[str, Any] = {"index": b, "delta": {"content": delta} if delta else {},
                                          "logprobs": None, "finish_reason": None}
                if req.logprobs:
                    choice["logprobs"] = {"content": self._logprobs_content(
                        [tok], [logp], [top], req.return_tokens_as_token_ids)}
                if req.return_token_ids:
                    choice["token_ids"] = [tok]
                if delta or req.logprobs or req.return_token_ids:
                    out.append(choice)
            if out:
                yield chunk(out)
        last = []
        for b in range(n):
            c = Completion(token_ids=rows.ids[b], logprobs=[],
                           finish_reason="stop" if rows.stopped[b] else "length")
            message, reason = self._message_of(turn, c, req.skip_special_tokens)
            delta: dict[str, Any] = {}
            if message.get("tool_calls"):
                delta["tool_calls"] = [{"index": j, **call}
                                       for j, call in enumerate(message["tool_calls"])]
            else:
                rest = unsent(message["content"] or "", rows.sent[b])
                if rest:
                    delta["content"] = rest
            last.append({"index": b, "delta": delta, "logprobs": None, "finish_reason": reason})
        yield chunk(last)
        if req.stream_options and req.stream_options.include_usage:
            yield chunk([], usage=_usage(len(prompt), rows.generated))
        yield "data: [DONE]\n\n"

    def _row_steps(self, rows: "StreamedRows", prompt: list[int], params: SamplingParams,
                   adapter: str | None, seed: int | None, top_k: int, skip_special: bool, *,
                   hide_tool_calls: bool, prefix: str = ""
                   ) -> Iterator[list[tuple[int, int, float, Any, str]]]:
        """Every stream's sampling loop: per step, (row, token, log-prob, top alternatives, newly
        visible text) for each row still writing; `rows` keeps ids, text sent and stops.
        `prefix`: the reply's forced head (see `chat_turn.py`), visible text's start."""
        stop = set(params.stop_token_ids)
        for toks, logps, top in self.host.stream(prompt, rows.n, params, adapter=adapter,
                                                 seed=seed, top_k=top_k):
            step = []
            for b in range(rows.n):
                if rows.stopped[b]:
                    continue
                rows.ids[b].append(toks[b])
                rows.stopped[b] = toks[b] in stop
                text = visible(prefix + self._text(rows.ids[b], skip_special), hide_tool_calls)
                delta = unsent(text, rows.sent[b])
                rows.sent[b] += delta
                step.append((b, toks[b], logps[b], top[b], delta))
            yield step

    # --- completions -------------------------------------------------------------------------

    def _prompts(self, prompt) -> list[list[int]]:
        if isinstance(prompt, str):
            prompts = [self.tok.encode(prompt)]
        elif all(isinstance(p, str) for p in prompt):
            prompts = [self.tok.encode(p) for p in prompt]
        elif all(isinstance(p, int) for p in prompt):
            prompts = [list(prompt)]
        else:
            prompts = [list(p) for p in prompt]
        for i, p in enumerate(prompts):
            if not p:
                raise APIError(400, f"prompt {i} is empty", param="prompt")
            bad = next((t for t in p if not 0 <= t < self.vocab), None)
            if bad is not None:
                raise APIError(400, f"prompt {i} holds token id {bad}, outside this model's "
                                    f"vocabulary of {self.vocab}", param="prompt")
        return prompts

    def _completion_logprobs(self, c: Completion, top, as_ids: bool, k: int) -> dict:
        tokens = [self._token_str(t, as_ids) for t in c.token_ids]
        offsets, pos = [], 0
        for t in c.token_ids:
            offsets.append(pos)
            pos += len(self.tok.decode([t]))
        return {"tokens": tokens, "token_logprobs": c.logprobs, "text_offset": offsets,
                "top_logprobs": [{self._token_str(a, as_ids): v for a, v in alts} for alts in top]
                if k else None}

    async def completions(self, req: CompletionRequest):
        adapter = self._adapter(req.model)
        prompts = self._prompts(req.prompt)
        longest = max(len(p) for p in prompts)
        params = self._params(req, longest, req.max_tokens, 16)
        k = req.logprobs or 0
        if req.stream:
            if len(prompts) != 1:
                raise APIError(400, "streaming takes one prompt per request", param="prompt")
            return StreamingResponse(self._completion_stream(req, adapter, prompts[0], params, k),
                                     media_type="text/event-stream")
        expanded = [p for p in prompts for _ in range(req.n)]  # choice i*n + j: prompt i
        completions = await run_in_threadpool(self.host.generate, expanded, params,
                                              adapter=adapter, seed=req.seed)
        choices = []
        for i, (p, c) in enumerate(zip(expanded, completions)):
            choice: dict[str, Any] = {"index": i, "text": self._text(c.token_ids, req.skip_special_tokens),
                                      "logprobs": None, "finish_reason": c.finish_reason}
            if req.logprobs is not None:
                top = await run_in_threadpool(self._top, p, c, req.temperature, k, adapter)
                choice["logprobs"] = self._completion_logprobs(c, top, req.return_tokens_as_token_ids, k)
            if req.return_token_ids:
                choice["token_ids"] = c.token_ids
                choice["prompt_token_ids"] = p
            choices.append(choice)
        return SafeJSONResponse({
            "id": _id("cmpl"), "object": "text_completion", "created": int(time.time()),
            "model": req.model, "choices": choices,
            "usage": _usage(sum(len(p) for p in prompts),
                            sum(len(c.token_ids) for c in completions))})

    def _completion_stream(self, req: CompletionRequest, adapter: str | None, prompt: list[int],
                           params: SamplingParams, k: int) -> Iterator[str]:
        rid, created, n = _id("cmpl"), int(time.time()), req.n

        def chunk(choices: list[dict], **extra) -> str:
            return _sse({"id": rid, "object": "text_completion", "created": created,
                         "model": req.model, "choices": choices, **extra})

        rows = StreamedRows(n)
        for step in self._row_steps(rows, prompt, params, adapter, req.seed, k,
                                    req.skip_special_tokens, hide_tool_calls=False):
            out = []
            for b, tok, logp, top, delta in step:
                choice: dict[str, Any] = {"index": b, "text": delta, "logprobs": None,
                                          "finish_reason": "stop" if rows.stopped[b] else None}
                if req.logprobs is not None:
                    c = Completion([tok], [logp], "stop")
                    choice["logprobs"] = self._completion_logprobs(
                        c, [top], req.return_tokens_as_token_ids, k)
                if req.return_token_ids:
                    choice["token_ids"] = [tok]
                    if len(rows.ids[b]) == 1:
                        choice["prompt_token_ids"] = prompt
                out.append(choice)
            if out:
                yield chunk(out)
        tail = []
        for b in range(n):
            rest = unsent(self._text(rows.ids[b], req.skip_special_tokens), rows.sent[b])
            if not rows.stopped[b] or rest:
                tail.append({"index": b, "text": rest, "logprobs": None,
                             "finish_reason": "stop" if rows.stopped[b] else "length"})
        if tail:
            yield chunk(tail)
        if req.stream_options and req.stream_options.include_usage:
            yield chunk([], usage=_usage(len(prompt), rows.generated))
        yield "data: [DONE]\n\n"

    # --- models and adapters -----------------------------------------------------------------

    def model_card(self, model_id: str) -> dict[str, Any]:
        parent = None if model_id == self.host.name else self.host.name
        return {"id": model_id, "object": "model", "created": self.created, "owned_by": "agentrft",
                "root": self.host.adapters.get(model_id, self.host.name), "parent": parent,
                "max_model_len": self.host.max_context}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


_ROLES = {"system", "developer", "user", "assistant", "tool"}


def _message(m: dict[str, Any], i: int) -> dict[str, Any]:
    """A chat message as the renderer takes it: string content (text parts joined)."""
    role = m.get("role")
    if role not in _ROLES:
        raise APIError(400, f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}",
                       param=f"messages[{i}].role")
    content = m.get("content")
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or \
                    not isinstance(part.get("text"), str):
                raise APIError(400, "only text content parts are supported",
                               param=f"messages[{i}].content[{j}]")
            texts.append(part["text"])
        content = "".join(texts)
    elif content is not None and not isinstance(content, str):
        raise APIError(400, "content must be a string or a list of text parts",
                       param=f"messages[{i}].content")
    out = {k: v for k, v in m.items() if k in ("role", "name", "tool_call_id", "tool_calls")}
    out["content"] = content or ""
    for j, call in enumerate(out.get("tool_calls") or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise APIError(400, "a tool call needs function.name",
                           param=f"messages[{i}].tool_calls[{j}].function")
        fn.setdefault("arguments", "{}")
    return out


def _chat_tool_choice(value: str | dict[str, Any] | None) -> ToolChoice:
    """Chat completions' tool_choice: a mode, or `{"type": "function", "function": {"name"}}`."""
    if value is None or isinstance(value, str):
        return ToolChoice(mode=value or "auto")
    fn = value.get("function")
    if value.get("type") != "function" or not isinstance(fn, dict) or \
            not isinstance(fn.get("name"), str) or set(value) - {"type", "function"}:
        raise APIError(400, 'tool_choice must be "auto", "none", "required" or '
                            '{"type": "function", "function": {"name": ...}}', param="tool_choice")
    return ToolChoice(mode="function", function=fn["name"])


def _tool(t: dict[str, Any], i: int) -> dict[str, Any]:
    fn = t.get("function") if isinstance(t, dict) else None
    if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
            or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise APIError(400, 'a tool must be {"type": "function", "function": {"name": ...}}',
                       param=f"tools[{i}]")
    return t


def inference_routes(api: APIRouter, serving_for: Callable[[str], Awaitable[Serving]]) -> None:
    """POST /chat/completions, /responses and /completions on `api`; `serving_for(model)` gives
    the `Serving` that answers for a request's model (one host here, a pool in `agentrft
    server`)."""

    @api.post("/chat/completions")
    async def chat(body: ChatRequest):
        return await (await serving_for(body.model)).chat(body)

    @api.post("/responses")
    async def responses(body: ResponsesRequest):
        return await create_response(await serving_for(body.model), body)

    @api.post("/completions")
    async def completions(body: CompletionRequest):
        return await (await serving_for(body.model)).completions(body)


def create_app(host: ModelHost, *, api_keys: list[str] | None = None,
               embedding_models: EmbeddingModels | None = None) -> FastAPI:
    serving = Serving(host)
    app = FastAPI(title="agentrft serve", version=__version__, default_response_class=SafeJSONResponse)
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, api_keys=list(api_keys or []), max_body_bytes=MAX_BODY_BYTES,
                       upload_path="/v1/files", max_upload_body_bytes=MAX_BODY_BYTES)
    app.add_middleware(CatchAllMiddleware)
    api = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": host.name, "adapters": list(host.adapters)}

    async def serving_for(model: str) -> Serving:
        return serving

    inference_routes(api, serving_for)

    @api.get("/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [serving.model_card(m) for m in host.model_ids()]}

    @api.get("/models/{model_id:path}")
    def model(model_id: str) -> dict[str, Any]:
        if model_id not in host.model_ids():
            raise APIError(404, f"the model {model_id!r} does not exist", param="model",
                           code="model_not_found")
        return serving.model_card(model_id)

    @api.post("/load_lora_adapter", response_class=PlainTextResponse)
    async def load_lora_adapter(body: LoadAdapterRequest):
        try:
            if body.load_inplace and body.lora_name in host.adapters:
                await run_in_threadpool(host.unload_adapter, body.lora_name)
            await run_in_threadpool(host.load_adapter, body.lora_name, body.lora_path)
        except AdapterError as e:
            raise APIError(400, str(e), param="lora_path", code="invalid_adapter") from None
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    @api.post("/unload_lora_adapter", response_class=PlainTextResponse)
    async def unload_lora_adapter(body: UnloadAdapterRequest):
        try:
            await run_in_threadpool(host.unload_adapter, body.lora_name)
        except AdapterError as e:
            raise APIError(404 if e.missing else 400, str(e), param="lora_name",
                           code="adapter_not_found" if e.missing else "invalid_adapter") from None
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")

    app.include_router(api)
    app.include_router(embeddings_router(embedding_models or EmbeddingModels()))
    return app
