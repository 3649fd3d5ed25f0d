"""FinQA-lite's tool server: `search`, `list` and `cat` over a corpus of annual reports.

Each tool is a `POST /<tool>` in the DESIGN.md wire format (request `{"type":
"function_call", ..., "arguments": "<JSON string>"}`, reply `{"output": "<string>"}`), so
the job spec points `HttpTool` at it like at any team's production tool:

    with ToolServer(corpus_dir, token="s3cret") as server:
        tools = server.declarations()   # [{"name": "search", "server_url": ..., "headers": ...}]

    python -m examples.finqa_lite.server CORPUS_DIR --port 8123 --token s3cret

Tools (paths are relative to the corpus dir and always start with `reports/`):

- `search {"query": str, "top_k"?: 1..10}`  the index's hits, formatted by `format_results`
- `list {"path": str}`  `""`, `"/"` or `"reports"`: one `reports/<company>/` per line;
  a company dir: its `reports/<company>/fy<year>.md` files
- `cat {"path": str}`   the document, cut at `cat_max_chars` with `[truncated: N more characters]`

Status codes, chosen so `HttpTool` sorts each failure onto the right side (DESIGN.md):
400 bad arguments or a path outside the corpus, 401 a missing or wrong bearer token, 404 an
unknown path, 413 a body over 1 MB: all shown to the model, with a usage line it can learn
from. A 500 (the index broke) is an infrastructure failure: retried, then the rollout is
discarded. `GET /health` needs no token; a GET to a tool path answers 405 at once, which is
all the agent's preflight needs to see.

What the path checks cover: `..` components, absolute paths, NUL bytes, backslashes,
percent-encoded forms of those (decoded repeatedly), hidden entries, and symlinks whose
target resolves outside `reports/` (checked after resolution, so a link to a link is caught
too). What they do not: a corpus rewritten while the server runs (a file swapped for a
symlink between the check and the read); the corpus is treated as static.
"""

from __future__ import annotations

import argparse
import hmac
import json
import secrets
import sys
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from agentrft.loopback import LoopbackServer

MAX_BODY_BYTES = 1_000_000  # request cap (DESIGN.md)
MAX_TOP_K = 10
DEFAULT_TOP_K = 5
MAX_LIST_ENTRIES = 500  # a listing is model input too
CAT_MAX_CHARS = 4000  # a report is ~800 characters: cat shows it whole
TOOLS = ("search", "list", "cat")

USAGE = {
    "search": 'search needs {"query": "<words>", "top_k": <1-10, optional, default 5>}',
    "list": 'list needs {"path": "reports"} or {"path": "reports/<company>"}',
    "cat": 'cat needs {"path": "reports/<company>/fy<year>.md"}',
}
OUTSIDE = "path outside the corpus"


# -- the tools, free of HTTP ------------------------------------------------------------

class ToolArgumentError(Exception):
    """The model called a tool wrong; `kind` is "bad_arguments" or "not_found"."""

    def __init__(self, message: str, kind: str = "bad_arguments"):
        super().__init__(message)
        self.kind = kind


