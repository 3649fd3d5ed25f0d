"""Per-rollout sandboxes for shell-like tools: the `Sandbox` protocol and its backends.

    from agentrft.tools.sandbox import WorkspaceLimits, make_backend
    backend = make_backend("auto")          # bwrap where it runs, else docker
"""

from agentrft.tools.sandbox.base import (WORKSPACE, ExecResult, Sandbox, SandboxBackend,
                                         SandboxError, WorkspaceLimits)
from agentrft.tools.sandbox.factory import make_backend

__all__ = ["WORKSPACE", "ExecResult", "Sandbox", "SandboxBackend", "SandboxError",
           "WorkspaceLimits", "make_backend"]
