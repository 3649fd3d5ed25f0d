"""Config checks shared by `score_model` and `label_model`: OpenAI's shapes (`input`
messages, `sampling_params`) plus `base_url` / `api_key_env`, and the choice of judge backend
(`judge_from_config`). Every error is a `SpecError` naming its field.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import httpx

from agentrft.errors import SpecError
from agentrft.graders import judge_routes
from agentrft.graders.fields import check_keys  # re-exported for score_model and label_model
from agentrft.graders.model_judge import (
    Judge, JudgeMessage, JudgeParams, LocalJudge, OpenAICompatibleJudge,
)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
COMMON_OPTIONAL = ("sampling_params", "base_url", "api_key_env")
_ROLES = ("system", "developer", "user", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")


def string_field(config: dict[str, Any], key: str, where: str = "grader") -> str:
    value = config[key]
    if not isinstance(value, str) or not value:
        raise SpecError(f"expected a non-empty string, got {value!r:.80}", field=f"{where}.{key}")
    return value


def number_field(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"expected a finite number, got {value!r:.80}", field=field)
    return float(value)


def messages_from_config(value: Any) -> tuple[JudgeMessage, ...]:
    """OpenAI's `input`: `{"role", "content", "type"?: "message"}`; content a string, an
    `{"type": "input_text", "text"}` part or a list of such parts."""
    if not isinstance(value, list) or not value:
        raise SpecError("expected a non-empty list of messages", field="grader.input")
    out = []
    for i, msg in enumerate(value):
        where = f"grader.input[{i}]"
        if not isinstance(msg, dict):
            raise SpecError(f"expected a message object, got {type(msg).__name__}", field=where)
        check_keys(msg, ("role", "content"), ("type",), where=where)
        msg_type = msg.get("type", "message")
        if msg_type != "message":
            raise SpecError(f"expected 'message', got {msg_type!r:.80}", field=f"{where}.type")
        if msg["role"] not in _ROLES:
            raise SpecError(f"expected one of {', '.join(_ROLES)}, got {msg['role']!r:.80}",
                            field=f"{where}.role")
        parts = msg["content"] if isinstance(msg["content"], list) else [msg["content"]]
        texts = []
        for j, part in enumerate(parts):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in _TEXT_PARTS \
                    and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                at = f"{where}.content" + (f"[{j}]" if isinstance(msg["content"], list) else "")
                raise SpecError("expected a string or an {\"type\": \"input_text\", \"text\": …} "
                                "part (images are not supported)", field=at)
        out.append(JudgeMessage(msg["role"], "".join(texts)))
    return tuple(out)


def params_from_config(value: Any) -> JudgeParams:
    where = "grader.sampling_params"
    if value is None:
        return JudgeParams()
    if not isinstance(value, dict):
        raise SpecError(f"expected an object, got {type(value).__name__}", field=where)
    token_keys = ("max_completions_tokens", "max_completion_tokens", "max_tokens")
    check_keys(value, (), ("temperature", "top_p", "seed", "reasoning_effort") + token_keys,
               where=where)
    given = {k: v for k, v in value.items() if v is not None}
    if "temperature" in given and not 0 <= number_field(given["temperature"],
                                                        f"{where}.temperature") <= 2:
        raise SpecError("expected a number in [0, 2]", field=f"{where}.temperature")
    if "top_p" in given and not 0 < number_field(given["top_p"], f"{where}.top_p") <= 1:
        raise SpecError("expected a number in (0, 1]", field=f"{where}.top_p")
    tokens = [k for k in token_keys if k in given]
    if len(tokens) > 1:
        raise SpecError(f"give one of {', '.join(tokens)}", field=f"{where}.{tokens[1]}")
    for key in tokens + (["seed"] if "seed" in given else []):
        v = given[key]
        if isinstance(v, bool) or not isinstance(v, int) or (key != "seed" and v < 1):
            raise SpecError(f"expected {'an integer' if key == 'seed' else 'a positive integer'}, "
                            f"got {v!r:.80}", field=f"{where}.{key}")
    effort = given.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise SpecError(f"expected one of {', '.join(REASONING_EFFORTS)}, got {effort!r:.80}",
                        field=f"{where}.reasoning_effort")
    return JudgeParams(
        temperature=float(given["temperature"]) if "temperature" in given else None,
        top_p=float(given["top_p"]) if "top_p" in given else None,
        max_tokens=given[tokens[0]] if tokens else None, seed=given.get("seed"),
        reasoning_effort=effort)


def judge_from_config(config: dict[str, Any]) -> Judge:
    """`model` + optional `base_url` / `api_key_env` → the backend.

    - `base_url` given: that OpenAI-compatible server, asked for `model` by name;
    - `bundled:NAME`, `local:PATH` or an existing directory: in-process (`LocalJudge`);
    - a name the operator routed (`judge_routes`: `--judge-models`, `--judge-base-url`): the
      route's server, key from the route's `api_key_env` (the grader's wins);
    - otherwise OpenAI's API (`OPENAI_BASE_URL` or api.openai.com), key from `OPENAI_API_KEY`.
    The key is read from the environment variable named by `api_key_env`, never from config.
    """
    model = string_field(config, "model")
    key_env = string_field(config, "api_key_env") if "api_key_env" in config else None
    if key_env is not None and not os.environ.get(key_env):
        raise SpecError(f"environment variable {key_env!r} is not set",
                        field="grader.api_key_env")
    if "base_url" in config:
        base_url = string_field(config, "base_url")
        url = httpx.URL(base_url) if base_url.startswith(("http://", "https://")) else None
        if url is None or not url.host:
            raise SpecError("expected an absolute http:// or https:// URL (e.g. "
                            "http://localhost:8000/v1)", field="grader.base_url")
        return OpenAICompatibleJudge(model, base_url,
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
