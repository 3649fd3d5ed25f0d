"""The config shared by `score_model` and `label_model`: OpenAI's shapes (`input` messages,
`sampling_params`) plus `base_url` / `api_key_env` as typed models (`ModelGraderConfig`), and
the choice of judge backend (`judge_from_config`). Every error is a `SpecError` naming its field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import BeforeValidator, model_validator

from agentrft.errors import SpecError
from agentrft.graders import judge_routes
from agentrft.graders.config import (
    FiniteNumber, GraderConfig, NonEmptyText, OptionalNonEmptyText, StrictConfig, invalid,
    non_empty_text,
)
from agentrft.graders.model_judge import (
    Judge, JudgeMessage, JudgeParams, LocalJudge, OpenAICompatibleJudge,
)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
_ROLES = ("system", "developer", "user", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")
_TOKEN_KEYS = ("max_completions_tokens", "max_completion_tokens", "max_tokens")


# --- input: OpenAI's messages ------------------------------------------------------------

def _message_type(value: Any) -> str:
    if value != "message":
        invalid(f"expected 'message', got {value!r:.80}")
    return value


def _role(value: Any) -> str:
    if value not in _ROLES:
        invalid(f"expected one of {', '.join(_ROLES)}, got {value!r:.80}")
    return value


def _content_text(value: Any) -> str:
    """A string, an `{"type": "input_text", "text"}` part or a list of such parts → the text."""
    parts = value if isinstance(value, list) else [value]
    texts = []
    for j, part in enumerate(parts):
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") in _TEXT_PARTS \
                and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            invalid("expected a string or an {\"type\": \"input_text\", \"text\": …} part "
                    "(images are not supported)", at=f"[{j}]" if isinstance(value, list) else "")
    return "".join(texts)


class MessageConfig(StrictConfig):
    """`{"role", "content", "type"?: "message"}`; `content` is read into its text."""

    type: Annotated[str, BeforeValidator(_message_type)] = "message"
    role: Annotated[str, BeforeValidator(_role)]
    content: Annotated[str, BeforeValidator(_content_text)]

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            invalid(f"expected a message object, got {type(value).__name__}")
        return value


def _message_list(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        invalid("expected a non-empty list of messages")
    return value


# --- sampling_params ---------------------------------------------------------------------

def _integer(positive: bool):
    def check(value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or (positive and value < 1)):
            invalid(f"expected {'a positive integer' if positive else 'an integer'}, "
                    f"got {value!r:.80}")
        return value
    return BeforeValidator(check)


def _reasoning_effort(value: Any) -> Any:
    if value is not None and value not in REASONING_EFFORTS:
        invalid(f"expected one of {', '.join(REASONING_EFFORTS)}, got {value!r:.80}")
    return value


class SamplingParamsConfig(StrictConfig):
    """OpenAI's `sampling_params`; a null value is as good as absent."""

    temperature: FiniteNumber | None = None
    top_p: FiniteNumber | None = None
    max_completions_tokens: Annotated[int | None, _integer(positive=True)] = None
    max_completion_tokens: Annotated[int | None, _integer(positive=True)] = None
    max_tokens: Annotated[int | None, _integer(positive=True)] = None
    seed: Annotated[int | None, _integer(positive=False)] = None
    reasoning_effort: Annotated[str | None, BeforeValidator(_reasoning_effort)] = None

    @model_validator(mode="after")
    def _ranges(self) -> "SamplingParamsConfig":
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            invalid("expected a number in [0, 2]", at=".temperature")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            invalid("expected a number in (0, 1]", at=".top_p")
        tokens = self._token_keys()
        if len(tokens) > 1:
            invalid(f"give one of {', '.join(tokens)}", at=f".{tokens[1]}")
        return self

    def _token_keys(self) -> list[str]:
        return [k for k in _TOKEN_KEYS if getattr(self, k) is not None]

    def judge_params(self) -> JudgeParams:
        tokens = self._token_keys()
        return JudgeParams(temperature=self.temperature, top_p=self.top_p,
                           max_tokens=getattr(self, tokens[0]) if tokens else None,
                           seed=self.seed, reasoning_effort=self.reasoning_effort)


# --- what score_model and label_model share ----------------------------------------------

