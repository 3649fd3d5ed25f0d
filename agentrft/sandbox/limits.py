"""`SandboxLimits`: the one limits record of every sandbox, one-shot or workspace.

A one-shot run (`agentrft.sandbox.process`, the python graders) applies them as rlimits of
the command plus a wall clock and output caps; its scratch /tmp is `tmp_bytes`, which is also
the largest file it may write (`workspace_bytes` does not apply: it has no workspace). A
workspace (`agentrft.sandbox.workspace`) applies the same per command (`command_limits()`:
the largest file is then the larger of the workspace and /tmp) and sizes its two tmpfs.

The defaults are a shell command's in a workspace (what a job's `sandbox.limits` declares when
it says nothing); `PYTHON_GRADER_LIMITS` are a `python` grader's, which gets more time and memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30       # address space
    max_processes: int = 64           # processes + threads of the run (of the whole workspace)
    wall_seconds: float = 30.0
    output_bytes: int = 256 << 10     # per stream (stdout, stderr); more and the command is killed
    open_files: int = 256
    workspace_bytes: int = 256 << 20  # a workspace's tmpfs; unused by one-shot runs
    tmp_bytes: int = 64 << 20         # the scratch /tmp tmpfs; a one-shot run's largest file too

    def rlimits(self) -> list[tuple[str, tuple[int, int]]]:
        cpu = max(1, int(self.cpu_seconds))
        return [("RLIMIT_CPU", (cpu, cpu + 1)), ("RLIMIT_AS", (self.memory_bytes,) * 2),
                ("RLIMIT_NPROC", (self.max_processes,) * 2),
                ("RLIMIT_FSIZE", (self.tmp_bytes,) * 2),
                ("RLIMIT_NOFILE", (self.open_files,) * 2), ("RLIMIT_CORE", (0, 0))]

    def command_limits(self) -> "SandboxLimits":
        """The limits one command of a workspace runs with: the largest file it may write is
        the workspace size (RLIMIT_FSIZE) when that is larger than /tmp."""
        return replace(self, tmp_bytes=max(self.workspace_bytes, self.tmp_bytes))

    def with_(self, **changes) -> "SandboxLimits":
        return replace(self, **changes)


PYTHON_GRADER_LIMITS = SandboxLimits(cpu_seconds=120, memory_bytes=2 * 1024**3, wall_seconds=150.0,
                                     output_bytes=1 << 20)