class FinqaTools:
    """The three tools as plain methods over one corpus dir; each returns the model's output.

    `index` is anything with `.search(query, top_k) -> list[Hit]`; by default a
    `SearchIndex(corpus_dir, cache_dir)`, built on the first search (embedding a corpus takes
    a while, and `list`/`cat` do not need it). `format_hits` defaults to the search module's
    `format_results`.
    """

    def __init__(self, corpus_dir: Path, *, index: Any = None, cache_dir: Path | None = None,
                 cat_max_chars: int = CAT_MAX_CHARS,
                 format_hits: Callable[[list], str] | None = None):
        self.corpus_dir = Path(corpus_dir)
        self.reports = self.corpus_dir / "reports"
        if not self.reports.is_dir():
            raise ValueError(f"{self.corpus_dir} has no reports/ directory; "
                             "is it a FinQA-lite corpus?")
        if cat_max_chars < 1:
            raise ValueError("cat_max_chars must be at least 1")
        self._reports_real = self.reports.resolve()
        self.cache_dir = Path(cache_dir) if cache_dir else self.corpus_dir.parent / "cache"
        self.cat_max_chars = cat_max_chars
        self._index = index
        self._format_hits = format_hits
        # Built once even when the first searches arrive together; searches are serialised
        # too, because SearchIndex promises no thread safety and a query takes milliseconds.
        self._index_lock = threading.Lock()

    @property
    def index(self) -> Any:
        with self._index_lock:
            if self._index is None:
                from examples.finqa_lite.search import SearchIndex

                self._index = SearchIndex(self.corpus_dir, cache_dir=self.cache_dir)
            return self._index

    def search(self, query: str, top_k: int = DEFAULT_TOP_K) -> str:
        index = self.index
        with self._index_lock:
            hits = index.search(query, top_k=top_k)
        if self._format_hits is None:
            from examples.finqa_lite.search import format_results

            self._format_hits = format_results
        return self._format_hits(hits)

    def list(self, path: str) -> str:
        target = self._resolve(path, "list")
        if not target.is_dir():
            raise ToolArgumentError(f"{_show(path)} is a file, not a directory; read it with cat. "
                                    + USAGE["list"])
        entries = []
        for child in sorted(target.iterdir(), key=lambda p: p.name):
            if child.name.startswith(".") or not self._inside(child) or not _exists(child):
                continue  # hidden files, escaping or dangling symlinks: not part of the corpus
            rel = child.relative_to(self.corpus_dir).as_posix()
            entries.append(rel + "/" if child.is_dir() else rel)
        return list_output(entries)

    def cat(self, path: str) -> str:
        target = self._resolve(path, "cat")
        if target.is_dir():
            raise ToolArgumentError(f"{_show(path)} is a directory; see what it holds with list. "
                                    + USAGE["cat"])
        return cat_output(target.read_text(encoding="utf-8", errors="replace"), self.cat_max_chars)

    def _resolve(self, path: str, tool: str) -> Path:
        """The file or dir `path` names, or ToolArgumentError (400 outside, 404 unknown)."""
        path = path.strip()  # " reports/x" is a slip of the model, not a different path
        if _escapes(path):
            raise ToolArgumentError(f"{OUTSIDE}: {_show(path)}. {USAGE[tool]}")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if parts and parts[0] == "reports":
            parts = parts[1:]
        elif parts:  # "acme/fy2020.md": say where paths start rather than guessing
            raise ToolArgumentError(f"no such path {_show(path)}; paths start with reports/. "
                                    f"{USAGE[tool]}", "not_found")
        target = self.reports.joinpath(*parts)
        if not self._inside(target):
            raise ToolArgumentError(f"{OUTSIDE}: {_show(path)}. {USAGE[tool]}")
        if any(p.startswith(".") for p in parts) or not _exists(target):
            raise ToolArgumentError(f"no such path {_show(path)}; list {{\"path\": \"reports\"}} "
                                    "shows the companies", "not_found")
        return target

    def _inside(self, path: Path) -> bool:
        # resolve() follows every symlink on the way, so a link anywhere in the chain counts.
        try:
            return path.resolve().is_relative_to(self._reports_real)
        except (OSError, RuntimeError):  # a symlink loop: not something we serve
            return False


def list_output(entries: list[str]) -> str:
    """What `list` shows of a folder's entries (sorted by name): one a line, capped."""
    if not entries:
        return "(empty directory)"
    if len(entries) > MAX_LIST_ENTRIES:
        more = len(entries) - MAX_LIST_ENTRIES
        entries = entries[:MAX_LIST_ENTRIES] + [f"[truncated: {more} more entries]"]
    return "\n".join(entries)


def cat_output(text: str, max_chars: int = CAT_MAX_CHARS) -> str:
    """What `cat` shows of a document: all of it, or its first `max_chars` and a note."""
    if len(text) <= max_chars:
        return text
    more = len(text) - max_chars
    return text[:max_chars] + f"\n\n[truncated: {more} more characters]"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system names nothing
        return False


