"""A real tool server on loopback, for tests that must cross a real socket.

In-process transports cannot show timeouts, connection errors, streaming caps or two
calls overlapping in time; this can. It is a FastAPI app run by uvicorn in a background
thread on 127.0.0.1 (a free port, bound before start so there is no race), recording
every request it receives.

    with LoopbackToolServer(lookup={"revenue": "42"}) as server:
        tool = HttpTool("lookup", server.url("/lookup"))
        ...
        assert server.requests_for("/lookup")[0].json["trace_id"] == "trace_1"

Built-in paths (POST, body in the DESIGN.md tool request format):

- `/lookup`   `{"output": lookup[key]}` for argument `key`; an unknown key is a 400
- `/echo`     `{"output": <the arguments string>}`
- `/slow`     sleeps `sleep_s` (argument, else `slow_s`), then echoes the arguments
- `/flaky503` always 503; count attempts with `server.count("/flaky503")`
- `/notjson`  200 with a plain-text body
- `/big`      `{"output": "x" * big_bytes}`, over the 1 MB cap by default

Add one with `server.add_handler("/path", handler)`, where `handler(body, request)` may be
sync or async and returns a dict (sent as JSON) or any Starlette `Response`. A GET to a
known path answers 405 and to an unknown path 404, like a real POST-only tool server.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from agentrft.loopback import LoopbackServer

Handler = Callable[[Any, Request], "dict | Response | Awaitable[dict | Response]"]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # the parsed body, or None if it was not JSON
    received_at: float  # time.monotonic(), comparable with the test's own clock
    finished_at: float | None = None  # set when the handler returns


class LoopbackToolServer(LoopbackServer):
    def __init__(self, lookup: dict[str, str] | None = None, slow_s: float = 0.3,
                 big_bytes: int = 1_100_000):
        self.lookup = dict(lookup or {})
        self.slow_s = slow_s
        self.big_bytes = big_bytes
        self.requests: list[RecordedRequest] = []
        self.handlers: dict[str, Handler] = {
            "/lookup": self._lookup, "/echo": self._echo, "/slow": self._slow,
            "/flaky503": lambda body, req: Response("upstream down", status_code=503),
            "/notjson": lambda body, req: PlainTextResponse("plain text, not JSON"),
            "/big": lambda body, req: {"output": "x" * self.big_bytes},
        }
        self._lock = threading.Lock()
        super().__init__(self._app(), health_path="/_health", name="loopback tool server")

    # -- helpers for tests -----------------------------------------------------------

    def add_handler(self, path: str, handler: Handler) -> None:
        self.handlers[path] = handler

    def requests_for(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def count(self, path: str) -> int:
        return len(self.requests_for(path))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- the app ---------------------------------------------------------------------

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/_health")
        async def health() -> dict:
            return {"ok": True}

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
        async def dispatch(path: str, request: Request) -> Response:
            path = "/" + path
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            record = RecordedRequest(request.method, path, dict(request.headers), raw, body,
                                     received_at=time.monotonic())
            with self._lock:
                self.requests.append(record)
            try:
                handler = self.handlers.get(path)
                if handler is None:
                    return JSONResponse({"detail": "not found"}, status_code=404)
                if request.method != "POST":
                    return JSONResponse({"detail": "method not allowed"}, status_code=405)
                result = handler(body, request)
                if inspect.isawaitable(result):
                    result = await result
                return result if isinstance(result, Response) else JSONResponse(result)
            finally:
                record.finished_at = time.monotonic()

        return app

    # -- built-in handlers -----------------------------------------------------------

    def _lookup(self, body: dict, request: Request) -> dict | Response:
        key = json.loads(body["arguments"]).get("key")
        if key not in self.lookup:
            return PlainTextResponse(f"unknown key {key!r}; known keys: {sorted(self.lookup)}",
                                     status_code=400)
        return {"output": self.lookup[key]}

    def _echo(self, body: dict, request: Request) -> dict:
        return {"output": body["arguments"]}

    async def _slow(self, body: dict, request: Request) -> dict:
        await asyncio.sleep(json.loads(body["arguments"]).get("sleep_s", self.slow_s))
        return {"output": body["arguments"]}
