"""Process plumbing for `agentrft.sandbox.process`: supervising a run, killing what it leaves.

- `supervise`: feed stdin, read stdout/stderr up to the output cap, enforce the wall clock, then
  kill the launcher's process group (and, without a pid namespace, every process of the run's uid);
- `kill_uid`: SIGKILL every live process of one uid, repeating while a fork bomb refills;
- `UID_POOL` (a `UidPool`): the unprivileged uids in use by concurrent runs of this process, each
  reused only after its processes are dead; `uid_exists` skips uids of existing users;
- `read_all`: drain the launcher's non-blocking status pipe.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import pwd
import signal
import tempfile
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentrft.sandbox.limits import SandboxLimits


async def supervise(proc: asyncio.subprocess.Process, stdin: bytes, limits: SandboxLimits,
                    sweep_uid: int | None) -> tuple[int | None, bytes, bytes, str | None]:
    """Feed stdin, read capped output, enforce the wall clock, then kill the process group and
    the processes of `sweep_uid`; (exit code, stdout, stderr, limit hit)."""
    overflow = asyncio.Event()

    async def feed() -> None:
        try:
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it stopped reading: its exit status will say why
        finally:
            proc.stdin.close()

    async def drain(stream: asyncio.StreamReader, buf: bytearray) -> None:
        while chunk := await stream.read(1 << 16):
            room = limits.output_bytes - len(buf)
            buf += chunk[:max(room, 0)]
            if len(chunk) > room:
                overflow.set()  # keep reading (and dropping) so the writer is never stuck

    out, err = bytearray(), bytearray()
    io = [asyncio.ensure_future(feed()), asyncio.ensure_future(drain(proc.stdout, out)),
          asyncio.ensure_future(drain(proc.stderr, err))]
    exited = asyncio.ensure_future(_returncode(proc))
    overflowed = asyncio.ensure_future(overflow.wait())
    try:
        done, _ = await asyncio.wait({exited, overflowed}, timeout=limits.wall_seconds,
                                     return_when=asyncio.FIRST_COMPLETED)
        limit = None
        if exited not in done:
            limit = "output_bytes" if overflowed in done else "wall_seconds"
        _killpg(proc.pid)  # the launcher's group: bwrap (its pid namespace dies with it), leftovers
        code = await exited
        if sweep_uid is not None:
            kill_uid(sweep_uid)  # forked processes that left the group may hold our pipes
        _, pending = await asyncio.wait(io, timeout=2.0)
        if pending:  # something beyond our reach holds a pipe (non-root fallback only)
            proc._transport.close()  # noqa: SLF001 - asyncio has no public way to drop the pipes
        return code, bytes(out), bytes(err), limit
    finally:
        _killpg(proc.pid)
        for task in (*io, exited, overflowed):
            task.cancel()


async def _returncode(proc: asyncio.subprocess.Process) -> int:
    """The exit status as soon as the process exits. (`proc.wait()` on Python 3.11 also waits
    for the pipes to close, which a forked child that outlives the process may hold open.)"""
    delay = 0.002
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.05)  # quick for fast graders, cheap for hundreds of slow ones
    return proc.returncode


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_uid(uid: int) -> None:
    """SIGKILL every live process whose real uid is `uid`; repeat while a fork bomb refills."""
    for _ in range(100):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                zombie = fields["State"].strip().startswith("Z")
                if int(fields["Uid"].split()[0]) == uid and not zombie:
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
            except (OSError, KeyError, ValueError):
                continue  # it exited while we looked
        if not found:
            return
        time.sleep(0.001)


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class UidPool:
    """Uids in use by sandbox runs on this machine. A uid is held with an exclusive lock on a
    file of its own, so two processes (the API's graders endpoint and a training worker, or
    two test runs) never hand out the same uid, and so never kill each other's processes.
    The lock dies with its holder, so a crashed process frees its uids."""

    def __init__(self, lock_dir: str | None = None) -> None:
        self._held: dict[int, int] = {}  # uid -> lock file descriptor
        self._lock = threading.Lock()
        self._dir = lock_dir or os.path.join(tempfile.gettempdir(), "agentrft-sandbox-uids")

    def acquire_nowait(self, uids: range) -> int | None:
        with self._lock:
            os.makedirs(self._dir, mode=0o700, exist_ok=True)
            for uid in uids:
                if uid in self._held or uid_exists(uid):
                    continue
                fd = os.open(os.path.join(self._dir, str(uid)), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._held[uid] = fd
                return uid
        return None

    async def acquire(self, uids: range) -> int:
        while (uid := self.acquire_nowait(uids)) is None:
            await asyncio.sleep(0.05)
        return uid

    def release(self, uid: int) -> None:
        with self._lock:
            fd = self._held.pop(uid, None)
            if fd is not None:
                os.close(fd)  # closing drops the lock


UID_POOL = UidPool()


@functools.lru_cache(maxsize=None)
def uid_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False