def _escapes(path: str) -> bool:
    """True for `..`, absolute paths, NUL and backslashes, also behind percent-encoding."""
    if path == "/":
        return False  # "/" is the corpus top, as the model would expect from a file system
    forms, current = {path}, path
    for _ in range(4):  # %252e -> %2e -> .
        current = unquote(current)
        forms.add(current)
    for form in forms:
        if "\x00" in form or "\\" in form or form.startswith(("/", "~")):
            return True
        if ".." in form.split("/"):
            return True
    return False


def _show(path: str) -> str:
    """The path as the model wrote it, quoted and bounded, control characters escaped."""
    shown = json.dumps(path[:200])
    return shown if len(path) <= 200 else shown[:-1] + '…"'


# -- arguments ---------------------------------------------------------------------------

def _arguments(body: bytes, tool: str) -> dict:
    """The tool's arguments from a wire-format request body, or ToolArgumentError."""
    try:
        request = json.loads(body)
    except ValueError:
        raise ToolArgumentError("the request body is not JSON; expected the function_call "
                                "format with an \"arguments\" string") from None
    if not isinstance(request, dict) or "arguments" not in request:
        raise ToolArgumentError('the request has no "arguments" field')
    args = request["arguments"]
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            raise ToolArgumentError(f"arguments are not valid JSON ({exc.msg} at char "
                                    f"{exc.pos}). {USAGE[tool]}") from None
    if not isinstance(args, dict):
        raise ToolArgumentError(f"arguments must be a JSON object, got "
                                f"{_json_type(args)}. {USAGE[tool]}")
    allowed = {"search": {"query", "top_k"}}.get(tool, {"path"})
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ToolArgumentError(f"unknown argument(s) {', '.join(unknown)}. {USAGE[tool]}")
    return args


def _string(args: dict, key: str, tool: str) -> str:
    if key not in args:
        raise ToolArgumentError(f'missing "{key}". {USAGE[tool]}')
    if not isinstance(args[key], str):
        raise ToolArgumentError(f'"{key}" must be a string, got '
                                f"{_json_type(args[key])}. {USAGE[tool]}")
    return args[key]


def _top_k(args: dict) -> int:
    top_k = args.get("top_k", DEFAULT_TOP_K)
    # bool is an int in Python; true as a count is a mistake worth telling the model about.
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise ToolArgumentError(f'"top_k" must be an integer from 1 to {MAX_TOP_K}, got '
                                f"{json.dumps(top_k)}. {USAGE['search']}")
    return top_k


def _json_type(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number",
            list: "an array", dict: "an object", type(None): "null"}.get(type(value), "a value")


# -- HTTP --------------------------------------------------------------------------------

class _TooLarge(Exception):
    pass


