"""`ProcessSandbox`: run one untrusted command with limits: bubblewrap where it works, a plain
subprocess otherwise. The python graders use it; the bubblewrap workspaces reuse its launcher.

`default_sandbox()` picks `BwrapSandbox` when `bwrap` is installed *and* a trial run inside it
succeeds. Otherwise it raises `SandboxUnavailable`, unless the operator opted in to running
untrusted code unisolated (`AGENTRFT_ALLOW_UNSANDBOXED_CODE=1` or `--allow-unsandboxed-code`):
then `SubprocessSandbox`, logged once. `isolation_summary()` is the line servers print at start.

What BwrapSandbox covers:
- network: a network namespace of its own (only its own loopback): no host, LAN or internet,
  no abstract unix sockets of the host;
- file system: `/` bound read-only; a private writable /tmp (tmpfs of `tmp_bytes`; also HOME
  and the working directory); fresh /dev and /proc; /run emptied (system sockets). A directory
  the sandbox user may not enter (root's home, mode 700) is replaced by an empty tmpfs, except
  for the Python interpreter, bound read-only at its own path so `sys.executable` runs;
- user: run as root, the command gets an unprivileged uid of its own (one per concurrent run,
  from `uids`), no capabilities, no_new_privs: file permissions apply to it and RLIMIT_NPROC
  binds (it never binds uid 0, not even root mapped inside a user namespace). What a stranger
  may read on the host it may read too: /etc/passwd, world-readable project files;
- processes: a pid namespace; when the command ends, overruns the wall clock or its output
  cap, the namespace is killed, with every process it forked (setsid or not);
- limits (`SandboxLimits`): CPU seconds (RLIMIT_CPU: SIGXCPU, SIGKILL a second later),
  address space (RLIMIT_AS), processes and threads (RLIMIT_NPROC, counted per run),
  file size (RLIMIT_FSIZE), open files, no core dumps; wall clock; stdout/stderr bytes.

What it does not cover:
- the kernel: namespaces and rlimits are not a VM, and there is no seccomp filter;
- CPU share, disk bandwidth, memory outside the address space (page cache, the /tmp tmpfs);
- unix sockets on the file system outside /run and /tmp that a stranger may write to;
- anything the command reports about itself (a score can be forged by the code that computes it).

SubprocessSandbox (opt-in fallback) covers the same uid switch, rlimits, wall clock and output caps,
gives a private scratch dir (HOME, TMPDIR, working dir), and afterwards kills every process of
the run's uid. It does NOT isolate the network, the file system (anything a stranger may write,
such as the host's /tmp, stays writable) or the process table.

Run as a non-root user there is no uid switch: the command runs as you (bwrap then uses a user
namespace; in the fallback RLIMIT_NPROC counts all your processes, so keep bwrap installed).

How root's interpreter stays reachable: bwrap runs as root *without* a user namespace (so the
uid switch is real), mounts, keeps only CAP_SETUID/CAP_SETGID, and `_LAUNCHER` inside it
switches uid, sets the rlimits and execs the command. In the fallback the launcher opens the
interpreter's prefix while still root and runs Python through /proc/self/fd/N with PYTHONHOME
pointing there (the fd survives the uid switch; the path does not need to be enterable).

Supervising a run (stdin, output caps, wall clock), killing its processes and the pool of
per-run uids live in `agentrft.sandbox.procs`.

Example::

    sandbox = default_sandbox()
    result = await sandbox.run([sys.executable, "-c", "print(2 + 2)"], b"", PYTHON_GRADER_LIMITS)
    assert result.started and result.exit_code == 0 and result.stdout == b"4\\n"
"""

from __future__ import annotations

import abc
import asyncio
import functools
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from agentrft.errors import SandboxUnavailable
from agentrft.sandbox.limits import PYTHON_GRADER_LIMITS, SandboxLimits
from agentrft.sandbox.procs import UID_POOL, kill_uid, read_all, supervise, uid_exists

log = logging.getLogger(__name__)

DEFAULT_UIDS = range(60000, 61000)  # unprivileged uids for runs (skipping any that exist)


@dataclass(frozen=True)
class SandboxResult:
    started: bool             # False: the sandbox itself failed (stderr says why); argv never ran
    exit_code: int | None     # negative: killed by that signal
    stdout: bytes
    stderr: bytes
    limit: str | None = None  # "wall_seconds" or "output_bytes" when the sandbox ended the run
    wall_time: float = 0.0

    @property
    def signal(self) -> int | None:
        return -self.exit_code if self.exit_code is not None and self.exit_code < 0 else None


