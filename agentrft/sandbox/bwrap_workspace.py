"""`BwrapBackend`: one bubblewrap sandbox per rollout, holding a private writable workspace.

How it works: `create` starts a *holder*, `bwrap … -- sleep infinity`, whose namespaces are
the sandbox: a mount namespace with a size-limited tmpfs at /workspace, its own network, pid,
IPC and UTS namespaces. The workspace starts as a copy of the source directory, made by the
sandbox user from a read-only bind of the source. Each command enters the holder's
namespaces (`nsenter`) and runs through the python graders' launcher
(`agentrft.sandbox.process`), which switches to the sandbox's own unprivileged uid, sets
no_new_privs and the rlimits, then execs it; `supervise` caps its output and wall clock.
`close` kills the holder: the pid namespace dies with every process in it, and the tmpfs
workspace with its mount namespace; nothing is left on the host's disk. The holder also
dies with our process (`--die-with-parent`), so a crashed or cancelled job leaks nothing.

What a sandbox isolates:
- file system: a root built from the system directories only (/usr, /etc, /bin, /sbin,
  /lib*), all read-only, plus the interpreter that runs the launcher (read-only at its own
  path) and `expose` paths; no /home, /root, /work, /srv, /var, /mnt or /opt, so neither
  the job's datasets nor other projects are visible. Writable: /workspace and /tmp, both
  private tmpfs of limited size (`workspace_bytes`, `tmp_bytes`). Another rollout's
  workspace is not reachable at all (it lives in another mount namespace);
- network: none (a network namespace with only its own loopback);
- user: one unprivileged uid per sandbox (60000-60999, shared with the python graders'
  pool and locked per uid across processes), no capabilities, no_new_privs; so
  RLIMIT_NPROC counts this sandbox's processes only and one sandbox cannot signal another;
- processes: its own pid namespace; a command's process group is killed when it ends (or
  hits its wall clock or output cap), and every process of the sandbox's uid once no other
  command of that sandbox is running; everything dies at `close`;
- limits (`SandboxLimits`): CPU seconds, address space, processes and threads, open
  files, file size per command; wall clock; stdout/stderr bytes; tmpfs sizes.

What it does not isolate:
- the kernel (namespaces and rlimits are not a VM; there is no seccomp filter);
- CPU share, disk and memory bandwidth; tmpfs pages count as memory of the host, not of
  the command's address space;
- what any local user may read in the exposed system directories (/etc/passwd, say);
- time: commands see the host's clock.

Needs root (the uid switch and entering the holder's namespaces) and bubblewrap ≥ 0.5;
`BwrapBackend.available()` says why not where it cannot run. Run unprivileged, use the
Docker backend instead.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import sys
import time
from typing import Sequence

from agentrft.sandbox.process import DEFAULT_UIDS, LaunchingSandbox
from agentrft.sandbox.procs import UID_POOL, kill_uid
from agentrft.sandbox.limits import SandboxLimits
from agentrft.sandbox.workspace import (COPY_SOURCE, COPY_TIMEOUT_S, SOURCE, WORKSPACE, ExecResult,
                                        SandboxError, Workspace, WorkspaceBackend)

SYSTEM_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
START_TIMEOUT_S = 30.0
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
       "TMPDIR": "/tmp", "TERM": "dumb", "PYTHONDONTWRITEBYTECODE": "1",
       "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


class BwrapBackend(WorkspaceBackend):
    name, isolates_network = "bwrap", True

    def __init__(self, bwrap: str | None = None, nsenter: str | None = None,
                 uids: range = DEFAULT_UIDS, expose: Sequence[str] = ()):
        """`expose`: extra host paths bound read-only at their own path (tool chains, say)."""
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self.nsenter = nsenter or shutil.which("nsenter") or "nsenter"
        self.setpriv, self.kill = shutil.which("setpriv"), shutil.which("kill")
        self.uids = uids
        self.expose = tuple(os.path.abspath(p) for p in expose)

    @staticmethod
    def available() -> str | None:
        """None when this backend can run here, else why not."""
        if os.geteuid() != 0:
            return "the bwrap sandbox backend needs root (it switches each sandbox to its own uid)"
        for tool in ("bwrap", "nsenter"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed (apt-get install bubblewrap util-linux)"
        return None

    async def create(self, source: str | None, limits: SandboxLimits) -> Workspace:
        if problem := self.available():
            raise SandboxError(problem)
        if source is not None and not os.path.isdir(source):
            raise SandboxError(f"workspace source {source!r} is not a directory")
        try:  # every uid taken (a thousand live sandboxes): fail the rollout rather than hang
            uid = await asyncio.wait_for(UID_POOL.acquire(self.uids), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise SandboxError(f"no free sandbox uid in {self.uids.start}-{self.uids.stop - 1} "
                               f"after {START_TIMEOUT_S:.0f} s: too many live sandboxes") from None
        sandbox = BwrapWorkspace(self, uid, limits)
        try:
            await sandbox._start(source)
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    def holder_args(self, source: str | None, limits: SandboxLimits, info_fd: int) -> list[str]:
        args = [self.bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        args += _system_root()
        args += ["--dev", "/dev", "--proc", "/proc",
                 "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
                 "--perms", "0777", "--size", str(limits.workspace_bytes), "--tmpfs", WORKSPACE]
        # after the /tmp tmpfs, so an interpreter under /tmp (a CI checkout's .venv) stays visible
        for path in (*_interpreter_prefixes(), *self.expose):
            args += ["--ro-bind", path, path]
        if source is not None:
            args += ["--ro-bind", os.path.realpath(source), SOURCE]
        args += ["--chdir", WORKSPACE, "--info-fd", str(info_fd), "--cap-drop", "ALL",
                 # "ready" once the mounts are in place (--info-fd comes before them)
                 "--", "/bin/sh", "-c", "echo ready && exec /bin/sleep infinity"]
        return args


class _Exec(LaunchingSandbox):
    """Runs one command inside a holder's namespaces, as the sandbox's uid."""

    name, isolates_network = "bwrap-workspace", True
    _sweep_on_exit = False  # other commands of the same sandbox may be running; see exec()
    _wrapped = True  # nsenter
    launcher_python = os.path.realpath(sys.executable)

    def __init__(self, nsenter: str, holder_pid: int):
        self.uids = None
        self.nsenter, self.holder_pid = nsenter, holder_pid

    def _command(self, argv, limits, uid, status_fd):
        enter = [self.nsenter, "-t", str(self.holder_pid), "-m", "-p", "-n", "-i", "-u", "-w", "--"]
        return [*enter, *self._launcher(argv, limits, uid, status_fd)], dict(ENV), None


class BwrapWorkspace(Workspace):
    def __init__(self, backend: BwrapBackend, uid: int, limits: SandboxLimits):
        self.backend, self.uid, self.limits = backend, uid, limits
        self.holder: asyncio.subprocess.Process | None = None
        self._exec: _Exec | None = None
        self._running = 0
        self._closed = False
        self.start_time = 0.0  # seconds from create() to a ready workspace

    async def _start(self, source: str | None) -> None:
        t0 = time.monotonic()
        info_r, info_w = os.pipe()
        try:
            try:
                self.holder = await asyncio.create_subprocess_exec(
                    *self.backend.holder_args(source, self.limits, info_w), pass_fds=(info_w,),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                raise SandboxError(f"cannot start bwrap: {exc}") from None
            finally:
                os.close(info_w)
            info = await _read_info(info_r, self.holder)
        finally:
            os.close(info_r)
        try:
            ready = await asyncio.wait_for(self.holder.stdout.readline(), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            ready = b""
        if ready.strip() != b"ready":
            raise SandboxError("bwrap could not set up the sandbox: " + await _stderr(self.holder))
        self._exec = _Exec(self.backend.nsenter, int(info["child-pid"]))
        if source is not None:
            copy = await self.exec(
                ["/bin/sh", "-c", COPY_SOURCE],
                limits=self.limits.with_(wall_seconds=COPY_TIMEOUT_S, cpu_seconds=int(COPY_TIMEOUT_S)))
            if copy.exit_code != 0:
                raise SandboxError(f"cannot copy {source!r} into the workspace (exit "
                                   f"{copy.exit_code}): {copy.stderr.strip()[-500:]}")
        self.start_time = time.monotonic() - t0

    async def exec(self, argv: Sequence[str], *, stdin: bytes = b"",
                   limits: SandboxLimits | None = None) -> ExecResult:
        if self._closed or self._exec is None:
            raise SandboxError("the sandbox is closed")
        if self.holder is not None and self.holder.returncode is not None:
            raise SandboxError(f"the sandbox died (bwrap exit status {self.holder.returncode})")
        limits = limits or self.limits
        argv = list(argv)
        if argv and not argv[0].startswith("/"):
            argv = ["/usr/bin/env", "--", *argv]  # a name on PATH; "not found" is then its exit 127
        self._running += 1
        try:
            result = await self._exec.run_as(self.uid, argv, stdin, limits.command_limits(),
                                             kill_uid_after=False)
        finally:
            self._running -= 1
            if self._running == 0 and not self._closed:
                await self._kill_all()  # what the commands left running (background jobs, setsid)
        if not result.started:
            raise SandboxError("cannot run a command in the sandbox: "
                               + result.stderr.decode(errors="replace").strip()[-500:])
        return ExecResult(result.exit_code, result.stdout.decode(errors="replace"),
                          result.stderr.decode(errors="replace"), result.limit, result.wall_time)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        holder = self.holder
        if holder is not None:
            try:
                os.killpg(holder.pid, signal.SIGKILL)  # bwrap; its pid namespace dies with it
            except (ProcessLookupError, PermissionError):
                pass
            try:
                await asyncio.wait_for(holder.wait(), 10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        await self._kill_all()  # nothing should be left once the pid namespace is gone
        UID_POOL.release(self.uid)

    async def _kill_all(self) -> None:
        """SIGKILL every process of the sandbox's uid. `kill -9 -1` run *as* that uid reaches
        exactly those, without scanning /proc (which costs O(processes on the host) per call,
        too much with hundreds of sandboxes); repeated until nothing is left to kill, because
        a fork bomb refills while kill walks the process list."""
        if self.backend.setpriv is None or self.backend.kill is None:
            kill_uid(self.uid)
            return
        for _ in range(100):
            proc = await asyncio.create_subprocess_exec(
                self.backend.setpriv, f"--reuid={self.uid}", f"--regid={self.uid}",
                "--clear-groups", "--", self.backend.kill, "-9", "-1",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
            if proc.returncode != 0:  # kill -1 exits 1, silently, when it found nothing to kill
                if err.strip():  # setpriv or kill failed for another reason: the slow way
                    kill_uid(self.uid)
                return


async def _read_info(fd: int, holder: asyncio.subprocess.Process) -> dict:
    """bwrap's --info-fd JSON (it holds the pid to enter), or SandboxError with bwrap's stderr."""
    os.set_blocking(fd, False)
    buf = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            chunk = None
        if chunk:
            buf += chunk
            try:
                return json.loads(buf)
            except ValueError:
                continue
        if chunk == b"" or holder.returncode is not None:  # bwrap exited before it was ready
            raise SandboxError("bwrap could not start the sandbox: " + await _stderr(holder))
        await asyncio.sleep(0.002)
    raise SandboxError(f"bwrap did not start within {START_TIMEOUT_S:.0f} s")


async def _stderr(holder: asyncio.subprocess.Process) -> str:
    if holder.stderr is None:
        return "no message"
    try:
        err = await asyncio.wait_for(holder.stderr.read(4000), 2)
    except asyncio.TimeoutError:
        err = b""
    return err.decode(errors="replace").strip() or "no message"


@functools.lru_cache(maxsize=1)
def _system_root() -> tuple[str, ...]:
    """bwrap args for a root holding only the system directories, read-only (symlinks such as
    /bin -> usr/bin on merged-/usr systems are recreated as symlinks)."""
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return tuple(args)


@functools.lru_cache(maxsize=1)
def _interpreter_prefixes() -> tuple[str, ...]:
    """The interpreter's base prefix (and venv), where outside the system directories."""
    out = []
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        if not any(prefix == f"/{d}" or prefix.startswith(f"/{d}/") for d in SYSTEM_DIRS):
            out.append(prefix)
    return tuple(out)
