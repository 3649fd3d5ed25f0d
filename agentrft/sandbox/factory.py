"""Choosing a workspace backend by name: "bwrap", "docker", or "auto" (bwrap where it runs,
else a Docker engine where one answers)."""

from __future__ import annotations

from typing import Literal

from agentrft.sandbox.workspace import SandboxError, WorkspaceBackend

BackendName = Literal["auto", "bwrap", "docker"]


def make_backend(kind: BackendName = "auto", *, image: str | None = None,
                 expose: tuple[str, ...] = ()) -> WorkspaceBackend:
    from agentrft.sandbox.bwrap_workspace import BwrapBackend
    from agentrft.sandbox.docker_workspace import DockerBackend

    if kind not in ("bwrap", "docker"):  # "auto"
        bwrap_problem = BwrapBackend.available()
        docker_problem = DockerBackend.available() if bwrap_problem else None
        if bwrap_problem and docker_problem:
            raise SandboxError(f"no sandbox backend can run here: bwrap: {bwrap_problem}; "
                               f"docker: {docker_problem}")
        kind = "docker" if bwrap_problem else "bwrap"
    if kind == "bwrap":
        return BwrapBackend(expose=expose)
    return DockerBackend(image=image) if image else DockerBackend()


def isolation_summary() -> str:
    """One line for start-up logs: which backend isolates shell-like tools here. There is no
    unisolated backend: without one, a job declaring such tools fails its preflight."""
    from agentrft.sandbox.bwrap_workspace import BwrapBackend
    from agentrft.sandbox.docker_workspace import DockerBackend

    if (bwrap := BwrapBackend.available()) is None:
        return "shell tools: bubblewrap workspaces"
    if (docker := DockerBackend.available()) is None:
        return "shell tools: Docker containers"
    return f"shell tools: refused (bwrap: {bwrap}; docker: {docker})"