class ProcessSandbox(abc.ABC):
    """Runs one command with limits; never raises for the command's or its own failure.

    `argv[0]` must be an absolute path; `sys.executable` is always runnable inside. Run Python
    with `-s -P` rather than `-I`: the sandbox controls the environment, and the fallback needs
    PYTHONHOME. A fake for tests::

        class FakeSandbox(ProcessSandbox):
            name, isolates_network = "fake", True
            async def run(self, argv, stdin, limits):
                return SandboxResult(True, 0, b"", b"")
    """

    name: str
    isolates_network: bool

    @abc.abstractmethod
    async def run(self, argv: Sequence[str], stdin: bytes, limits: SandboxLimits) -> SandboxResult:
        ...


# Runs inside the sandbox as the first process (root in bwrap when we are root), then execs argv.
# It reports on the status fd: "L" once it runs, then "E<reason>" if it cannot exec, so the parent
# tells a sandbox that failed to start (a server error) from a command that failed.
_LAUNCHER = r"""
import ctypes, json, os, resource, sys
spec, argv = json.loads(sys.argv[1]), sys.argv[2:]
status = spec["status_fd"]
os.write(status, b"L")
try:
    os.set_inheritable(status, False)
    exe, env = argv[0], dict(os.environ)
    py = spec.get("python")
    if py:
        fd = os.open(py["home"], os.O_PATH | os.O_DIRECTORY)
        os.set_inheritable(fd, True)
        env["PYTHONHOME"] = home = f"/proc/self/fd/{fd}"
        if exe in py["names"]:
            exe = f"{home}/{py['rel']}"
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setresgid(spec["uid"], spec["uid"], spec["uid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    libc = ctypes.CDLL(None, use_errno=True)
    # no_new_privs: setuid binaries cannot raise it; pdeathsig (after the uid switch, which
    # clears it): it dies with its parent (the grading process, or bwrap's init)
    for option, arg in ((38, 1), (1, 9)):  # PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG SIGKILL
        if libc.prctl(option, arg, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl({option}) failed")
    for name, value in spec["rlimits"]:
        resource.setrlimit(getattr(resource, name), tuple(value))
    os.execve(exe, argv, env)
except BaseException as exc:
    os.write(status, f"E{type(exc).__name__}: {exc}".encode())
    os._exit(127)
"""

_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
        # one BLAS/OpenMP thread: threads count against max_processes and share the CPU limit
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class LaunchingSandbox(ProcessSandbox):
    """The run loop the sandboxes share (also `agentrft.sandbox.bwrap_workspace`'s commands in a
    rollout's workspace); subclasses say how the launcher is started."""

    # Without a pid namespace, processes forked by the command may outlive it holding our pipes:
    # kill them (by uid) as soon as it exits, not only after the output is read.
    _sweep_on_exit = True
    # The launcher runs under a wrapper (bwrap, nsenter) that exits with 128 + N when the
    # command was killed by signal N.
    _wrapped = False
    launcher_python = sys.executable  # runs _LAUNCHER; must be reachable inside the sandbox

    def __init__(self, uids: range | None = DEFAULT_UIDS):
        self.uids = uids if os.geteuid() == 0 else None  # only root can switch uid
        if self.uids is not None and all(uid_exists(uid) for uid in self.uids):
            raise ValueError(f"no free uid in {uids}: every one belongs to an existing user")

    @abc.abstractmethod
    def _command(self, argv: list[str], limits: SandboxLimits, uid: int | None,
                 status_fd: int) -> tuple[list[str], dict[str, str], str | None]:
        """(argv to spawn, its environment, working directory)."""

    def _launcher(self, argv: list[str], limits: SandboxLimits, uid: int | None, status_fd: int,
                  python: dict | None = None) -> list[str]:
        spec = {"status_fd": status_fd, "uid": uid, "rlimits": limits.rlimits(), "python": python}
        return [self.launcher_python, "-I", "-S", "-c", _LAUNCHER, json.dumps(spec), *argv]

    def _exit_code(self, code: int | None) -> int | None:
        """The command's exit status as Popen reports it (negative: killed by that signal)."""
        if self._wrapped and code is not None and 128 < code < 128 + 65:
            return 128 - code
        return code

    def _cleanup(self, cwd: str | None) -> None:
        """Remove what `_command` created for the run."""

    async def run(self, argv: Sequence[str], stdin: bytes, limits: SandboxLimits) -> SandboxResult:
        uid = await UID_POOL.acquire(self.uids) if self.uids is not None else None
        try:
            return await self.run_as(uid, argv, stdin, limits)
        finally:
            if uid is not None:
                UID_POOL.release(uid)  # run_as has killed its processes

    async def run_as(self, uid: int | None, argv: Sequence[str], stdin: bytes,
                     limits: SandboxLimits, *, kill_uid_after: bool = True) -> SandboxResult:
        """`run` with a uid the caller holds (and releases): a workspace sandbox keeps one uid
        for all the commands of a rollout, so the files they write stay theirs. Every process
        of `uid` is killed when the command ends, unless `kill_uid_after` is False (the caller
        then sweeps them, e.g. once no other command with that uid runs)."""
        start = time.monotonic()
        status_r, status_w = os.pipe()
        os.set_blocking(status_r, False)
        cwd = None
        try:
            try:
                cmd, env, cwd = self._command(list(argv), limits, uid, status_w)
                proc = await asyncio.create_subprocess_exec(
                    *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd, pass_fds=(status_w,),
                    start_new_session=True)
            except OSError as exc:
                return SandboxResult(False, None, b"", f"cannot start the sandbox: {exc}".encode(),
                                     wall_time=time.monotonic() - start)
            finally:
                os.close(status_w)
            sweep = uid if self._sweep_on_exit else None
            code, out, err, limit = await supervise(proc, stdin, limits, sweep)
            code, status = self._exit_code(code), read_all(status_r)
            if status.startswith(b"LE"):  # the launcher ran but could not exec argv
                err = status[2:] + b"\n" + err
            return SandboxResult(status == b"L", code, out, err, limit, time.monotonic() - start)
        finally:  # also on cancellation: nothing of the run may outlive it
            os.close(status_r)
            if uid is not None and kill_uid_after:
                kill_uid(uid)
            self._cleanup(cwd)

    def probe(self) -> str | None:
        """Run `python -c pass` inside; None when that works, else why it does not."""
        uid = UID_POOL.acquire_nowait(self.uids) if self.uids is not None else None
        status_r, status_w = os.pipe()
        cwd = None
        try:
            cmd, env, cwd = self._command([sys.executable, "-c", "pass"], PYTHON_GRADER_LIMITS, uid,
                                          status_w)
            proc = subprocess.run(cmd, env=env, cwd=cwd, pass_fds=(status_w,), timeout=60,
                                  stdin=subprocess.DEVNULL, capture_output=True)
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)
        finally:
            os.close(status_w)
            os.close(status_r)
            if uid is not None:
                kill_uid(uid)
                UID_POOL.release(uid)
            self._cleanup(cwd)
        if proc.returncode != 0:
            return (proc.stderr.decode(errors="replace").strip()[-500:]
                    or f"exit status {proc.returncode}")
        return None


