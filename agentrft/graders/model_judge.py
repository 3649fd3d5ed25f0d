"""Judges for OpenAI's model graders (`score_model`, `label_model`): backends, answer parsing,
and the render → ask → parse flow both graders share.

A `Judge` turns chat messages into one answer. Two backends:

- `OpenAICompatibleJudge`: `POST {base_url}/chat/completions` on any OpenAI-compatible
  server (OpenAI, vLLM, SGLang, our own `serve`). 5xx, 429, timeouts and connection errors
  are retried with exponential backoff; a 4xx (wrong model name, bad key) is not, since
  repeating a config problem cannot fix it. Either way the failure comes back as
  `JudgeServerError`, which the grader turns into `model_grader_server_error`.
- `LocalJudge`: a `bundled:` model or a local Hugging Face directory sampled in-process by
  our `TransformersEngine`. Each model is loaded once per process and shared by every grader
  naming it; concurrent grades are batched (`BatchingSampler`) and sampled in a worker thread.

Example::

    class Always(Judge):
        model = "always"
        async def complete(self, messages, params, *, trace_id=""):
            return JudgeReply(text='{"result": 1}', model=self.model)

A last `input` message from the assistant is a prefill: a local judge continues it, and a
server may (vLLM's `continue_final_message`) or may answer afresh. So the answer is parsed
as the reply alone first and, failing that, as prefill + reply. With a prefill of
`{"result": ` even a small model answers parsable JSON.

Checking a grader's config and choosing its backend is `model_grader_config`.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from agentrft.httpio import describe_error
from agentrft.engines.base import Completion, Engine, SamplingParams
from agentrft.errors import GraderError
from agentrft.graders.base import Grader, GraderResult
from agentrft.templates import TemplateVariableError, render_template
from agentrft.retry import Again, GaveUp, retry

LOCAL_DEFAULT_MAX_TOKENS = 512  # a local judge has no server-side cap; bound its CPU time
ERROR_PREVIEW_CHARS = 500
log = logging.getLogger(__name__)


class JudgeServerError(GraderError):
    """The judge gave no answer (server error, timeout, bad config, model failed to load)."""


class JudgeParseError(GraderError):
    """The judge answered, but not in a form the grader can read."""


@dataclass(frozen=True)
class JudgeMessage:
    role: str  # system | developer | user | assistant
    content: str  # a template: {{sample.…}} / {{item.…}}


@dataclass(frozen=True)
class JudgeParams:
    """OpenAI's `sampling_params`; None means the server's (or local) default."""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    reasoning_effort: str | None = None
    # the answer's structured-output format (chat completions' shape), as OpenAI's model
    # graders ask it of the judge: a local judge decodes under it, a server is sent it
    response_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class JudgeReply:
    text: str  # the answer's content ("" when the judge wrote none)
    model: str  # the model that answered (the server's name for it when it says)
    refusal: str | None = None  # OpenAI's `message.refusal`
    usage: dict[str, int] | None = None  # prompt/completion/total/cached tokens


class Judge(abc.ABC):
    model: str

    @abc.abstractmethod
    async def complete(self, messages: list[dict[str, str]], params: JudgeParams, *,
                       trace_id: str = "") -> JudgeReply:
        """One answer to `messages` (rendered), or raise JudgeServerError."""

    async def aclose(self) -> None:
        """Release connections (optional)."""


# --- OpenAI-compatible servers ---------------------------------------------------------

class OpenAICompatibleJudge(Judge):
    def __init__(self, model: str, base_url: str, *, api_key: str | None = None,
                 timeout_s: float = 600.0, max_retries: int = 3, backoff_s: float = 0.5):
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._api_key = api_key
        # An AsyncClient belongs to the event loop it first ran on; keep one per loop.
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _body(self, messages: list[dict[str, str]], params: JudgeParams) -> dict[str, Any]:
        # `developer` is OpenAI-only; every server (and OpenAI itself) takes `system`.
        body: dict[str, Any] = {"model": self.model, "messages": [
            {**m, "role": "system" if m["role"] == "developer" else m["role"]} for m in messages]}
        for key, value in (("temperature", params.temperature), ("top_p", params.top_p),
                           ("max_completion_tokens", params.max_tokens), ("seed", params.seed),
                           ("reasoning_effort", params.reasoning_effort),
                           ("response_format", params.response_format)):
            if value is not None:
                body[key] = value
        return body

    async def complete(self, messages: list[dict[str, str]], params: JudgeParams, *,
                       trace_id: str = "") -> JudgeReply:
        body = self._body(messages, params)
        headers = {**self._headers, **({"X-Trace-Id": trace_id} if trace_id else {})}

        async def attempt(_: int) -> JudgeReply | Again:
            try:
                async with asyncio.timeout(self.timeout_s):
                    resp = await self._http().post(self.url, json=body, headers=headers,
                                                   timeout=self.timeout_s)
            except (httpx.TransportError, TimeoutError) as exc:
                return Again(describe_error(exc))
            if resp.status_code >= 500 or resp.status_code == 429:  # transient: retry
                return Again(f"HTTP {resp.status_code}: {resp.text[:ERROR_PREVIEW_CHARS]}")
            if not 200 <= resp.status_code < 300:
                raise JudgeServerError(self._redact(
                    f"judge {self.model!r} at {self.url} answered HTTP {resp.status_code} "
                    f"(not retried: check model, base_url and key): "
                    f"{resp.text[:ERROR_PREVIEW_CHARS]}"))
            return self._reply(resp)

        result = await retry(attempt, max_retries=self.max_retries, backoff_s=self.backoff_s)
        if isinstance(result, GaveUp):
            raise JudgeServerError(self._redact(
                f"judge {self.model!r} at {self.url} failed after {result.attempts} attempts; "
                f"last error: {result.last}"))
        return result

    def _reply(self, resp: httpx.Response) -> JudgeReply:
        try:
            data = resp.json()
            message = data["choices"][0]["message"]
            content = message.get("content") or ""
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise JudgeServerError(self._redact(
                f"judge {self.model!r} at {self.url} sent a reply that is not a chat completion "
                f"({describe_error(exc)}): {resp.text[:ERROR_PREVIEW_CHARS]}")) from None
        refusal = message.get("refusal")
        return JudgeReply(text=content, model=str(data.get("model") or self.model),
                          refusal=refusal if isinstance(refusal, str) and refusal else None,
                          usage=_server_usage(data.get("usage")))

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._client_loop = None

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text


def _server_usage(usage: Any) -> dict[str, int] | None:
    """OpenAI's `usage` as prompt/completion/total/cached tokens; None when absent or garbled."""
    try:
        out = {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
        out["total_tokens"] = int(usage.get("total_tokens") or sum(out.values()))
        details = usage.get("prompt_tokens_details") or {}
        out["cached_tokens"] = int(details.get("cached_tokens") or 0)
    except (AttributeError, TypeError, ValueError):
        return None
    return out


# --- in-process models -----------------------------------------------------------------

@dataclass
class _LoadedModel:
    tokenizer: Any
    renderer: Any  # ChatRenderer
    engine: Any  # TransformersEngine
    lock: threading.Lock  # one generate at a time: the engine's RNG and KV cache are not shared-safe
    constraints: dict[str, Any] = field(default_factory=dict)  # grammar text -> Constraint

    def constraint_for(self, response_format: dict[str, Any] | None):
        """The compiled grammar of an answer in `response_format` (None: free text)."""
        from agentrft.engines.constrained import Constraint
        from agentrft.models.structured import read_format, reply_grammar

        grammar = reply_grammar(read_format(response_format, param="response_format"), [])
        if grammar is None:
            return None
        with self.lock:
            if grammar not in self.constraints:
                self.constraints[grammar] = Constraint.compile(
                    grammar, self.tokenizer, self.renderer.stop_token_ids)
            return self.constraints[grammar]


_LOADED: dict[str, _LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


def _load(ref: str) -> _LoadedModel:
    """Load `ref` once per process (blocking; call it in a thread)."""
    with _LOAD_LOCK:
        if ref not in _LOADED:
            import torch

            from agentrft.engines.transformers_engine import TransformersEngine
            from agentrft.models.chat import ChatRenderer
            from agentrft.models.loading import load_model, load_tokenizer

            cuda = torch.cuda.is_available()
            tokenizer = load_tokenizer(ref)
            model = load_model(ref, device="cuda" if cuda else "cpu",
                               dtype=torch.bfloat16 if cuda else torch.float32)
            engine = TransformersEngine(model, pad_token_id=tokenizer.pad_token_id,
                                        device="cuda" if cuda else "cpu")
            _LOADED[ref] = _LoadedModel(tokenizer, ChatRenderer(tokenizer), engine, threading.Lock())
        return _LOADED[ref]


class _SharedEngine(Engine):
    """The loaded engine behind its lock, reseeded before each batch when a seed is set."""

    def __init__(self, loaded: _LoadedModel, seed: int | None):
        self.loaded, self.seed = loaded, seed

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        with self.loaded.lock:
            if self.seed is not None:
                self.loaded.engine.reseed(self.seed)
            return self.loaded.engine.generate(prompts, params)


class LocalJudge(Judge):
    """`ref`: `bundled:NAME` or a local model directory (what `load_model` takes)."""

    def __init__(self, ref: str, *, max_batch_size: int = 16):
        self.model = ref
        self.max_batch_size = max_batch_size
        self._samplers: dict[tuple[asyncio.AbstractEventLoop, int | None], Any] = {}

    async def complete(self, messages: list[dict[str, str]], params: JudgeParams, *,
                       trace_id: str = "") -> JudgeReply:
        try:
            loaded = await asyncio.to_thread(_load, self.model)
            prompt = self._prompt_ids(loaded, messages)
            sp = SamplingParams(
                temperature=1.0 if params.temperature is None else params.temperature,
                top_p=1.0 if params.top_p is None else params.top_p,
                max_new_tokens=params.max_tokens or LOCAL_DEFAULT_MAX_TOKENS,
                stop_token_ids=loaded.renderer.stop_token_ids,
                constraint=loaded.constraint_for(params.response_format))
            completion = await self._sampler(loaded, params.seed).sample(prompt, sp)
        except Exception as exc:  # a load or sampling failure: no answer, say why
            raise JudgeServerError(f"local judge {self.model!r} failed: {describe_error(exc)}") from exc
        text = loaded.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        n_prompt, n_completion = len(prompt), len(completion.token_ids)
        return JudgeReply(text=text, model=self.model, usage={
            "prompt_tokens": n_prompt, "completion_tokens": n_completion,
            "total_tokens": n_prompt + n_completion, "cached_tokens": 0})

    @staticmethod
    def _prompt_ids(loaded: _LoadedModel, messages: list[dict[str, str]]) -> list[int]:
        if messages and messages[-1]["role"] == "assistant":  # prefill: continue it
            head = loaded.renderer.prompt_ids(messages[:-1], [])
            return head + loaded.tokenizer.encode(messages[-1]["content"], add_special_tokens=False)
        return loaded.renderer.prompt_ids(messages, [])

    def _sampler(self, loaded: _LoadedModel, seed: int | None):
        from agentrft.engines.batcher import BatchingSampler

        key = (asyncio.get_running_loop(), seed)
        if key not in self._samplers:  # a sampler's worker task lives on one event loop
            self._samplers = {k: v for k, v in self._samplers.items() if not k[0].is_closed()}
            self._samplers[key] = BatchingSampler(_SharedEngine(loaded, seed),
                                                  max_batch_size=self.max_batch_size)
        return self._samplers[key]


# --- reading answers -------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)
_REFUSAL = re.compile(
    r"(?:^|[.!?\n]\s*)(?:i'?m sorry|i am sorry|sorry,|i apologi[sz]e|i can'?t|i cannot|i can not|"
    r"i won'?t|i will not|i'?m (?:not able|unable)|i am (?:not able|unable)|i must decline|"
    r"as an ai\b)", re.I)


def find_result_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` that has a "result" key (prose, ```json fences and
    nested objects allowed); `<think>` blocks are skipped."""
    text = _THINK.sub("", text)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(obj, dict) and "result" in obj:
            return obj
    return None


# A reply that is only a number, as OpenAI's published judge prompts ask ("only return the
# numerical score"): `1`, `0.5`, `"0.5"`, `**1**`, `Score: 1`, `Result = 0.5.`. Anything more
# (a sentence with a number in it) is not read: which number was meant is a guess.
_BARE_NUMBER = re.compile(
    r"(?:(?:final\s+)?(?:score|result|rating|grade)\s*[:=]\s*)?"
    r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\.?", re.I)


def bare_number(text: str) -> float | None:
    """The number a reply consists of (see `_BARE_NUMBER`), or None."""
    core = _THINK.sub("", text).strip().strip("`*\"' \n\t")
    match = _BARE_NUMBER.fullmatch(core)
    return float(match.group(1)) if match else None


def parse_score(text: str) -> float:
    """The judge's `"result"` (or a reply that is just a number) as a finite float; raise
    JudgeParseError."""
    obj = find_result_object(text)
    if obj is None:
        value = bare_number(text)
        if value is None:
            raise JudgeParseError('no JSON object with a "result" key, and not a bare number')
        if not math.isfinite(value):
            raise JudgeParseError(f"the score is {value}")
        return value
    value = obj["result"]
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise JudgeParseError(f'"result" is not a number: {value!r:.80}') from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JudgeParseError(f'"result" is not a number: {value!r:.80}')
    if not math.isfinite(value):
        raise JudgeParseError(f'"result" is {value}')
    return float(value)


def match_label(text: str, labels: tuple[str, ...]) -> str:
    """The label the judge chose: `{"result": "label"}` or the bare label (quotes, backticks,
    bold and a final period allowed). Exact match first, then case-insensitive."""
    obj = find_result_object(text)
    if obj is not None:
        if not isinstance(obj["result"], str):
            raise JudgeParseError(f'"result" is not a label: {obj["result"]!r:.80}')
        answer = obj["result"].strip()
    else:
        answer = _THINK.sub("", text).strip().strip("`*\"' \n\t").rstrip(".").strip()
    if answer in labels:
        return answer
    folded = [label for label in labels if label.casefold() == answer.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise JudgeParseError(f"answer {answer[:80]!r} is not one of the labels {list(labels)}")


def looks_like_refusal(text: str) -> bool:
    """True when the answer opens (a sentence) with a refusal: "I can't help with that"."""
    return bool(_REFUSAL.search(text.replace("\u2019", "'").strip()[:300]))


# --- the shared grading flow -----------------------------------------------------------

class ModelGrader(Grader):
    """Render `input` → ask the judge → read the answer (`read_answer`, per grader type)."""

    def __init__(self, name: str, judge: Judge, input: tuple[JudgeMessage, ...],
                 params: JudgeParams = JudgeParams()):
        self.name, self.judge, self.input, self.params = name, judge, tuple(input), params

    def answer_schema(self) -> dict[str, Any] | None:
        """The JSON schema of the judge's answer (`{"result": ...}`), asked for as structured
        output; None: free text."""
        return None

    def judge_params(self) -> JudgeParams:
        schema = self.answer_schema()
        if schema is None or self.params.response_format is not None:
            return self.params
        return replace(self.params, response_format={"type": "json_schema", "json_schema": {
            "name": f"{self.type}_result", "schema": schema, "strict": True}})

    @abc.abstractmethod
    def read_answer(self, text: str) -> tuple[float, dict[str, Any], bool | None]:
        """(reward, scores, passed) from the judge's text; raise JudgeParseError."""

    async def grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str) -> GraderResult:
        start = time.perf_counter()
        meta: dict[str, Any] = {"name": self.name, "type": self.type}
        try:
            return await self._grade(sample, item, trace_id, start, meta)
        except Exception:  # noqa: BLE001 - grade() never raises; a bug is a flag, not a crash
            log.exception("%s grader %r failed [trace_id=%s]", self.type, self.name, trace_id)
            return GraderResult.make(0.0, **meta, errors={"other_error": True},
                                     execution_time=time.perf_counter() - start)

    async def _grade(self, sample, item, trace_id, start, meta) -> GraderResult:
        try:
            messages = [{"role": m.role, "content": render_template(m.content, sample, item)}
                        for m in self.input]
        except TemplateVariableError:
            return GraderResult.make(0.0, **meta, errors={"invalid_variable_error": True},
                                     execution_time=time.perf_counter() - start)
        try:
            reply = await self.judge.complete(messages, self.judge_params(), trace_id=trace_id)
        except JudgeServerError as exc:
            return GraderResult.make(
                0.0, **meta, errors={"model_grader_server_error": True},
                details={"model_grader_server_error_details": f"{exc} [trace_id={trace_id}]"},
                execution_time=time.perf_counter() - start, sampled_model_name=self.judge.model)
        meta.update(token_usage=reply.usage, sampled_model_name=reply.model)
        if reply.refusal is not None:
            return self._flagged("model_grader_refusal_error", meta, start)
        candidates = [reply.text]
        if messages and messages[-1]["role"] == "assistant":
            candidates.append(messages[-1]["content"] + reply.text)
        reason = ""
        for text in candidates:
            try:
                reward, scores, passed = self.read_answer(text)
            except JudgeParseError as e:
                reason = reason or str(e)
                continue
            return GraderResult.make(reward, **meta, scores=scores, passed=passed,
                                     execution_time=time.perf_counter() - start)
        flag = ("model_grader_refusal_error" if looks_like_refusal(reply.text)
                else "model_grader_parse_error")
        # what the judge wrote, so a prompt that yields unreadable answers can be fixed
        return self._flagged(flag, meta, start, scores={
            "error_detail": reason, "judge_output": _preview(reply.text)})

    @staticmethod
    def _flagged(flag: str, meta: dict[str, Any], start: float,
                 scores: dict[str, Any] | None = None) -> GraderResult:
        return GraderResult.make(0.0, **meta, errors={flag: True}, scores=scores,
                                 execution_time=time.perf_counter() - start)


def _preview(text: str) -> str:
    return text if len(text) <= ERROR_PREVIEW_CHARS else text[:ERROR_PREVIEW_CHARS] + " …(truncated)"
