"""`HttpTool`: a tool served by an HTTP endpoint, speaking the wire format in DESIGN.md.

The point of this module is the split between whose fault a failure is:

- the model's (a 4xx, a reply we cannot read, a body over 1 MB): a `ToolOutcome` with
  `is_error=True`, shown to the model so it can learn to call the tool better;
- the infrastructure's (5xx, timeout, connection error): retried with exponential
  backoff, then `ToolInfraFailure`, so the rollout is discarded rather than scored 0.

Header values (API keys) never appear in what this module writes: exceptions and error
outputs are scrubbed of them (a server's error page may echo the request), because both
end up in logs and training data. URL passwords are dropped from messages too.

Example::

    tool = HttpTool("search", "http://localhost:8000/search",
                    headers={"Authorization": "Bearer sk-..."})
    await tool.check()                      # ToolUnreachable if nothing answers
    outcome = await tool.call(request)      # ToolOutcome, or raises ToolInfraFailure
    await tool.aclose()
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from agentrft.httpio import describe_error, read_capped, redact, secrets_of
from agentrft.errors import SpecError, ToolInfraFailure, ToolUnreachable
from agentrft.retry import Again, GaveUp, retry
from agentrft.tools.base import ToolCallRequest, ToolClient, ToolOutcome

MAX_BODY_BYTES = 1_000_000  # request and response cap (DESIGN.md)
CHECK_TIMEOUT_S = 5.0
ERROR_BODY_CHARS = 2000  # how much of a 4xx body the model sees
PREVIEW_CHARS = 200  # how much of an unreadable 2xx body the model sees


class HttpTool(ToolClient):
    """POSTs each call to `server_url`; see the module docstring for the outcome rules."""

    def __init__(self, name: str, server_url: str, headers: dict[str, str] | None = None,
                 timeout_s: float = 600.0, max_retries: int = 3, backoff_s: float = 0.5,
                 client: httpx.AsyncClient | None = None):
        url = _parse_url(name, server_url)
        self.name = name
        self.server_url = server_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        # Ours wins over a configured Content-Type: the body is always JSON.
        self._headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
        self._headers["Content-Type"] = "application/json"
        self._secrets = secrets_of(headers)
        self._safe_url = str(url.copy_with(username=None, password=None)) if url.userinfo \
            else server_url
        self._owns_client = client is None
        # No pool limit: the rollout scheduler bounds concurrency, and waiting for a pool
        # slot here would turn queueing into spurious timeouts.
        self._client = client or httpx.AsyncClient(
            timeout=timeout_s, limits=httpx.Limits(max_connections=None))

    async def call(self, request: ToolCallRequest) -> ToolOutcome:
        start = time.perf_counter()
        body = json.dumps({
            "type": "function_call", "id": request.id, "call_id": request.call_id,
            "name": request.name, "arguments": request.arguments,
            "trace_id": request.trace_id, "item": request.item,
        }).encode()
        if len(body) > MAX_BODY_BYTES:
            return ToolOutcome(
                output=f"Error 413: request body too large ({len(body)} bytes > {MAX_BODY_BYTES})",
                is_error=True, status_code=413, latency_s=time.perf_counter() - start)

        async def attempt(retries: int) -> ToolOutcome | Again:
            try:
                # asyncio.timeout bounds the whole attempt; httpx's timeout is per read.
                async with asyncio.timeout(self.timeout_s):
                    status, raw, too_big = await self._post(body)
            except (httpx.TransportError, TimeoutError) as exc:
                return Again(describe_error(exc))
            if status >= 500:
                return Again(f"HTTP {status}: {_text(raw)[:PREVIEW_CHARS]}")
            outcome = self._interpret(status, raw, too_big)
            # A successful output is the tool's own business; error text often echoes the request.
            output = self._redact(outcome.output) if outcome.is_error else outcome.output
            return ToolOutcome(output=output, is_error=outcome.is_error, status_code=status,
                               latency_s=time.perf_counter() - start, retries=retries)

        result = await retry(attempt, max_retries=self.max_retries, backoff_s=self.backoff_s)
        if isinstance(result, GaveUp):
            raise ToolInfraFailure(self._redact(
                f"tool '{self.name}' at {self._safe_url} failed after {result.attempts} "
                f"attempts; last error: {result.last}"), attempts=result.attempts)
        return result

    async def _post(self, body: bytes) -> tuple[int, bytes, bool]:
        """Send one attempt; read at most MAX_BODY_BYTES of the reply (True if there was more)."""
        async with self._client.stream("POST", self.server_url, content=body,
                                       headers=self._headers, timeout=self.timeout_s) as resp:
            if resp.status_code >= 500:
                return resp.status_code, await read_capped(resp, PREVIEW_CHARS), False
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                return resp.status_code, b"", True
            raw = await read_capped(resp, MAX_BODY_BYTES + 1)
            return resp.status_code, raw[:MAX_BODY_BYTES], len(raw) > MAX_BODY_BYTES

    def _interpret(self, status: int, raw: bytes, too_big: bool) -> ToolOutcome:
        """Turn a non-5xx reply into what the model sees (status and latency filled in later)."""
        if 400 <= status < 500:
            text = _text(raw)
            if len(text) > ERROR_BODY_CHARS or too_big:
                text = text[:ERROR_BODY_CHARS] + " …(truncated)"
            return ToolOutcome(output=f"Error {status}: {text}", is_error=True)
        if not 200 <= status < 300:
            # A 1xx/3xx is a misconfigured server_url, not the model's fault; retrying won't help.
            raise ToolInfraFailure(self._redact(
                f"tool '{self.name}' at {self._safe_url} answered HTTP {status}; "
                "redirects are not followed, point server_url at the final URL"))
        if too_big:
            return ToolOutcome(output=f"Error 413: response body too large "
                                      f"(more than {MAX_BODY_BYTES} bytes)", is_error=True)
        try:
            data = json.loads(raw)
        except ValueError:
            return ToolOutcome(output=f"Error: tool '{self.name}' returned a non-JSON body: "
                                      f"{_text(raw)[:PREVIEW_CHARS]}", is_error=True)
        if not isinstance(data, dict) or "output" not in data:
            return ToolOutcome(output=f"Error: tool '{self.name}' returned JSON without an "
                                      f"'output' field: {_text(raw)[:PREVIEW_CHARS]}",
                               is_error=True)
        output = data["output"]
        if not isinstance(output, str):
            output = json.dumps(output, ensure_ascii=False)
        return ToolOutcome(output=output)

    async def check(self) -> None:
        """Any HTTP answer, even 404 or 405, proves the server is there; only silence fails."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                async with self._client.stream("GET", self.server_url, headers=self._headers,
                                               timeout=CHECK_TIMEOUT_S):
                    pass
        except (httpx.TransportError, TimeoutError) as exc:
            raise ToolUnreachable(self._redact(
                f"tool '{self.name}': server at {self._safe_url} is unreachable: "
                f"{describe_error(exc)}")) from None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def _parse_url(name: str, server_url: str) -> httpx.URL:
    try:
        url = httpx.URL(server_url)
    except httpx.InvalidURL as exc:
        raise SpecError(f"invalid URL: {exc}", field=f"tools.{name}.server_url") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise SpecError("server_url must be an absolute http:// or https:// URL",
                        field=f"tools.{name}.server_url")
    return url


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