class BwrapSandbox(LaunchingSandbox):
    name, isolates_network = "bwrap", True
    _sweep_on_exit = False  # its pid namespace dies with it
    _wrapped = True

    def __init__(self, bwrap: str = "bwrap", uids: range | None = DEFAULT_UIDS):
        super().__init__(uids)
        self.bwrap = bwrap

    def _command(self, argv, limits, uid, status_fd):
        args = [self.bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
                "--chdir", "/tmp"]
        if os.path.isdir("/run"):
            args += ["--tmpfs", "/run"]
        if os.geteuid() == 0:
            # No user namespace: it would map the sandbox to uid 0, which RLIMIT_NPROC exempts.
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     *_expose_interpreter()]
        else:
            args += ["--unshare-user"]
        args += list(_unmask_interpreter())
        launcher = self._launcher(argv, limits, uid, status_fd)
        return [*args, "--", *launcher], {**_ENV, "HOME": "/tmp", "TMPDIR": "/tmp"}, None


class SubprocessSandbox(LaunchingSandbox):
    name, isolates_network = "subprocess", False

    def __init__(self, uids: range | None = DEFAULT_UIDS, reason: str = "chosen explicitly"):
        super().__init__(uids)
        self.reason = reason
        _warn_once(f"python graders run without network or file-system isolation ({reason}); "
                   f"install bubblewrap (apt-get install bubblewrap) to isolate them")

    def _command(self, argv, limits, uid, status_fd):
        scratch = tempfile.mkdtemp(prefix="agentrft-sandbox-")
        if uid is not None:
            os.chown(scratch, uid, uid)
        python = _fd_python() if uid is not None else None
        launcher = self._launcher(argv, limits, uid, status_fd, python)
        return launcher, {**_ENV, "HOME": scratch, "TMPDIR": scratch}, scratch

    def _cleanup(self, cwd):
        if cwd:
            shutil.rmtree(cwd, ignore_errors=True)


# The operator's explicit opt-in to running untrusted grader code without isolation: the
# environment (so a server's worker processes inherit it) or `--allow-unsandboxed-code`.
ALLOW_UNSANDBOXED_ENV = "AGENTRFT_ALLOW_UNSANDBOXED_CODE"


