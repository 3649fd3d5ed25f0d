"""Per-rollout workspace sandboxes on the real bubblewrap (issue 8, acceptance 1 and 2).

Each test starts real sandboxes (bwrap holder + nsenter per command, as root, with the
per-sandbox uid) and attacks from one while checking the others and the host: rm -rf,
writes outside the workspace, network, a fork bomb, a gigabyte of output, CPU and memory.
Every attack must end as a result the model sees, within the limits, and leave the other
sandboxes and the host as they were. Skipped where bubblewrap cannot run (not root).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
import time

import pytest

from agentrft.sandbox import SandboxError, SandboxLimits
from agentrft.sandbox.bwrap_workspace import BwrapBackend
from agentrft.sandbox.procs import UID_POOL
from agentrft.tools.shell_tools import SandboxPool
from tests.system_parts import needs_system

pytestmark = needs_system("the bwrap sandbox backend", BwrapBackend.available())

LIMITS = SandboxLimits(wall_seconds=8, cpu_seconds=5, max_processes=32,
                       output_bytes=64 << 10, workspace_bytes=32 << 20, tmp_bytes=16 << 20)


def sh(command: str) -> list[str]:
    return ["/bin/sh", "-c", command]


def uid_processes(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
                    pids.append(int(entry))
            except (OSError, KeyError, ValueError):
                pass
    return pids


@pytest.fixture
def source(tmp_path):
    """A small repository on the host, readable by strangers like an installed package."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "core.py").write_text("def answer():\n    return 42\n")
    (repo / "README.md").write_text("demo repo\n")
    for p in (tmp_path, repo, repo / "pkg"):
        p.chmod(0o755)
    return repo


@pytest.fixture
def backend():
    return BwrapBackend()


async def test_workspace_is_a_private_writable_copy(backend, source):
    a, b = await asyncio.gather(backend.create(str(source), LIMITS), backend.create(str(source), LIMITS))
    try:
        r = await a.exec(sh("pwd; cat pkg/core.py; echo changed > pkg/core.py; echo new > new.txt; id -u"))
        assert r.exit_code == 0, r
        lines = r.stdout.splitlines()
        assert lines[0] == "/workspace" and "return 42" in r.stdout
        assert int(lines[-1]) == a.uid and a.uid != b.uid and a.uid != 0
        # files persist between commands of one sandbox ...
        assert (await a.exec(sh("cat pkg/core.py new.txt"))).stdout == "changed\nnew\n"
        # ... and are not seen by the other sandbox, nor written to the host's source
        r = await b.exec(sh("cat pkg/core.py; ls new.txt"))
        assert "return 42" in r.stdout and r.exit_code != 0
        assert (source / "pkg" / "core.py").read_text() == "def answer():\n    return 42\n"
        assert not (source / "new.txt").exists()
        # the host's other directories are not there at all
        r = await b.exec(sh(f"ls {source.parent} /home /root/.ssh /var 2>&1; ls /"))
        assert str(source.parent) not in r.stdout.split("\n")[-2:] and "No such file" in r.stdout
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_rm_rf_everything_leaves_others_and_host_untouched(backend, source, tmp_path):
    host_file = tmp_path / "host-sentinel"
    host_file.write_text("keep me")
    host_file.chmod(0o666)  # even a world-writable host file must survive
    a, b = await asyncio.gather(backend.create(str(source), LIMITS), backend.create(str(source), LIMITS))
    try:
        # rm walks the whole read-only host tree (every .venv on the disk), so it gets room
        # beyond LIMITS: a busy 2-core machine took over 8 s
        walk = dataclasses.replace(LIMITS, wall_seconds=180, cpu_seconds=120)
        r = await a.exec(sh(f"rm -rf --no-preserve-root / {host_file} 2>/dev/null; ls -A /workspace | wc -l"),
                         limits=walk)
        assert r.exit_code == 0 and r.stdout.strip() == "0"  # its own workspace: gone
        assert (await b.exec(sh("cat pkg/core.py"))).stdout == "def answer():\n    return 42\n"
        assert host_file.read_text() == "keep me"
        assert (source / "pkg" / "core.py").exists() and os.path.exists("/usr/bin/env")
        # and the sandbox that did it still works
        assert (await a.exec(sh("echo alive > x && cat x"))).stdout == "alive\n"
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_writes_outside_the_workspace_fail_or_stay_private(backend, source):
    a = await backend.create(str(source), LIMITS)
    marker = f"/tmp/agentrft-escape-{os.getpid()}"
    try:
        for target in ("/etc/agentrft-escape", "/usr/agentrft-escape", "/bin/agentrft-escape"):
            r = await a.exec(sh(f"echo x > {target}"))
            assert r.exit_code != 0 and "Read-only file system" in r.stderr, r
            assert not os.path.exists(target)
        r = await a.exec(sh(f"echo x > {marker} && cat {marker}"))
        assert r.stdout == "x\n"  # a private /tmp ...
        assert not os.path.exists(marker)  # ... that is not the host's
    finally:
        await a.close()


