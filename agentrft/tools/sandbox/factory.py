"""Choosing a sandbox backend by name: "bwrap", "docker", or "auto" (bwrap where it runs,
else a Docker engine where one answers)."""

from __future__ import annotations

from typing import Literal

from agentrft.tools.sandbox.base import SandboxBackend, SandboxError

BackendName = Literal["auto", "bwrap", "docker"]


def make_backend(kind: BackendName = "auto", *, image: str | None = None,
                 expose: tuple[str, ...] = ()) -> SandboxBackend:
    from agentrft.tools.sandbox.bwrap import BwrapBackend
    from agentrft.tools.sandbox.docker import DockerBackend

    if kind == "bwrap":
        return BwrapBackend(expose=expose)
    if kind == "docker":
        return DockerBackend(image=image) if image else DockerBackend()
    bwrap_problem = BwrapBackend.available()
    if bwrap_problem is None:
        return BwrapBackend(expose=expose)
    docker_problem = DockerBackend.available()
    if docker_problem is None:
        return DockerBackend(image=image) if image else DockerBackend()
    raise SandboxError(f"no sandbox backend can run here: bwrap: {bwrap_problem}; "
                       f"docker: {docker_problem}")
