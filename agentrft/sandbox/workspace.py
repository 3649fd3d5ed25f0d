"""The `Workspace` protocol: one isolated, writable workspace per rollout for shell-like tools.

A `WorkspaceBackend` creates workspaces; a `Workspace` runs commands in it (mounted at
`/workspace`, the working directory of every command) until it is closed. Each command
runs with `SandboxLimits`, and whatever it leaves running is killed when it ends, so one
command cannot slow down the next. Files persist between the commands of one sandbox and
vanish when it is closed. Backends: `agentrft.sandbox.bwrap_workspace` (bubblewrap, the
default) and `agentrft.sandbox.docker_workspace` (one container per workspace).

(`agentrft.sandbox.process.ProcessSandbox` is the other, one-shot kind: run one command, no
workspace; python graders use it. The bubblewrap workspace backend reuses its launcher and
supervision.)

Outcomes: a command's own failure (non-zero exit, a limit hit) is an `ExecResult`, shown to
the model; a sandbox that cannot start or dies raises `SandboxError`, an infrastructure
failure that discards the rollout.

Example::

    backend = BwrapBackend()
    sandbox = await backend.create("/path/to/repo", SandboxLimits(wall_seconds=10))
    try:
        result = await sandbox.exec(["/bin/sh", "-c", "grep -rl TODO ."])
        print(result.exit_code, result.stdout)
    finally:
        await sandbox.close()

A fake for tests::

    class FakeWorkspace(Workspace):
        async def exec(self, argv, *, stdin=b"", limits=None):
            return ExecResult(0, "", "", None, 0.0)
        async def close(self):
            pass
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

from agentrft.errors import SandboxError
from agentrft.sandbox.limits import SandboxLimits

__all__ = ["WORKSPACE", "ExecResult", "SandboxError", "Workspace", "WorkspaceBackend"]

WORKSPACE = "/workspace"
SOURCE = "/.source"  # where a backend binds the workspace source read-only inside
# run by the sandbox user when a sandbox starts: /workspace becomes a copy of the source
COPY_SOURCE = f"find {SOURCE} -mindepth 1 -maxdepth 1 -exec cp -a -t {WORKSPACE} {{}} +"
COPY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # negative: killed by that signal; None: never ran
    stdout: str  # decoded as UTF-8 with replacement characters
    stderr: str
    limit: str | None  # "wall_seconds" or "output_bytes" when the sandbox ended the command
    wall_time: float


class Workspace(abc.ABC):
    """One live workspace. `exec` may be called concurrently (parallel tool calls)."""

    workspace: str = WORKSPACE

    @abc.abstractmethod
    async def exec(self, argv: Sequence[str], *, stdin: bytes = b"",
                   limits: SandboxLimits | None = None) -> ExecResult:
        """Run argv (argv[0] an absolute path or a name on PATH) in the workspace."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Kill everything in the sandbox and delete the workspace. Idempotent."""


class WorkspaceBackend(abc.ABC):
    """Creates sandboxes. `isolates_network` says whether commands can reach any network."""

    name: str
    isolates_network: bool = True

    @abc.abstractmethod
    async def create(self, source: str | None, limits: SandboxLimits) -> Workspace:
        """A new sandbox whose workspace starts as a copy of directory `source` (empty if
        None). Raises SandboxError if it cannot start."""

    async def aclose(self) -> None:
        """Release what the backend holds (not the sandboxes: close those)."""
