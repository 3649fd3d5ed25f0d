"""`shell` and `read_file` per rollout: in-process, through the agent loop, over real HTTP
on loopback, and as declared in a job spec. Sandboxes are real bubblewrap ones."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest
import yaml

from agentrft.errors import SpecError, ToolInfraFailure
from agentrft.loopback import LoopbackServer
from agentrft.rollout.loop import RolloutEnv, run_rollout
from agentrft.spec.dataset import DatasetRow
from agentrft.spec.job import parse_job
from agentrft.tools.base import ToolCallRequest
from agentrft.tools.http import HttpTool
from agentrft.sandbox import SandboxLimits
from agentrft.sandbox.bwrap_workspace import BwrapBackend
from agentrft.sandbox.docker_workspace import DockerBackend
from agentrft.tools.shell_server import create_app
from agentrft.tools.shell_tools import (READ_FILE_SCHEMA, SHELL_SCHEMA, ReadFileTool, SandboxPool,
                                        ShellTool, check_workspaces)
from agentrft.train.metrics import rollout_metrics
from tests.system_parts import needs_system

needs_bwrap = needs_system("the bwrap sandbox backend", BwrapBackend.available())
LIMITS = SandboxLimits(wall_seconds=8, cpu_seconds=5)


@pytest.fixture
def repos(tmp_path):
    """Two tiny repositories, readable by strangers like installed packages."""
    for name, body in (("alpha", "def parse_header(x):\n    return x\n"),
                       ("beta", "class Widget:\n    pass\n")):
        (tmp_path / name / "src").mkdir(parents=True)
        (tmp_path / name / "src" / "main.py").write_text(body)
        (tmp_path / name / "src" / "util.py").write_text("\n".join(f"line {i}" for i in range(1, 21)) + "\n")
        for p in (tmp_path / name, tmp_path / name / "src"):
            p.chmod(0o755)
    tmp_path.chmod(0o755)
    return tmp_path


def request(name: str, trace: str, item: dict, **arguments) -> ToolCallRequest:
    return ToolCallRequest("fc_1", "call_1", name, json.dumps(arguments), trace, item)


@needs_bwrap
async def test_tools_share_one_sandbox_per_trace(repos):
    pool = SandboxPool(BwrapBackend(), str(repos) + "/{{item.repo}}", LIMITS)
    shell, read = ShellTool("shell", pool), ReadFileTool("read_file", pool)
    alpha, beta = {"repo": "alpha"}, {"repo": "beta"}
    try:
        out = await shell.call(request("shell", "t1", alpha, command="grep -rl parse_header ."))
        assert out.output.strip() == "./src/main.py" and not out.is_error
        assert (await shell.call(request("shell", "t1", alpha, command="echo hi > note.txt"))).output == "(no output)"
        assert (await read.call(request("read_file", "t1", alpha, path="note.txt"))).output == "hi"
        r = await read.call(request("read_file", "t1", alpha, path="src/util.py", start_line=3, end_line=5))
        assert r.output == "line 3\nline 4\nline 5"
        # another trace on another repository: its own workspace
        r = await shell.call(request("shell", "t2", beta, command="ls; cat note.txt"))
        assert "src" in r.output and "No such file" in r.output and r.is_error
        assert len(pool) == 2
        # parallel calls of one turn of a new trace start one sandbox, not three
        outs = await asyncio.gather(*(shell.call(request("shell", "t3", alpha, command=f"echo {i}"))
                                      for i in range(3)))
        assert [o.output for o in outs] == ["0", "1", "2"] and len(pool) == 3
        await shell.close_trace("t1")
        await read.close_trace("t1")  # both tools are told; the second is a no-op
        assert len(pool) == 2
    finally:
        await pool.close_all()
    assert len(pool) == 0


@needs_bwrap
async def test_model_mistakes_are_errors_the_model_reads(repos):
    pool = SandboxPool(BwrapBackend(), str(repos / "alpha"), LIMITS, max_output_chars=300)
    shell, read = ShellTool("shell", pool), ReadFileTool("read_file", pool)
    try:
        cases = [
            (read, dict(path="missing.py"), "no such file"),
            (read, dict(path="src"), "is a directory"),
            (read, dict(path="src/main.py", start_line=0), "start_line must be an integer >= 1"),
            (read, dict(path="src/main.py", start_line=5, end_line=2), "end_line is before"),
            (read, dict(path="/etc/shadow"), "Permission denied"),  # the sandbox user's rights
            (shell, dict(command=""), "non-empty"),
            (shell, dict(cmd="ls"), "non-empty"),
            (shell, dict(command="exit 3"), "[exit code 3]"),
            (shell, dict(command="sleep 20"), "time limit"),
        ]
        pool.limits = LIMITS.with_(wall_seconds=1)
        for tool, args, expected in cases:
            out = await tool.call(request(tool.name, "t", {}, **args))
            assert out.is_error and expected in out.output, (args, out)
        # symlinks resolve inside the sandbox: no way to the host's files through them
        await shell.call(request("shell", "t", {}, command="ln -s /root/.bashrc rc"))
        out = await read.call(request("read_file", "t", {}, path="rc"))
        assert out.is_error
        long = await shell.call(request("shell", "t", {}, command="seq 1 5000"))
        assert "characters omitted" in long.output and long.output.endswith("5000")
        assert len(long.output) < 400
    finally:
        await pool.close_all()


@needs_bwrap
async def test_rollout_closes_its_sandbox_and_counts_parallel_calls(repos, tokenizer):
    from agentrft.engines.base import SamplingParams
    from agentrft.models.chat import ChatRenderer
    from agentrft.models.toolcalls import format_call
    from agentrft.engines.batcher import BatchingSampler
    from tests.test_rollout_http import ScriptedEngine

    question = "Which files define parse_header?"
    script = [format_call("shell", {"command": "grep -rl parse_header ."})
              + format_call("read_file", {"path": "src/main.py"}),
              "src/main.py"]
    pool = SandboxPool(BwrapBackend(), str(repos) + "/{{item.repo}}", LIMITS)
    tools = {"shell": ShellTool("shell", pool), "read_file": ReadFileTool("read_file", pool)}
    renderer = ChatRenderer(tokenizer)
    env = RolloutEnv(sampler=BatchingSampler(ScriptedEngine(tokenizer, {question: script})),
                     renderer=renderer, tools=tools,
                     params=SamplingParams(temperature=0, max_new_tokens=64,
                                           stop_token_ids=renderer.stop_token_ids),
                     max_episode_steps=4, max_rollout_tokens=2048)
    row = DatasetRow.model_validate({"messages": [{"role": "user", "content": question}],
                                     "tools": [SHELL_SCHEMA, READ_FILE_SCHEMA], "repo": "alpha"})
    try:
        rollout = await run_rollout(row, 0, env)
        assert rollout.status == "completed" and rollout.final_text == "src/main.py"
        assert [c.output for c in rollout.tool_calls] == ["./src/main.py",
                                                          "def parse_header(x):\n    return x"]
        assert len(pool) == 0  # closed when the rollout ended
        metrics = rollout_metrics([rollout], "train")
        assert metrics["parallel_tool_calls_per_turn"] == 2.0 and metrics["turns_per_rollout"] == 2.0

        # a rollout that fails (its workspace does not exist) is discarded and leaves nothing
        bad = DatasetRow.model_validate({**json.loads(row.model_dump_json()), "repo": "gamma"})
        rollout = await run_rollout(bad, 1, env)
        assert rollout.status == "discarded" and "not a directory" in rollout.discard_reason
        assert len(pool) == 0
    finally:
        await pool.close_all()


@needs_bwrap
async def test_http_endpoints_with_the_wire_format(repos):
    pool = SandboxPool(BwrapBackend(), str(repos) + "/{{item.repo}}", LIMITS)
    # h2 must outlive the calls below even on a loaded machine (1 s was not enough), then go
    app = create_app(pool, token="sekret", idle_seconds=5.0)
    with LoopbackServer(app, lifespan="auto", name="shell tool server") as server:
        auth = {"Authorization": "Bearer sekret"}
        shell = HttpTool("shell", server.url("/shell"), headers=auth, backoff_s=0.01)
        read = HttpTool("read_file", server.url("/read_file"), headers=auth, backoff_s=0.01)
        try:
            await shell.check()
            out = await shell.call(request("shell", "h1", {"repo": "alpha"}, command="echo x > f; ls"))
            assert out.status_code == 200 and out.output.split() == ["f", "src"]
            out = await read.call(request("read_file", "h1", {"repo": "alpha"}, path="f"))
            assert out.output == "x"
            out = await shell.call(request("shell", "h2", {"repo": "alpha"}, command="ls f"))
            assert "No such file" in out.output  # another trace, another workspace
            out = await read.call(request("read_file", "h1", {"repo": "alpha"}, start_line=2))
            assert out.status_code == 400 and out.is_error and "path" in out.output
            with pytest.raises(ToolInfraFailure):  # no such repository: 503, retried, discarded
                await shell.call(request("shell", "h3", {"repo": "gamma"}, command="ls"))
            noauth = HttpTool("shell", server.url("/shell"), backoff_s=0.01)
            out = await noauth.call(request("shell", "h1", {"repo": "alpha"}, command="ls"))
            assert out.status_code == 401
            await noauth.aclose()
            assert httpx.post(server.url("/traces/h1/close"), headers=auth).status_code == 200
            assert httpx.get(server.url("/health")).json()["sandboxes"] == 1
            deadline = time.monotonic() + 20  # h2 is dropped once idle for idle_seconds
            while httpx.get(server.url("/health")).json()["sandboxes"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert httpx.get(server.url("/health")).json()["sandboxes"] == 0
        finally:
            await shell.aclose()
            await read.aclose()


def _job(tools: list[dict], tmp_path: Path) -> dict:
    (tmp_path / "t.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"}],
                                                  "repo": "alpha"}) + "\n")
    return {"model": "m", "training_file": str(tmp_path / "t.jsonl"), "method": {
        "type": "reinforcement", "reinforcement": {
            "grader": {"type": "string_check", "name": "x", "input": "a", "reference": "a",
                       "operation": "eq"}, "tools": tools}}}


def test_spec_sandbox_tools_are_validated_with_field_names(tmp_path, repos):
    job = parse_job(_job([{"name": "shell", "sandbox": {"workspace": f"{repos}/{{{{item.repo}}}}"}},
                          {"name": "read_file", "sandbox": {"workspace": f"{repos}/{{{{item.repo}}}}",
                                                            "limits": {"wall_seconds": 5}}}], tmp_path))
    assert job.rl.tools[1].sandbox.limits.wall_seconds == 5
    bad = [({"name": "shell", "sandbox": {"limits": {"wal_seconds": 5}}},
            "method.reinforcement.tools.0.sandbox.limits.wal_seconds", "unknown key"),
           ({"name": "bash", "sandbox": {}}, "method.reinforcement.tools.0", "sandbox.tool"),
           ({"name": "shell", "sandbox": {"backend": "vm"}},
            "method.reinforcement.tools.0.sandbox.backend", "'auto'"),
           ({"name": "shell", "sandbox": {}, "python": "m:f"}, "method.reinforcement.tools.0",
            "exactly one of")]
    for decl, field, words in bad:
        with pytest.raises(SpecError) as e:
            parse_job(_job([decl], tmp_path))
        assert field.replace(".0.", "[0].").replace("tools.0", "tools[0]") in str(e.value) \
            and words in str(e.value), str(e.value)


def test_job_file_workspaces_resolve_and_every_row_is_checked(tmp_path, repos):
    from agentrft.spec import load_job
    from agentrft.spec.dataset import load_dataset

    data = _job([{"name": "shell", "sandbox": {"workspace": "repos/{{item.repo}}"}}], tmp_path)
    (tmp_path / "repos").symlink_to(repos)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    job = load_job(tmp_path / "job.yaml")
    assert job.rl.tools[0].sandbox.workspace == str(tmp_path / "repos") + "/{{item.repo}}"
    rows = load_dataset(job.training_file)
    check_workspaces(job.rl.tools, [(job.training_file, rows)])  # alpha exists
    (tmp_path / "t.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"}],
                                                  "repo": "nope"}) + "\n")
    with pytest.raises(SpecError, match=r"sandbox.workspace: row 1: workspace .*nope.* is not a directory"):
        check_workspaces(job.rl.tools, [(job.training_file, load_dataset(job.training_file))])


def test_build_tools_shares_a_pool_between_shell_and_read_file(tmp_path, repos):
    from agentrft.train.setup import build_tools

    job = parse_job(_job([{"name": "shell", "sandbox": {"workspace": str(repos / "alpha"), "backend": "bwrap"}},
                          {"name": "read_file", "sandbox": {"workspace": str(repos / "alpha"), "backend": "bwrap"}},
                          {"name": "scratch", "sandbox": {"tool": "shell", "backend": "bwrap"}}], tmp_path))
    tools = build_tools(job.rl.tools)
    assert isinstance(tools["shell"], ShellTool) and isinstance(tools["read_file"], ReadFileTool)
    assert tools["shell"].pool is tools["read_file"].pool
    assert tools["scratch"].pool is not tools["shell"].pool and tools["scratch"].pool.workspace is None


def test_docker_backend_flags():
    """The container is locked down the same way (the engine itself is tested below where one runs)."""
    args = DockerBackend(docker="docker").run_args("n", "/src", LIMITS)
    joined = " ".join(args)
    for flag in ("--network none", "--read-only", "--cap-drop ALL", "no-new-privileges",
                 "--pids-limit 64", "/src:/.source:ro", "--user 65534:65534"):
        assert flag in joined, flag


@pytest.mark.skipif(DockerBackend.available() is not None, reason="no Docker engine here")
async def test_docker_backend_runs_isolated_commands(repos):
    backend = DockerBackend()
    a = await backend.create(str(repos / "alpha"), LIMITS)
    try:
        r = await a.exec(["sh", "-c", "grep -rl parse_header . && rm -rf /workspace/* && ls | wc -l"])
        assert r.stdout.split() == ["./src/main.py", "0"]
        r = await a.exec(["sh", "-c", "echo x > /etc/x"])
        assert r.exit_code != 0
    finally:
        await a.close()


@needs_bwrap
async def test_cancelled_rollout_closes_its_sandbox(repos, tokenizer):
    """A job cancelled mid-rollout (its task cancelled during a slow command) leaves nothing."""
    from agentrft.engines.base import SamplingParams
    from agentrft.models.chat import ChatRenderer
    from agentrft.models.toolcalls import format_call
    from agentrft.engines.batcher import BatchingSampler
    from tests.test_rollout_http import ScriptedEngine

    question = "slow?"
    pool = SandboxPool(BwrapBackend(), str(repos / "alpha"), LIMITS.with_(wall_seconds=60))
    renderer = ChatRenderer(tokenizer)
    env = RolloutEnv(sampler=BatchingSampler(ScriptedEngine(
        tokenizer, {question: [format_call("shell", {"command": "sleep 50"}), "done"]})),
        renderer=renderer, tools={"shell": ShellTool("shell", pool)},
        params=SamplingParams(temperature=0, max_new_tokens=64, stop_token_ids=renderer.stop_token_ids),
        max_episode_steps=2, max_rollout_tokens=2048)
    row = DatasetRow.model_validate({"messages": [{"role": "user", "content": question}]})
    task = asyncio.ensure_future(run_rollout(row, 0, env))
    deadline = time.monotonic() + 20
    while not len(pool) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(pool) == 1
    sandbox = next(iter(pool._sandboxes.values()))  # noqa: SLF001
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert len(pool) == 0 and sandbox._closed  # noqa: SLF001
    from tests.test_sandbox_workspace import uid_processes
    assert uid_processes(sandbox.uid) == []


@needs_bwrap
def test_sandboxes_die_with_a_killed_worker(repos):
    """A worker process killed outright (kill -9) takes its sandboxes with it."""
    import subprocess
    import sys
    code = ("import asyncio, sys\n"
            "from agentrft.sandbox.bwrap_workspace import BwrapBackend\n"
            "from agentrft.sandbox import SandboxLimits\n"
            "async def main():\n"
            f"    s = await BwrapBackend().create({str(repos / 'alpha')!r}, SandboxLimits())\n"
            "    asyncio.ensure_future(s.exec(['/bin/sh', '-c', 'sleep 60']))\n"
            "    await asyncio.sleep(0.5)\n"
            "    print(s.holder.pid, s.uid, flush=True)\n"
            "    await asyncio.sleep(60)\n"
            "asyncio.run(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    holder, uid = map(int, proc.stdout.readline().split())
    from tests.test_sandbox_workspace import uid_processes
    assert uid_processes(uid)  # the sleep runs as the sandbox's uid
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while (uid_processes(uid) or os.path.exists(f"/proc/{holder}/cmdline")
           and open(f"/proc/{holder}/cmdline").read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uid_processes(uid) == []
