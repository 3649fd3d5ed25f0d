"""Running untrusted commands with limits: the two kinds of sandbox and their one limits record.

    limits.py            SandboxLimits: CPU, memory, processes, files, wall clock, output, tmpfs
        │
        ├── process.py   ProcessSandbox: one command, no state kept (the `python` graders):
        │   procs.py       bubblewrap, or a plain subprocess where the operator allows it;
        │                  procs.py supervises a run and kills what it leaves behind
        │
        └── workspace.py Workspace: a writable /workspace per rollout, many commands (the
            factory.py     `shell`/`read_file` tools), made by a WorkspaceBackend:
            bwrap_workspace.py   bubblewrap (reuses process.py's launcher), or
            docker_workspace.py  one container per workspace

    from agentrft.sandbox import SandboxLimits, make_backend
    backend = make_backend("auto")          # bwrap where it runs, else docker
    workspace = await backend.create("/path/to/repo", SandboxLimits(wall_seconds=10))

Each module says what it isolates and what it does not.
"""

from agentrft.sandbox.factory import make_backend
from agentrft.sandbox.limits import PYTHON_GRADER_LIMITS, SandboxLimits
from agentrft.sandbox.workspace import (WORKSPACE, ExecResult, SandboxError, Workspace,
                                        WorkspaceBackend)

__all__ = ["PYTHON_GRADER_LIMITS", "WORKSPACE", "ExecResult", "SandboxError", "SandboxLimits",
           "Workspace", "WorkspaceBackend", "make_backend"]
