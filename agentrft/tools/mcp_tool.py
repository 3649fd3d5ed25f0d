"""Tools from an MCP server, called through the official `mcp` Python SDK.

A job-level entry points at one server; every tool it lists (or the ones named in `tools`)
becomes a tool of the job, offered to the model with the server's own description and
input schema:

    tools:
      - name: clock                                  # names the server, not a tool
        mcp: {command: ["mcp-server-time", "--local-timezone", "UTC"]}   # stdio
      - name: search
        mcp: {url: "http://127.0.0.1:9000/mcp", headers: {Authorization: "Bearer …"},
              tools: [search_docs]}                  # streamable HTTP; only these tools

Each call carries the rollout's `trace_id` (and `call_id`) in the request's `_meta`, the
MCP place for request metadata, so a server can group the calls of one rollout as an HTTP
tool server does from the body.

Whose fault a failure is (DESIGN.md, tool rules): a result with `isError` and an
invalid-params error are the model's (shown to it); a dead or silent server, a timeout or
any other protocol error is the infrastructure's: the connection is rebuilt and the call
retried up to 3 times with backoff, then `ToolInfraFailure` discards the rollout.

One connection per server is shared by its tools, opened on first use in the event loop the
rollouts run in. The SDK's client is an anyio context that must be entered and left by the
same task, so a small owner task holds it open until `aclose`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentrft.errors import SpecError, ToolInfraFailure, ToolUnreachable
from agentrft.httpio import redact, secrets_of
from agentrft.retry import Again, GaveUp, retry
from agentrft.spec.errors import spec_error_from
from agentrft.tools.base import ToolCallRequest, ToolClient, ToolOutcome

INVALID_PARAMS = -32602
MAX_OUTPUT_CHARS = 1_000_000  # as for HTTP tools: past this the model sees a 413-style error


class McpConfig(BaseModel):
    """The `mcp` object of a job-level tool entry."""

    model_config = ConfigDict(extra="forbid")
    command: list[str] | None = Field(default=None, min_length=1)  # stdio: argv of the server
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for a stdio server
    cwd: str | None = None
    url: str | None = None  # streamable HTTP endpoint
    headers: dict[str, str] = Field(default_factory=dict)  # for url
    tools: list[str] | None = None  # only these of the server's tools (default: all)
    timeout_s: float = Field(default=600.0, gt=0)  # per call
    connect_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> "McpConfig":
        if (self.command is None) == (self.url is None):
            raise ValueError("needs exactly one of command (a stdio server) or url")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        return self


def parse_mcp_config(raw: dict[str, Any], field: str) -> McpConfig:
    try:
        return McpConfig.model_validate(raw)
    except ValidationError as e:
        err = spec_error_from(e, file=None)
        raise SpecError(str(err)[len(err.field) + 2:] if err.field else str(err),
                        field=f"{field}.{err.field}" if err.field else field) from None


class McpServer:
    """One MCP server: its connection, shared by the `McpTool`s of its tools."""

    def __init__(self, name: str, config: McpConfig, *, max_retries: int = 3,
                 backoff_s: float = 0.5):
        self.name, self.config = name, config
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self._secrets = secrets_of(config.headers) + secrets_of(config.env)
        self._client = None
        self._owner: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def where(self) -> str:
        return self.config.url or " ".join(self.config.command or [])

    def _target(self):
        from mcp import StdioServerParameters

        if self.config.url:
            if self.config.headers:
                import httpx2  # the HTTP client the mcp SDK's transport takes
                from mcp.client.streamable_http import streamable_http_client

                http = httpx2.AsyncClient(headers=self.config.headers, timeout=self.config.timeout_s)
                return streamable_http_client(self.config.url, http_client=http)
            return self.config.url
        import os

        command, *args = self.config.command
        return StdioServerParameters(command=command, args=args, cwd=self.config.cwd,
                                     env={**os.environ, **self.config.env})

    # --- the connection ------------------------------------------------------------------------

    async def _hold(self, ready: asyncio.Future) -> None:
        """Owner task: enter the client, report, stay until told to stop, leave."""
        from mcp import Client

        try:
            async with Client(self._target(), read_timeout_seconds=self.config.timeout_s) as client:
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits for the connection
            if not ready.done():
                ready.set_exception(e)
        finally:
            self._client = None

    async def _connect(self):
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is not None and self._owner is not None and not self._owner.done():
                return self._client
            self._stop = asyncio.Event()
            ready = asyncio.get_running_loop().create_future()
            self._owner = asyncio.create_task(self._hold(ready), name=f"mcp-{self.name}")
            try:
                async with asyncio.timeout(self.config.connect_timeout_s):
                    await ready
            except BaseException:
                await self._drop()
                raise
            return self._client

    async def _drop(self) -> None:
        """Close the connection (a stdio server's process ends with it)."""
        owner, self._owner = self._owner, None
        if owner is None:
            return
        self._stop.set()
        try:
            async with asyncio.timeout(10):
                await asyncio.gather(owner, return_exceptions=True)
        except TimeoutError:
            owner.cancel()
            await asyncio.gather(owner, return_exceptions=True)

    async def check(self) -> None:
        try:
            client = await self._connect()
            await client.list_tools()
        except Exception as e:  # noqa: BLE001 - any failure to answer is "unreachable"
            raise ToolUnreachable(self._redact(
                f"MCP server {self.name!r} ({self.where}) did not answer: {_describe(e)}")) from None

    async def call(self, name: str, arguments: dict[str, Any], meta: dict[str, Any]):
        """The server's `CallToolResult`, or an `MCPError` of invalid params (the model's
        fault); anything else is retried with a fresh connection, then ToolInfraFailure."""
        from mcp import MCPError

        async def attempt(_: int):
            try:
                client = await self._connect()
                async with asyncio.timeout(self.config.timeout_s):
                    return await client.call_tool(name, arguments, meta=meta)
            except MCPError as e:
                if e.code == INVALID_PARAMS:
                    raise
                reason = _describe(e)
            except Exception as e:  # noqa: BLE001 - transport, timeout, a dead process
                reason = _describe(e)
            await self._drop()  # the next attempt connects afresh
            return Again(reason)

        result = await retry(attempt, max_retries=self.max_retries, backoff_s=self.backoff_s)
        if isinstance(result, GaveUp):
            raise ToolInfraFailure(self._redact(
                f"MCP tool {name!r} of server {self.name!r} ({self.where}) failed after "
                f"{result.attempts} attempts; last error: {result.last}"))
        return result

    async def aclose(self) -> None:
        await self._drop()

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


class McpTool(ToolClient):
    """One tool of an `McpServer`; `schema` is what the model is offered."""

    def __init__(self, server: McpServer, name: str, description: str,
                 input_schema: dict[str, Any]):
        self.server, self.name = server, name
        self.schema = {"type": "function", "function": {
            "name": name, "description": description or "",
            "parameters": input_schema or {"type": "object"}}}

    async def call(self, request: ToolCallRequest) -> ToolOutcome:
        from mcp import MCPError

        start = time.perf_counter()

        def done(output: str, is_error: bool = False) -> ToolOutcome:
            return ToolOutcome(output=output, is_error=is_error, latency_s=time.perf_counter() - start)

        try:
            arguments = json.loads(request.arguments or "{}")
        except ValueError as e:
            return done(f"Error: arguments are not valid JSON: {e}", True)
        if not isinstance(arguments, dict):
            return done("Error: arguments must be a JSON object", True)
        meta = {"trace_id": request.trace_id, "call_id": request.call_id}
        try:
            result = await self.server.call(self.name, arguments, meta)
        except MCPError as e:  # invalid params: the model called it wrong
            return done(f"Error: {e}", True)
        output = result_text(result)
        if len(output) > MAX_OUTPUT_CHARS:
            return done(f"Error 413: tool output too large ({len(output)} characters > "
                        f"{MAX_OUTPUT_CHARS})", True)
        return done(output, bool(result.is_error))

    async def check(self) -> None:
        await self.server.check()

    async def aclose(self) -> None:
        await self.server.aclose()  # idempotent: the server's other tools may close it again


def result_text(result) -> str:
    """What the model sees of a `CallToolResult`: its text blocks, else its structured
    content as JSON; other blocks (images, audio, resources) are named, not inlined."""
    parts = []
    for block in result.content or []:
        if getattr(block, "type", None) == "text":
            parts.append(block.text)
        else:
            parts.append(f"[{getattr(block, 'type', 'content')} omitted]")
    if not any(getattr(b, "type", None) == "text" for b in result.content or []) \
            and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


# --- building the tools of a job -----------------------------------------------------------------


def list_server_tools(name: str, config: McpConfig) -> list[McpTool]:
    """Connect once, list the server's tools, disconnect. Runs its own event loop in a thread,
    so it works from synchronous code and from inside a running loop alike; the tools it
    returns connect again, lazily, in the loop that calls them."""
    result: dict[str, Any] = {}

    async def fetch() -> list[Any]:
        probe = McpServer(name, config)
        try:
            client = await probe._connect()
            tools, cursor = [], None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    return tools
        finally:
            await probe.aclose()

    def run() -> None:
        try:
            result["tools"] = asyncio.run(fetch())
        except BaseException as e:  # noqa: BLE001 - re-raised below in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=run, name=f"mcp-list-{name}")
    thread.start()
    thread.join()
    server = McpServer(name, config)
    if "error" in result:
        raise ToolUnreachable(server._redact(
            f"MCP server {name!r} ({server.where}) could not list its tools: "
            f"{_describe(result['error'])}"))
    listed = {t.name: t for t in result["tools"]}
    wanted = config.tools if config.tools is not None else list(listed)
    missing = [t for t in wanted if t not in listed]
    if missing:
        raise SpecError(f"MCP server {name!r} has no tool {', '.join(map(repr, missing))} "
                        f"(it lists {', '.join(map(repr, listed)) or 'none'})", field="mcp.tools")
    return [McpTool(server, t, listed[t].description or "", listed[t].input_schema or {})
            for t in wanted]


def mcp_tools_for(decl, field: str, taken: set[str]) -> list[McpTool]:
    """The tools of a job-level `mcp` entry; `taken` holds the job's other tool names."""
    config = parse_mcp_config(decl.mcp, f"{field}.mcp")
    try:
        tools = list_server_tools(decl.name, config)
    except SpecError as e:
        raise SpecError(str(e).split(": ", 1)[1], field=f"{field}.mcp.tools") from None
    for t in tools:
        if t.name in taken:
            raise SpecError(f"MCP server {decl.name!r} lists a tool {t.name!r}, a name another "
                            f"tool of the job already has (use mcp.tools to pick the ones wanted)",
                            field=f"{field}.mcp")
    return tools


def mcp_tool_names(decls) -> set[str]:
    """The names of every tool the job's MCP servers offer (each server is asked)."""
    names: set[str] = set()
    for i, d in enumerate(decls):
        if d.mcp is not None:
            others = {x.name for x in decls if x is not d}
            names |= {t.name for t in mcp_tools_for(d, f"method.reinforcement.tools[{i}]", others)}
    return names
