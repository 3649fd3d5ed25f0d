"""`read_file` and `shell` as HTTP tool endpoints, for hosting them like any production tool.

    python -m agentrft.tools.shell_server --workspace "/srv/repos/{{item.repo}}" --port 8100

serves, with DESIGN.md's wire format (body `{type, id, call_id, name, arguments, trace_id,
item}`, answer `{"output": …}`):

- `POST /shell`, `POST /read_file`: run the call in the sandbox of `trace_id`, started on
  the trace's first call from the workspace named by the item;
- `POST /traces/{trace_id}/close`: the rollout ended, drop its sandbox (our extension; a
  caller that never says so has it dropped after `idle_seconds` without a call).

Status codes follow the wire rules: 200 with the output, even for a failed command (the
model reads it); 400 for arguments the model got wrong; 401 without the bearer token when
one is set; 503 when the sandbox cannot start or died, so the client retries and then
discards the rollout. A job uses it as `{name: shell, server_url: "http://host:8100/shell"}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agentrft.tools.base import ToolCallRequest
from agentrft.sandbox.limits import SandboxLimits
from agentrft.sandbox.workspace import SandboxError
from agentrft.tools.shell_tools import TOOLS, SandboxPool


def create_app(pool: SandboxPool, *, token: str | None = None,
               idle_seconds: float = 600.0) -> FastAPI:
    tools = {name: cls(name, pool) for name, cls in TOOLS.items()}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async def reap() -> None:
            while True:
                await asyncio.sleep(min(idle_seconds / 4, 30.0))
                await pool.close_idle(idle_seconds)

        reaper = asyncio.ensure_future(reap())
        try:
            yield
        finally:
            reaper.cancel()
            await pool.close_all()

    app = FastAPI(title="agentrft sandboxed shell tools", lifespan=lifespan)
    app.state.pool = pool

    def unauthorized(request: Request) -> JSONResponse | None:
        if token is None:
            return None
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)

    async def serve(name: str, request: Request) -> JSONResponse:
        if (denied := unauthorized(request)) is not None:
            return denied
        try:
            body = json.loads(await request.body())
            call = ToolCallRequest(id=str(body.get("id", "")), call_id=str(body.get("call_id", "")),
                                   name=name, arguments=_arguments(body.get("arguments", "{}")),
                                   trace_id=str(body["trace_id"]), item=body.get("item") or {})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": f"bad request body: {exc}"}, status_code=400)
        try:
            outcome = await tools[name].call(call)
        except SandboxError as exc:
            return JSONResponse({"error": f"sandbox failure: {exc}"}, status_code=503)
        if outcome.status_code == 400:
            return JSONResponse({"error": outcome.output}, status_code=400)  # bad arguments
        return JSONResponse({"type": "function_call_output", "call_id": call.call_id,
                             "output": outcome.output})

    @app.post("/shell")
    async def shell(request: Request) -> JSONResponse:
        return await serve("shell", request)

    @app.post("/read_file")
    async def read_file(request: Request) -> JSONResponse:
        return await serve("read_file", request)

    @app.post("/traces/{trace_id}/close")
    async def close(trace_id: str, request: Request) -> JSONResponse:
        if (denied := unauthorized(request)) is not None:
            return denied
        await pool.close_trace(trace_id)
        return JSONResponse({"closed": trace_id})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "backend": pool.backend.name, "sandboxes": len(pool)}

    return app


def _arguments(raw: Any) -> str:
    """The wire carries arguments as a JSON string; accept an object too."""
    return raw if isinstance(raw, str) else json.dumps(raw)


def main(argv: list[str] | None = None) -> None:
    import os

    import uvicorn

    from agentrft.sandbox.factory import make_backend

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", help="directory copied into each sandbox; may use {{item.x}}")
    ap.add_argument("--backend", choices=["auto", "bwrap", "docker"], default="auto")
    ap.add_argument("--image", help="container image for the docker backend")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--idle-seconds", type=float, default=600.0)
    ap.add_argument("--wall-seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    pool = SandboxPool(make_backend(args.backend, image=args.image), args.workspace,
                       SandboxLimits(wall_seconds=args.wall_seconds))
    token = os.environ.get("AGENTRFT_TOOL_TOKEN")  # bearer token, if set
    uvicorn.run(create_app(pool, token=token, idle_seconds=args.idle_seconds),
                host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
