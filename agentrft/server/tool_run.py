"""`POST /v1/fine_tuning/alpha/tool/run`: call a team's tool endpoint once, the way training
calls it, and say what happened. OpenAI's Agent RFT helpers use it to try a tool before a job.

    {"type": "function_call", "name", "server_url", "headers"?, "arguments": "<JSON string>",
     "item"?, "trace_id"?, "id"?, "call_id"?}
        │  HttpTool (agentrft/tools/http.py), the training code path: DESIGN.md's request body,
        │  retries with backoff on 5xx/timeouts/connection errors, 1 MB caps both ways,
        ▼  a 4xx shown as the output, header values scrubbed from every error text
    {"output": str | null, "status": "ok" | "tool_error" | "infra_failure",
     "http_status": int | null, "latency_ms": float, "retries": int, "error": str | null,
     "trace_id", "call_id", "id"}

`status`: `ok` — the model would read `output`; `tool_error` — the model would read `output`
too (a 4xx, a reply without `output`, over 1 MB: the model's call, or the reply, was wrong);
`infra_failure` — no answer after the retries (training would discard the rollout): `output`
is null and `error` says why. A tool's failure is this reply's content, never a 5xx of ours.
The headers (API keys) go to the tool only; nothing here echoes them.

Who may call this: it makes the server POST to any URL, so, as every /v1 route, it wants an
API key when the server has keys (a key is the right to run code on the server anyway).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentrft.errors import SpecError, ToolInfraFailure
from agentrft.web.errors import APIError
from agentrft.tools.base import ToolCallRequest
from agentrft.tools.http import HttpTool


class ToolRunRequest(BaseModel):
    """The body OpenAI's helper sends; nothing else is accepted (a typo is a 400)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["function_call"] = "function_call"
    name: str = Field(min_length=1)
    server_url: str = Field(min_length=1)
    arguments: str  # a JSON string, as the model wrote it
    headers: dict[str, str] | None = None
    item: dict[str, Any] | None = None
    trace_id: str | None = None
    id: str | None = None
    call_id: str | None = None


async def run_tool_call(body: ToolRunRequest, *, timeout_s: float = 600.0,
                        backoff_s: float = 0.5) -> dict[str, Any]:
    try:
        json.loads(body.arguments)
    except ValueError as e:
        raise APIError(400, f"arguments must be a JSON string (the model's call would be shown "
                            f"as malformed, never sent to the tool): {e}", param="arguments",
                       code="invalid_value") from None
    try:
        tool = HttpTool(body.name, body.server_url, headers=body.headers, timeout_s=timeout_s,
                        backoff_s=backoff_s)
    except SpecError as e:
        raise APIError(400, str(e).split(": ", 1)[-1], param="server_url",
                       code="invalid_value") from None
    request = ToolCallRequest(
        id=body.id or f"fc_{uuid.uuid4().hex}", call_id=body.call_id or f"call_{uuid.uuid4().hex}",
        name=body.name, arguments=body.arguments,
        trace_id=body.trace_id or f"trace_{uuid.uuid4().hex}", item=body.item or {})
    ids = {"trace_id": request.trace_id, "call_id": request.call_id, "id": request.id}
    start = time.perf_counter()
    try:
        outcome = await tool.call(request)
    except ToolInfraFailure as e:
        attempts = e.attempts or 1
        return {"output": None, "status": "infra_failure", "http_status": None,
                "latency_ms": round((time.perf_counter() - start) * 1000, 3),
                "retries": attempts - 1, "error": str(e), **ids}
    finally:
        await tool.aclose()
    return {"output": outcome.output, "status": "tool_error" if outcome.is_error else "ok",
            "http_status": outcome.status_code, "latency_ms": round(outcome.latency_s * 1000, 3),
            "retries": outcome.retries, "error": outcome.output if outcome.is_error else None,
            **ids}
