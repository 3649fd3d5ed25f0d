"""`DockerBackend`: each sandbox is a Docker container, for hosts with a Docker engine
(a laptop without root, or where a team already runs its tools in containers).

`create` runs `docker run -d` with the image's `sleep infinity` as the container's process,
then copies the source (bound read-only at /.source) into /workspace as the sandbox user;
each command is a `docker exec`, wrapped in `timeout -s KILL` because killing the docker
client does not stop a process inside the container; `close` is `docker rm -f`.

What a container isolates (Docker's defaults plus these flags):
- network: `--network none`;
- file system: the image's root, read-only (`--read-only`); writable /workspace and /tmp
  tmpfs of limited size; nothing of the host but the source, read-only;
- user: `--user` (default 65534, nobody), `--cap-drop ALL`, no-new-privileges;
- processes and memory: `--pids-limit`, `--memory` (a cgroup limit: page cache and tmpfs
  count too, unlike the bwrap backend's address-space limit), ulimits for CPU seconds,
  open files and file size; wall clock and output caps per command as in bwrap.

What it does not isolate: the kernel (shared with the host, as with bwrap); and the image is
the team's choice: its tools are what the model can run. Needs `timeout`, `sh`, `find` and
`cp` in the image (any Debian- or Alpine-based one has them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import replace
from typing import Sequence

from agentrft.sandbox.procs import supervise
from agentrft.sandbox.limits import SandboxLimits
from agentrft.sandbox.workspace import (COPY_SOURCE, COPY_TIMEOUT_S, SOURCE, WORKSPACE, ExecResult,
                                        SandboxError, Workspace, WorkspaceBackend)


class DockerBackend(WorkspaceBackend):
    name, isolates_network = "docker", True

    def __init__(self, image: str = "python:3.11-slim", docker: str | None = None,
                 user: str = "65534:65534"):
        self.image, self.user = image, user
        self.docker = docker or shutil.which("docker") or "docker"

    @staticmethod
    def available(docker: str | None = None) -> str | None:
        """None when a Docker engine answers here, else why not."""
        exe = docker or shutil.which("docker")
        if exe is None:
            return "the docker client is not installed"
        try:
            proc = subprocess.run([exe, "info", "--format", "{{.ServerVersion}}"],
                                  capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"docker info failed: {exc}"
        if proc.returncode != 0:
            return "no Docker engine answers: " + proc.stderr.decode(errors="replace").strip()[-300:]
        return None

    def run_args(self, name: str, source: str | None, limits: SandboxLimits) -> list[str]:
        uid = self.user.split(":")[0]
        args = [self.docker, "run", "-d", "--rm", "--name", name, "--network", "none",
                "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--pids-limit", str(limits.max_processes),
                "--memory", str(limits.memory_bytes), "--memory-swap", str(limits.memory_bytes),
                "--ulimit", f"cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
                "--ulimit", f"nofile={limits.open_files}:{limits.open_files}",
                "--ulimit", f"fsize={limits.workspace_bytes}:{limits.workspace_bytes}",
                "--tmpfs", f"{WORKSPACE}:rw,exec,size={limits.workspace_bytes},mode=0755,uid={uid}",
                "--tmpfs", f"/tmp:rw,size={limits.tmp_bytes},mode=1777",
                "--user", self.user, "--workdir", WORKSPACE, "--label", "agentrft.sandbox=1"]
        if source is not None:
            args += ["--volume", f"{os.path.realpath(source)}:{SOURCE}:ro"]
        return [*args, self.image, "sleep", "infinity"]

    async def create(self, source: str | None, limits: SandboxLimits) -> Workspace:
        if source is not None and not os.path.isdir(source):
            raise SandboxError(f"workspace source {source!r} is not a directory")
        name = f"agentrft-sbx-{uuid.uuid4().hex[:16]}"
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *self.run_args(name, source, limits), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise SandboxError("docker run failed: " + err.decode(errors="replace").strip()[-500:])
        sandbox = DockerWorkspace(self, name, limits)
        try:
            if source is not None:
                copy = await sandbox.exec(
                    ["sh", "-c", COPY_SOURCE],
                    limits=limits.with_(wall_seconds=COPY_TIMEOUT_S))
                if copy.exit_code != 0:
                    raise SandboxError(f"cannot copy {source!r} into the workspace: "
                                       f"{copy.stderr.strip()[-500:]}")
        except BaseException:
            await sandbox.close()
            raise
        sandbox.start_time = time.monotonic() - t0
        return sandbox


class DockerWorkspace(Workspace):
    def __init__(self, backend: DockerBackend, name: str, limits: SandboxLimits):
        self.backend, self.name, self.limits = backend, name, limits
        self.start_time = 0.0
        self._running = 0
        self._closed = False

    async def exec(self, argv: Sequence[str], *, stdin: bytes = b"",
                   limits: SandboxLimits | None = None) -> ExecResult:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        limits = limits or self.limits
        wall = max(1, int(limits.wall_seconds))
        cmd = [self.backend.docker, "exec", "-i", "--workdir", WORKSPACE, self.name,
               "timeout", "-s", "KILL", str(wall), *argv]
        self._running += 1
        t0 = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
            # Our own clock a little longer than timeout's, for a stuck docker client.
            code, out, err, limit = await supervise(
                proc, stdin, replace(limits.command_limits(), wall_seconds=wall + 5), None)
        finally:
            self._running -= 1
        if self._running == 0 and not self._closed:
            await self._sweep()
        text = err.decode(errors="replace")
        if code in (125, 126, 127) and ("No such container" in text or "is not running" in text):
            raise SandboxError(f"the sandbox container {self.name} is gone: {text.strip()[-300:]}")
        if code == 137 and limit is None:  # timeout -s KILL
            code, limit = -9, "wall_seconds"
        return ExecResult(code, out.decode(errors="replace"), text, limit, time.monotonic() - t0)

    async def _sweep(self) -> None:
        """Kill what the commands left running (kill -1 spares pid 1, the container's sleep)."""
        proc = await asyncio.create_subprocess_exec(
            self.backend.docker, "exec", self.name, "kill", "-9", "-1",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        proc = await asyncio.create_subprocess_exec(
            self.backend.docker, "rm", "-f", self.name,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()