async def test_no_network_not_even_the_hosts_loopback(backend, source):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted = []

    def accept():
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            try:
                accepted.append(listener.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    a = await backend.create(str(source), LIMITS)
    try:
        code = ("import socket,sys\n"
                "for host in ('127.0.0.1', '1.1.1.1'):\n"
                "    try:\n"
                f"        socket.create_connection((host, {port}), timeout=2); print('CONNECTED', host)\n"
                "    except OSError as e: print('BLOCKED', host, e)\n")
        r = await a.exec(["python3", "-c", code])
        assert "CONNECTED" not in r.stdout and r.stdout.count("BLOCKED") == 2, r
        # uncaught, the same connection is a failed command: a tool error the model sees
        r = await a.exec(["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}))"])
        assert r.exit_code == 1 and "ConnectionRefusedError" in r.stderr
    finally:
        await a.close()
        thread.join()
        listener.close()
    assert accepted == []


async def test_fork_bomb_is_contained_and_cleaned_up(backend, source):
    limits = LIMITS.with_(wall_seconds=4)
    a, b = await asyncio.gather(backend.create(str(source), limits), backend.create(str(source), limits))
    try:
        t0 = time.monotonic()
        bomb, other = await asyncio.gather(
            a.exec(sh("bomb() { bomb | bomb & }; bomb; sleep 30")),
            b.exec(sh("sleep 1; echo fine")))
        elapsed = time.monotonic() - t0
        # stopped by the wall clock, or sooner by the cap on its "Cannot fork" messages
        assert bomb.limit in ("wall_seconds", "output_bytes") and bomb.exit_code == -9, bomb
        assert elapsed < limits.wall_seconds + 4, elapsed
        assert other.exit_code == 0 and other.stdout == "fine\n"
        assert uid_processes(a.uid) == []  # nothing of the bomb survives its command
        assert (await a.exec(sh("echo alive"))).stdout == "alive\n"
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_a_gigabyte_of_output_is_cut_at_the_cap(backend, source):
    pool = SandboxPool(backend, str(source), LIMITS)
    from agentrft.tools.base import ToolCallRequest
    from agentrft.tools.shell_tools import ShellTool
    tool = ShellTool("shell", pool)
    try:
        t0 = time.monotonic()
        out = await tool.call(ToolCallRequest("fc_1", "call_1", "shell",
                                              '{"command": "head -c 1000000000 /dev/zero | tr \\"\\\\0\\" x"}',
                                              "trace_big", {}))
        assert time.monotonic() - t0 < 10
        assert out.is_error and "output over the limit" in out.output
        assert len(out.output) <= pool.max_output_chars + 200
    finally:
        await pool.close_all()


async def test_cpu_and_memory_limits(backend, source):
    a = await backend.create(str(source), LIMITS.with_(cpu_seconds=1, memory_bytes=256 << 20))
    try:
        t0 = time.monotonic()
        r = await a.exec(["python3", "-c", "while True: pass"])
        assert r.exit_code is not None and r.exit_code < 0 and r.limit is None, r  # SIGXCPU/SIGKILL
        assert time.monotonic() - t0 < 5
        r = await a.exec(["python3", "-c", "x = bytearray(512 << 20)"])
        assert r.exit_code != 0 and "MemoryError" in r.stderr
        # a full workspace is an error for the command, not for the host
        r = await a.exec(sh("head -c 64000000 /dev/zero > big"))
        assert r.exit_code != 0
    finally:
        await a.close()


async def test_close_leaves_nothing_behind(backend, source):
    a = await backend.create(str(source), LIMITS)
    await a.exec(sh("sleep 100 > /dev/null 2>&1 &"))
    holder = a.holder.pid
    await a.close()
    await a.close()  # idempotent
    assert uid_processes(a.uid) == []
    assert not os.path.exists(f"/proc/{holder}") or open(f"/proc/{holder}/status").read().find("zombie") >= 0
    assert a.uid not in UID_POOL._held  # noqa: SLF001 - the uid is free again
    with pytest.raises(SandboxError):
        await a.exec(sh("true"))


async def test_a_missing_source_is_an_infra_error(backend, tmp_path):
    with pytest.raises(SandboxError, match="not a directory"):
        await backend.create(str(tmp_path / "nope"), LIMITS)


async def test_burst_of_50_sandboxes(backend, source):
    """The bursty start of an RL step: all start, run a command and are cleaned up."""
    n = 50

    async def one(i: int) -> str:
        s = await backend.create(str(source), LIMITS)
        try:
            return (await s.exec(sh(f"echo {i} > mine && cat mine pkg/core.py | head -1"))).stdout
        finally:
            await s.close()

    t0 = time.monotonic()
    outs = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.monotonic() - t0
    assert [o.split("\n")[0] for o in outs] == [str(i) for i in range(n)]
    assert not UID_POOL._held  # noqa: SLF001
    print(f"{n} sandboxes in {elapsed:.1f} s")


async def test_no_free_uid_is_an_infra_error_not_a_hang(source, monkeypatch):
    import agentrft.sandbox.bwrap_workspace as bwrap
    monkeypatch.setattr(bwrap, "START_TIMEOUT_S", 0.5)
    small = BwrapBackend(uids=range(60990, 60991))  # one uid
    first = await small.create(str(source), LIMITS)
    try:
        with pytest.raises(SandboxError, match="no free sandbox uid"):
            await small.create(str(source), LIMITS)
    finally:
        await first.close()
    again = await small.create(str(source), LIMITS)  # freed by close
    await again.close()
