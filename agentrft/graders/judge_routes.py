"""Which OpenAI-compatible server answers for a judge model named in a grader.

A `score_model`/`label_model` grader copied from OpenAI names its judge (`"model":
"gpt-4.1-2025-04-14"`) and nothing else; the operator says where such names are served:

    # judges.yaml (or .json): exact names or glob patterns, first match wins, exact names first
    gpt-4.1-2025-04-14: {base_url: "http://127.0.0.1:8001/v1"}
    "gpt-*":            {base_url: "http://judge.internal:8000/v1", api_key_env: JUDGE_KEY}

    agentrft server --judge-models judges.yaml
    agentrft train JOB.yaml --judge-base-url http://127.0.0.1:8001/v1 --judge-api-key-env KEY

`--judge-base-url` (with `--judge-api-key-env`) is a last route, `*`, after the file's. A
grader's own `base_url` wins over every route; `bundled:`/`local:` names and model directories
never need one. The key is read from the environment variable a route names, never stored.

The routes are process-wide (`install`), and exported to `AGENTRFT_JUDGE_ROUTES` so the
processes this one starts (the jobs worker) resolve names the same way.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from agentrft.errors import SpecError
from agentrft.spec.errors import spec_error_from

ENV = "AGENTRFT_JUDGE_ROUTES"
_GLOB_CHARS = set("*?[")


class JudgeRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str
    api_key_env: str | None = None

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        url = httpx.URL(value) if value.startswith(("http://", "https://")) else None
        if url is None or not url.host:
            raise ValueError("expected an absolute http:// or https:// URL "
                             "(e.g. http://127.0.0.1:8000/v1)")
        return value


class JudgeRoutes:
    """Ordered (pattern, route) pairs; `source` says where they came from, for messages."""

    def __init__(self, routes: list[tuple[str, JudgeRoute]] | None = None, source: str = ""):
        self.routes = list(routes or [])
        self.source = source

    def match(self, model: str) -> tuple[str, JudgeRoute] | None:
        for pattern, route in self.routes:  # exact names first: a glob never shadows them
            if pattern == model:
                return pattern, route
        for pattern, route in self.routes:
            if _GLOB_CHARS & set(pattern) and fnmatch.fnmatchcase(model, pattern):
                return pattern, route
        return None

    def to_json(self) -> str:
        return json.dumps({"source": self.source,
                           "routes": [[p, r.model_dump()] for p, r in self.routes]})

    @classmethod
    def from_json(cls, text: str) -> "JudgeRoutes":
        data = json.loads(text)
        return cls([(p, JudgeRoute(**r)) for p, r in data["routes"]], data.get("source", ""))


def parse_routes(data: Any, *, file: str | None = None) -> list[tuple[str, JudgeRoute]]:
    if not isinstance(data, dict):
        raise SpecError("expected a mapping of model name or pattern to "
                        "{base_url, api_key_env}", file=file)
    out = []
    for pattern, value in data.items():
        if not isinstance(pattern, str) or not pattern:
            raise SpecError(f"a model name or pattern must be a non-empty string, got {pattern!r}",
                            file=file)
        try:
            out.append((pattern, JudgeRoute.model_validate(value)))
        except ValidationError as e:
            err = spec_error_from(e, file=None)
            raise SpecError(str(err), file=file, field=pattern) from None
    return out


def load_routes(path: str | Path | None = None, *, base_url: str | None = None,
                api_key_env: str | None = None) -> JudgeRoutes:
    """The routes of a judge models file (YAML or JSON) and the `--judge-base-url` catch-all."""
    routes: list[tuple[str, JudgeRoute]] = []
    sources = []
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except OSError as e:
            raise SpecError(f"cannot read the judge models file: {e.strerror}", file=str(path)) from None
        except (ValueError, yaml.YAMLError) as e:
            raise SpecError(f"cannot parse: {e}", file=str(path)) from None
        routes += parse_routes(data, file=str(path))
        sources.append(f"--judge-models {path}")
    if api_key_env is not None and base_url is None:
        raise SpecError("--judge-api-key-env needs --judge-base-url", field="--judge-api-key-env")
    if base_url is not None:
        try:
            routes.append(("*", JudgeRoute(base_url=base_url, api_key_env=api_key_env)))
        except ValidationError as e:
            raise SpecError(e.errors()[0]["msg"].removeprefix("Value error, "),
                            field="--judge-base-url") from None
        sources.append("--judge-base-url")
    return JudgeRoutes(routes, " and ".join(sources))


_installed: JudgeRoutes | None = None


def install(routes: JudgeRoutes) -> None:
    """Make `routes` this process's, and its children's (through the environment)."""
    global _installed
    _installed = routes
    if routes.routes:
        os.environ[ENV] = routes.to_json()
    else:
        os.environ.pop(ENV, None)


def current() -> JudgeRoutes:
    """The installed routes, else those a parent process exported, else none."""
    global _installed
    if _installed is None:
        text = os.environ.get(ENV)
        _installed = JudgeRoutes.from_json(text) if text else JudgeRoutes()
    return _installed
