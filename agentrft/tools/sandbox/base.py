"""The `Sandbox` protocol: one isolated, writable workspace per rollout for shell-like tools.

A `SandboxBackend` creates sandboxes; a `Sandbox` runs commands in its workspace (mounted at
`/workspace`, the working directory of every command) until it is closed. Each command
runs with `WorkspaceLimits`, and whatever it leaves running is killed when it ends, so one
command cannot slow down the next. Files persist between the commands of one sandbox and
vanish when it is closed. Backends: `agentrft.tools.sandbox.bwrap` (bubblewrap, the default)
and `agentrft.tools.sandbox.docker` (one container per sandbox).

(`agentrft.graders.sandbox.Sandbox` is the other, one-shot kind: run one command, no workspace;
python graders use it. The bubblewrap workspace backend reuses its launcher and supervision.)

Outcomes: a command's own failure (non-zero exit, a limit hit) is an `ExecResult`, shown to
the model; a sandbox that cannot start or dies raises `SandboxError`, an infrastructure
failure that discards the rollout.

Example::

    backend = BwrapBackend()
    sandbox = await backend.create("/path/to/repo", WorkspaceLimits(wall_seconds=10))
    try:
        result = await sandbox.exec(["/bin/sh", "-c", "grep -rl TODO ."])
        print(result.exit_code, result.stdout)
    finally:
        await sandbox.close()

A fake for tests::

    class FakeSandbox(Sandbox):
        async def exec(self, argv, *, stdin=b"", limits=None):
            return ExecResult(0, "", "", None, 0.0)
        async def close(self):
            pass
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from typing import Sequence

from agentrft.errors import SandboxError
from agentrft.graders.sandbox import SandboxLimits

__all__ = ["WORKSPACE", "ExecResult", "Sandbox", "SandboxBackend", "SandboxError", "WorkspaceLimits"]

WORKSPACE = "/workspace"
SOURCE = "/.source"  # where a backend binds the workspace source read-only inside
# run by the sandbox user when a sandbox starts: /workspace becomes a copy of the source
COPY_SOURCE = f"find {SOURCE} -mindepth 1 -maxdepth 1 -exec cp -a -t {WORKSPACE} {{}} +"
COPY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WorkspaceLimits:
    """Limits of one sandbox. Per command: CPU seconds, address space, processes and threads
    (of the whole sandbox), open files, wall clock, bytes of stdout and of stderr kept (a
    command that writes more is killed). Per sandbox: the workspace and /tmp sizes (tmpfs)."""

    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    max_processes: int = 64
    wall_seconds: float = 30.0
    output_bytes: int = 256 << 10
    open_files: int = 256
    workspace_bytes: int = 256 << 20
    tmp_bytes: int = 64 << 20

    def command_limits(self) -> SandboxLimits:
        # The largest file a command may write is the workspace size (RLIMIT_FSIZE).
        return SandboxLimits(cpu_seconds=self.cpu_seconds, memory_bytes=self.memory_bytes,
                             max_processes=self.max_processes, wall_seconds=self.wall_seconds,
                             output_bytes=self.output_bytes, open_files=self.open_files,
                             tmp_bytes=max(self.workspace_bytes, self.tmp_bytes))

    def with_(self, **changes) -> "WorkspaceLimits":
        return replace(self, **changes)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # negative: killed by that signal; None: never ran
    stdout: str  # decoded as UTF-8 with replacement characters
    stderr: str
    limit: str | None  # "wall_seconds" or "output_bytes" when the sandbox ended the command
    wall_time: float


class Sandbox(abc.ABC):
    """One live workspace. `exec` may be called concurrently (parallel tool calls)."""

    workspace: str = WORKSPACE

    @abc.abstractmethod
    async def exec(self, argv: Sequence[str], *, stdin: bytes = b"",
                   limits: WorkspaceLimits | None = None) -> ExecResult:
        """Run argv (argv[0] an absolute path or a name on PATH) in the workspace."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Kill everything in the sandbox and delete the workspace. Idempotent."""


class SandboxBackend(abc.ABC):
    """Creates sandboxes. `isolates_network` says whether commands can reach any network."""

    name: str
    isolates_network: bool = True

    @abc.abstractmethod
    async def create(self, source: str | None, limits: WorkspaceLimits) -> Sandbox:
        """A new sandbox whose workspace starts as a copy of directory `source` (empty if
        None). Raises SandboxError if it cannot start."""

    async def aclose(self) -> None:
        """Release what the backend holds (not the sandboxes: close those)."""