def unsandboxed_code_allowed() -> bool:
    return os.environ.get(ALLOW_UNSANDBOXED_ENV, "").strip().lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=None)
def bwrap_problem(bwrap: str | None) -> str | None:
    """Why bubblewrap cannot isolate a run here (None: it can). Probed once per path and
    process: the start-up line, `default_sandbox` and tests all ask."""
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed (apt-get install bubblewrap)"
    if problem := BwrapSandbox(bwrap).probe():
        return f"bwrap cannot start a sandbox: {problem}"
    return None


def choose_sandbox(bwrap: str | None, *, allow_unsandboxed: bool) -> ProcessSandbox:
    """BwrapSandbox where bubblewrap runs; else the plain subprocess only if the operator opted
    in; else `SandboxUnavailable`: untrusted code is never run unisolated by default."""
    problem = bwrap_problem(bwrap)
    if problem is None:
        return BwrapSandbox(bwrap)
    if allow_unsandboxed:
        return SubprocessSandbox(reason=f"{problem}; allowed by {ALLOW_UNSANDBOXED_ENV}")
    raise SandboxUnavailable(
        f"python graders run untrusted code and need a sandbox, but {problem}. To run them "
        f"without network or file-system isolation anyway, set {ALLOW_UNSANDBOXED_ENV}=1 or "
        f"pass --allow-unsandboxed-code", field="grader.type")


_default: ProcessSandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> ProcessSandbox:
    """`choose_sandbox` for this machine; bubblewrap is probed once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = choose_sandbox(shutil.which("bwrap"),
                                      allow_unsandboxed=unsandboxed_code_allowed())
        return _default


def isolation_summary() -> str:
    """One line for start-up logs: what isolates python grader code here, if anything."""
    problem = bwrap_problem(shutil.which("bwrap"))
    if problem is None:
        return "python graders: bubblewrap (no network, read-only file system, own uid, limits)"
    if unsandboxed_code_allowed():
        return (f"python graders: NOT ISOLATED (plain subprocess with limits; no network or "
                f"file-system isolation): {problem}; allowed by {ALLOW_UNSANDBOXED_ENV}")
    return (f"python graders: refused ({problem}); set {ALLOW_UNSANDBOXED_ENV}=1 or pass "
            f"--allow-unsandboxed-code to run them without isolation")


def _first_blocked(path: str) -> str | None:
    """The highest proper ancestor of `path` that a stranger may not enter, if any."""
    current = "/"
    for part in path.strip("/").split("/")[:-1]:
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return current
    return None


@functools.lru_cache(maxsize=1)
def _expose_interpreter() -> tuple[str, ...]:
    """bwrap args hiding unenterable ancestors of the interpreter behind a tmpfs, with the
    interpreter (base prefix and venv) bound read-only at its own path inside."""
    args: list[str] = []
    hidden: set[str] = set()
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        blocked = _first_blocked(prefix)
        if blocked is None:
            continue
        if blocked not in hidden:
            args += ["--tmpfs", blocked]
            hidden.add(blocked)
        args += _bind_below(blocked, prefix)
    return tuple(args)


_MASKED = ("/tmp", "/run")  # replaced by fresh tmpfs mounts inside the sandbox


@functools.lru_cache(maxsize=1)
def _unmask_interpreter() -> tuple[str, ...]:
    """bwrap args binding the interpreter back, read-only, when it lives under a folder the
    sandbox replaces with a tmpfs (a checkout and its .venv under /tmp, as in a CI clone)."""
    args: list[str] = []
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        masked = next((m for m in _MASKED if prefix == m or prefix.startswith(m + "/")), None)
        if masked is None or prefix == masked:
            continue
        args += _bind_below(masked, prefix)
    return tuple(args)


def _bind_below(top: str, prefix: str) -> list[str]:
    """bwrap args binding `prefix` read-only at its own path inside the fresh (tmpfs) folder
    `top`, creating the directories between them."""
    args, current = [], top
    for part in os.path.relpath(prefix, top).split("/")[:-1]:
        current = os.path.join(current, part)
        args += ["--perms", "0755", "--dir", current]
    return args + ["--ro-bind", prefix, prefix]


@functools.lru_cache(maxsize=1)
def _fd_python() -> dict | None:
    """For the fallback: how the launcher reaches an interpreter under an unenterable directory
    (None when a stranger can run it as it is). A venv there loses its site-packages."""
    home = os.path.realpath(sys.base_prefix)
    if _first_blocked(home) is None:
        return None
    exe = os.path.realpath(sys.executable)
    return {"home": home, "rel": os.path.relpath(exe, home), "names": [sys.executable, exe]}


_warned = False


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(message)