async def _read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():  # chunked bodies have no Content-Length
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(corpus_dir: Path, *, token: str, index: Any = None, cat_max_chars: int = CAT_MAX_CHARS,
               cache_dir: Path | None = None,
               format_hits: Callable[[list], str] | None = None) -> FastAPI:
    """The FastAPI app serving `POST /search|/list|/cat` and `GET /health` (module docstring)."""
    if not token:
        raise ValueError("a bearer token is required")
    tools = FinqaTools(corpus_dir, index=index, cache_dir=cache_dir,
                       cat_max_chars=cat_max_chars, format_hits=format_hits)
    expected = f"Bearer {token}".encode()
    app = FastAPI(title="finqa-lite tools", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tools = tools

    def authorized(request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = f"{scheme.capitalize()} {value.strip()}".encode()
        return hmac.compare_digest(given, expected)

    async def run(tool: str, request: Request) -> Response:
        if not authorized(request):
            return PlainTextResponse(
                "missing or wrong bearer token (Authorization: Bearer <token>)",
                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            body = await _read_capped(request)
        except _TooLarge:
            return PlainTextResponse(f"request body over {MAX_BODY_BYTES} bytes", status_code=413)
        try:
            args = _arguments(body, tool)
            if tool == "search":
                query = _string(args, "query", tool)
                if not query.strip():
                    raise ToolArgumentError(f'"query" is empty. {USAGE[tool]}')
                output = await run_in_threadpool(tools.search, query, _top_k(args))
            else:
                method = tools.list if tool == "list" else tools.cat
                output = await run_in_threadpool(method, _string(args, "path", tool))
        except ToolArgumentError as exc:
            status = 404 if exc.kind == "not_found" else 400
            return PlainTextResponse(str(exc), status_code=status)
        return JSONResponse({"output": output})

    for tool in TOOLS:
        # A GET (the agent's preflight) gets Starlette's 405 without touching auth or body.
        app.add_api_route(f"/{tool}", _endpoint(run, tool), methods=["POST"], name=tool)

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True, "tools": list(TOOLS), "index_ready": tools._index is not None}

    return app


def _endpoint(run, tool: str):
    async def endpoint(request: Request) -> Response:
        return await run(tool, request)
    return endpoint


# -- runner ------------------------------------------------------------------------------

class ToolServer:
    """The app under uvicorn in a background thread on 127.0.0.1; a context manager.

        with ToolServer(corpus_dir, token="s3cret") as server:
            HttpTool("cat", server.url("cat"), headers=server.headers)

    Runs on `agentrft.loopback.LoopbackServer` (port bound first, `start()` returns once it
    answers). `token` defaults to a random one.
    `build_index=True` builds the search index in `start()`, so the first search of a run is
    not the one that waits for it (and a broken index fails the start, not a rollout).
    """

    def __init__(self, corpus_dir: Path, *, token: str | None = None, index: Any = None,
                 cache_dir: Path | None = None, cat_max_chars: int = CAT_MAX_CHARS,
                 format_hits: Callable[[list], str] | None = None, port: int = 0,
                 build_index: bool = False):
        self.token = token or secrets.token_urlsafe(24)
        self.app = create_app(Path(corpus_dir), token=self.token, index=index,
                              cat_max_chars=cat_max_chars, cache_dir=cache_dir,
                              format_hits=format_hits)
        self.port = port
        self.build_index = build_index
        self._runner: LoopbackServer | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, tool: str) -> str:
        return f"http://127.0.0.1:{self.port}/{tool.lstrip('/')}"

    def declarations(self) -> list[dict]:
        """Job-spec tool declarations (`method.reinforcement.tools`) for the three tools."""
        return [{"name": t, "server_url": self.url(t), "headers": self.headers} for t in TOOLS]

    def start(self) -> ToolServer:
        if self.build_index:
            self.app.state.tools.index  # noqa: B018 (the property builds it)
        self._runner = LoopbackServer(self.app, port=self.port, health_path="/health",
                                      name="finqa tool server").start()
        self.port = self._runner.port
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()
            self._runner = None

    def __enter__(self) -> ToolServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.finqa_lite.server",
                                     description="Serve FinQA-lite's search/list/cat tools.")
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--token", help="bearer token (default: a random one, printed)")
    parser.add_argument("--cache-dir", type=Path, help="index cache (default: CORPUS_DIR/../cache)")
    parser.add_argument("--cat-max-chars", type=int, default=CAT_MAX_CHARS)
    parser.add_argument("--lazy-index", action="store_true",
                        help="build the search index on the first search, not at start")
    args = parser.parse_args(argv)
    token = args.token or secrets.token_urlsafe(24)
    try:
        app = create_app(args.corpus_dir, token=token, cat_max_chars=args.cat_max_chars,
                         cache_dir=args.cache_dir)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.lazy_index:
        print("building the search index ...", file=sys.stderr)
        app.state.tools.index  # noqa: B018 (the property builds it)
    base = f"http://{args.host}:{args.port}"
    declarations = [{"name": t, "server_url": f"{base}/{t}",
                     "headers": {"Authorization": f"Bearer {token}"}} for t in TOOLS]
    print(json.dumps({"tools": declarations}, indent=2), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