def _http_url(value: Any) -> Any:
    value = non_empty_text(value)
    url = httpx.URL(value) if value.startswith(("http://", "https://")) else None
    if url is None or not url.host:
        invalid("expected an absolute http:// or https:// URL (e.g. http://localhost:8000/v1)")
    return value


class ModelGraderConfig(GraderConfig):
    """The fields of every model grader: who judges (`model`, `base_url`, `api_key_env`: the
    key's environment variable, never the key), what it reads (`input`) and how it samples."""

    name: NonEmptyText
    model: NonEmptyText
    input: Annotated[list[MessageConfig], BeforeValidator(_message_list)]
    sampling_params: SamplingParamsConfig | None = None
    base_url: Annotated[str | None, BeforeValidator(_http_url)] = None
    api_key_env: OptionalNonEmptyText = None

    def messages(self) -> tuple[JudgeMessage, ...]:
        return tuple(JudgeMessage(m.role, m.content) for m in self.input)

    def judge_params(self) -> JudgeParams:
        return (self.sampling_params or SamplingParamsConfig()).judge_params()


def judge_from_config(config: ModelGraderConfig) -> Judge:
    """`model` + optional `base_url` / `api_key_env` → the backend.

    - `base_url` given: that OpenAI-compatible server, asked for `model` by name;
    - `bundled:NAME`, `local:PATH` or an existing directory: in-process (`LocalJudge`);
    - a name the operator routed (`judge_routes`: `--judge-models`, `--judge-base-url`): the
      route's server, key from the route's `api_key_env` (the grader's wins);
    - otherwise OpenAI's API (`OPENAI_BASE_URL` or api.openai.com), key from `OPENAI_API_KEY`.
    The key is read from the environment variable named by `api_key_env`, never from config.
    """
    model, key_env = config.model, config.api_key_env
    if key_env is not None and not os.environ.get(key_env):
        raise SpecError(f"environment variable {key_env!r} is not set",
                        field="grader.api_key_env")
    if config.base_url is not None:
        return OpenAICompatibleJudge(model, config.base_url,
                                     api_key=os.environ[key_env] if key_env else None)
    local = _local_ref(model)
    if local is not None:
        return LocalJudge(local)
    routes = judge_routes.current()
    matched = routes.match(model)
    if matched is not None:  # the operator's mapping (--judge-models / --judge-base-url)
        pattern, route = matched
        key_env = key_env or route.api_key_env
        if key_env and not os.environ.get(key_env):
            raise SpecError(f"the judge route {pattern!r} ({routes.source}) reads its key from "
                            f"{key_env!r}, which is not set", field="grader.model")
        return OpenAICompatibleJudge(model, route.base_url,
                                     api_key=os.environ[key_env] if key_env else None)
    key_env = key_env or "OPENAI_API_KEY"
    if not os.environ.get(key_env):
        raise SpecError(
            f"{model!r} is neither a bundled model nor a local model directory, and no judge "
            f"route maps it. Map the name to an OpenAI-compatible server with `--judge-models "
            f"FILE` on agentrft server/train (FILE: {{\"{model}\": {{\"base_url\": "
            f"\"http://host:8000/v1\", \"api_key_env\": \"JUDGE_KEY\"}}}}; glob patterns like "
            f"\"gpt-*\" work) or `--judge-base-url URL` for every such name; or give base_url "
            f"(and api_key_env) in the grader; or set {key_env} to use OpenAI's API",
            field="grader.model")
    return OpenAICompatibleJudge(model, os.environ.get("OPENAI_BASE_URL") or
                                 DEFAULT_OPENAI_BASE_URL, api_key=os.environ[key_env])


def _local_ref(model: str) -> str | None:
    """What `load_model` takes for an in-process judge, None for a served model name."""
    from agentrft.models.bundled import BUNDLED

    if model.startswith("bundled:"):
        if model not in BUNDLED:
            raise SpecError(f"unknown bundled model {model!r} (known: {', '.join(BUNDLED)})",
                            field="grader.model")
        return model
    explicit = model.startswith("local:")
    path = Path(model.removeprefix("local:")).expanduser()
    if path.is_dir():
        return str(path)
    if explicit or model.startswith(("/", "./", "../", "~")):
        raise SpecError(f"no model directory at {str(path)!r}", field="grader.model")
    return None
