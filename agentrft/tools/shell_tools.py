"""`read_file` and `shell`: tools that run in a per-rollout sandbox (a coding agent's tools).

Every rollout gets its own workspace, a copy of a directory (`workspace`, which may name
item fields: `repos/{{item.repo}}`), created on the rollout's first call and keyed by
`trace_id`; both tools of a job share it, so a file written with `shell` is what
`read_file` reads. It is destroyed when the rollout ends (the agent loop calls
`close_trace`), when an HTTP host sees no call for `idle_seconds`, and at shutdown.

    pool = SandboxPool(make_backend("auto"), workspace="repos/{{item.repo}}")
    tools = {"shell": ShellTool("shell", pool), "read_file": ReadFileTool("read_file", pool)}

What the model sees:
- `shell(command)`: `/bin/sh -c command` in /workspace; stdout, then stderr, then
  `[exit code N]` when it failed; a command stopped by a limit says which one. A failed
  command is a tool error (`is_error`), shown to the model;
- `read_file(path, start_line?, end_line?)`: the file's lines (1-based, inclusive), read
  inside the sandbox with the sandbox user's rights (so a symlink cannot reach the host);
- output longer than `max_output_chars` keeps its head and tail with a marker in between.

A sandbox that cannot start or dies raises `SandboxError` (a `ToolInfraFailure`): the
rollout is discarded, never scored 0. See `agentrft.sandbox` for what is isolated.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from agentrft.errors import SpecError, ToolUnreachable
from agentrft.templates import TemplateVariableError, render_template
from agentrft.tools.base import ToolCallRequest, ToolClient, ToolOutcome
from agentrft.sandbox.limits import SandboxLimits
from agentrft.sandbox.workspace import ExecResult, SandboxError, Workspace, WorkspaceBackend

SHELL_SCHEMA = {"type": "function", "function": {
    "name": "shell",
    "description": "Run a shell command (grep, find, ls, cat, sed, ...) in the repository "
                   "checkout, which is the working directory. No network.",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
                   "required": ["command"], "additionalProperties": False},
    "strict": True}}

READ_FILE_SCHEMA = {"type": "function", "function": {
    "name": "read_file",
    "description": "Read a file of the repository, optionally only lines start_line to "
                   "end_line (1-based, inclusive).",
    "parameters": {"type": "object", "properties": {
        "path": {"type": "string"},
        "start_line": {"type": "integer", "minimum": 1},
        "end_line": {"type": "integer", "minimum": 1}},
        "required": ["path"], "additionalProperties": False},
    "strict": False}}

# sed prints the range; a directory or a missing file is reported by the shell, not sed,
# so the model reads one clear line.
_READ_FILE = r'''
f=$1; s=$2; e=$3
if [ -d "$f" ]; then echo "read_file: $f is a directory; try shell with: ls $f" >&2; exit 2; fi
if [ ! -e "$f" ]; then echo "read_file: $f: no such file" >&2; exit 2; fi
case "$f" in -*) f="./$f";; esac
exec sed -n "${s},${e}p" "$f"
'''


def render_workspace(template: str | None, item: dict[str, Any]) -> str | None:
    """The workspace source for a row: `template` with `{{item.x}}` filled in."""
    if template is None:
        return None
    return render_template(template, {}, item)


class SandboxPool:
    """The sandboxes of the rollouts in flight, by trace_id; each made on its first use."""

    def __init__(self, backend: WorkspaceBackend, workspace: str | None = None,
                 limits: SandboxLimits | None = None, max_output_chars: int = 4000):
        self.backend, self.workspace = backend, workspace
        self.limits = limits or SandboxLimits()
        self.max_output_chars = max_output_chars
        self._sandboxes: dict[str, Workspace] = {}
        self._starting: dict[str, asyncio.Task] = {}
        self._last_used: dict[str, float] = {}
        self._checked = False

    def __len__(self) -> int:
        return len(self._sandboxes)

    async def get(self, trace_id: str, item: dict[str, Any]) -> Workspace:
        self._last_used[trace_id] = time.monotonic()
        sandbox = self._sandboxes.get(trace_id)
        if sandbox is not None:
            return sandbox
        task = self._starting.get(trace_id)
        if task is None:  # the first call of the rollout; parallel ones wait for the same start
            task = asyncio.ensure_future(self._create(item))
            self._starting[trace_id] = task
            task.add_done_callback(lambda t, tid=trace_id: self._started(tid, t))
        return await asyncio.shield(task)

    async def _create(self, item: dict[str, Any]) -> Workspace:
        try:
            source = render_workspace(self.workspace, item)
        except TemplateVariableError as e:  # validate_job checks every row before training
            raise SandboxError(f"workspace {self.workspace!r}: {e}") from None
        return await self.backend.create(source, self.limits)

    def _started(self, trace_id: str, task: asyncio.Task) -> None:
        self._starting.pop(trace_id, None)
        if not task.cancelled() and task.exception() is None:
            self._sandboxes[trace_id] = task.result()

    async def close_trace(self, trace_id: str) -> None:
        task = self._starting.get(trace_id)
        if task is not None:  # still starting: let it finish, then close it
            await asyncio.wait({task})
        sandbox = self._sandboxes.pop(trace_id, None)
        self._last_used.pop(trace_id, None)
        if sandbox is not None:
            await sandbox.close()

    async def close_idle(self, max_idle_s: float) -> int:
        """Close sandboxes unused for `max_idle_s` (an HTTP host cannot see a rollout end)."""
        now = time.monotonic()
        idle = [t for t, last in self._last_used.items()
                if now - last > max_idle_s and t in self._sandboxes]
        await asyncio.gather(*(self.close_trace(t) for t in idle))
        return len(idle)

    async def check(self) -> None:
        if self._checked:
            return
        try:
            sandbox = await self.backend.create(None, self.limits)
            try:
                result = await sandbox.exec(["/bin/sh", "-c", "echo ok"])
            finally:
                await sandbox.close()
        except SandboxError as e:
            raise ToolUnreachable(f"sandbox ({self.backend.name}) cannot start: {e}") from None
        if result.stdout.strip() != "ok":
            raise ToolUnreachable(f"sandbox ({self.backend.name}) cannot run a command: "
                                  f"{result.stderr.strip()[-300:]}")
        self._checked = True

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close_trace(t) for t in
                               set(self._sandboxes) | set(self._starting)))
        await self.backend.aclose()

    def format(self, result: ExecResult) -> tuple[str, bool]:
        """What the model sees of a command, and whether it is an error."""
        parts = [result.stdout] if result.stdout else []
        if result.stderr:
            parts.append(result.stderr)
        failed = result.exit_code != 0
        if result.limit == "output_bytes":
            parts.append(f"[stopped: output over the limit of {self.limits.output_bytes} bytes]")
        elif result.limit == "wall_seconds":
            parts.append(f"[stopped: ran over the time limit of {self.limits.wall_seconds:g} s]")
        elif result.exit_code is not None and result.exit_code < 0:
            parts.append(f"[killed by signal {-result.exit_code}; limits: "
                         f"{self.limits.cpu_seconds} CPU s, {self.limits.memory_bytes >> 20} MiB "
                         f"memory, {self.limits.max_processes} processes]")
        elif failed:
            parts.append(f"[exit code {result.exit_code}]")
        text = "\n".join(p.rstrip("\n") for p in parts) or "(no output)"
        return _clip(text, self.max_output_chars), failed or result.limit is not None


class _SandboxTool(ToolClient):
    def __init__(self, name: str, pool: SandboxPool):
        self.name, self.pool = name, pool

    async def call(self, request: ToolCallRequest) -> ToolOutcome:
        start = time.perf_counter()
        try:
            arguments = json.loads(request.arguments)
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
            argv = self.argv(arguments)
        except (ValueError, TypeError, KeyError) as exc:
            return ToolOutcome(f"Error: {exc}", is_error=True, status_code=400,
                               latency_s=time.perf_counter() - start)
        sandbox = await self.pool.get(request.trace_id, request.item)
        output, is_error = self.pool.format(await sandbox.exec(argv))
        return ToolOutcome(output, is_error=is_error, latency_s=time.perf_counter() - start)

    def argv(self, arguments: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    async def check(self) -> None:
        """Preflight: one sandbox starts and runs a command (ToolUnreachable if not)."""
        await self.pool.check()

    async def close_trace(self, trace_id: str) -> None:
        await self.pool.close_trace(trace_id)

    async def aclose(self) -> None:
        await self.pool.close_all()


class ShellTool(_SandboxTool):
    def argv(self, arguments: dict[str, Any]) -> list[str]:
        command = arguments.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ValueError('shell needs a non-empty string "command"')
        return ["/bin/sh", "-c", command]


class ReadFileTool(_SandboxTool):
    def argv(self, arguments: dict[str, Any]) -> list[str]:
        path = arguments.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError('read_file needs a string "path"')
        start, end = arguments.get("start_line"), arguments.get("end_line")
        for key, value in (("start_line", start), ("end_line", end)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise ValueError(f"{key} must be an integer >= 1")
        if start is not None and end is not None and end < start:
            raise ValueError("end_line is before start_line")
        return ["/bin/sh", "-c", _READ_FILE, "read_file", os.path.normpath(path),
                str(start or 1), str(end) if end is not None else "$"]


TOOLS = {"shell": ShellTool, "read_file": ReadFileTool}
SCHEMAS = {"shell": SHELL_SCHEMA, "read_file": READ_FILE_SCHEMA}


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[:limit * 2 // 3], text[-(limit // 3):]
    return f"{head}\n…({len(text) - len(head) - len(tail)} characters omitted)…\n{tail}"


def build_sandbox_tool(decl, pools: dict[str, SandboxPool]) -> ToolClient:
    """The tool for a job's `{name, sandbox: {...}}` declaration (agentrft.spec.job.SandboxDecl);
    `pools` maps share keys to pools, so a job's shell and read_file share sandboxes."""
    from agentrft.sandbox.factory import make_backend

    sb = decl.sandbox
    key = sb.share_key()
    if key not in pools:
        backend = make_backend(sb.backend, image=sb.image, expose=tuple(sb.expose))
        pools[key] = SandboxPool(backend, sb.workspace, SandboxLimits(**sb.limits.model_dump()),
                                 max_output_chars=sb.max_output_chars)
    return TOOLS[decl.sandbox_tool](decl.name, pools[key])


def check_workspaces(decls, datasets: list[tuple[str | None, list]]) -> None:
    """Every row's workspace source exists: a typo fails validation, not a rollout."""
    for i, decl in enumerate(decls):
        if decl.sandbox is None or decl.sandbox.workspace is None:
            continue
        field = f"method.reinforcement.tools[{i}].sandbox.workspace"
        for path, rows in datasets:
            for n, row in enumerate(rows):
                try:
                    source = render_workspace(decl.sandbox.workspace, row.item)
                except TemplateVariableError as e:
                    raise SpecError(f"row {n + 1}: {e}", file=path, field=field) from None
                if not os.path.isdir(source):
                    raise SpecError(f"row {n + 1}: workspace {source!r} is not a directory",
                                    file=path, field=field)
