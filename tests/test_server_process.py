"""`agentrft server` as an operator runs it, in a subprocess: the worker supervisor (a killed
worker comes back and finishes its job; `--workers 2` trains two jobs at once), loopback
binding without a key, and which isolation it says is in force for python grader code,
refusing that code where bubblewrap is missing unless the operator opts in."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path

import httpx
from openai import OpenAI

from agentrft.sandbox.process import bwrap_problem
from tests.serving_fixtures import free_port
from tests.system_parts import needs_system
from tests.test_server_sdk import KEY, Server, create, dataset, wait_for  # noqa: F401 (fixture)

PYTHON_GRADER = {"type": "python", "name": "g",
                 "source": "def grade(sample, item):\n    return 0.75\n"}


def client_for(server: Server, key: str = KEY) -> OpenAI:
    return OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=key, max_retries=0)


def upload(client: OpenAI, dataset: Path) -> list[str]:
    return [client.files.create(file=open(dataset / n, "rb"), purpose="fine-tune").id
            for n in ("train.jsonl", "valid.jsonl")]


def worker_pid(data: Path, job_id: str) -> int | None:
    db = sqlite3.connect(data / "agentrft.sqlite")
    try:
        return db.execute("SELECT worker_pid FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    finally:
        db.close()


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_is_restarted_and_finishes_its_job(tmp_path, dataset, tiny_model_dir):
    data = tmp_path / "data"
    server = Server(data, free_port())
    try:
        client = client_for(server)
        job = create(client, tiny_model_dir, upload(client, dataset), steps=6, eval_interval=2)
        wait_until(lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data, 180,
                   "a first checkpoint")
        first = worker_pid(data, job.id)
        os.kill(first, signal.SIGKILL)  # the API process stays up; its supervisor restarts it
        done = wait_for(client, job.id, ("succeeded", "failed"))
        assert done.status == "succeeded", done.error
        assert worker_pid(data, job.id) not in (None, first)
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
        assert any("worker restarted" in m for m in messages), messages
        assert "restarting" in server.log.read_text()
    finally:
        server.stop()


def test_two_workers_train_two_jobs_at_once(tmp_path, dataset, tiny_model_dir):
    data = tmp_path / "data"
    server = Server(data, free_port(), "--workers", "2")
    try:
        client = client_for(server)
        files = upload(client, dataset)
        jobs = [create(client, tiny_model_dir, files, steps=40, eval_interval=40) for _ in range(2)]

        def both_running():
            return all(client.fine_tuning.jobs.retrieve(j.id).status == "running" for j in jobs)

        wait_until(both_running, 120, "both jobs running at once")
        pids = {worker_pid(data, j.id) for j in jobs}
        assert len(pids) == 2 and None not in pids  # one worker process each
        for j in jobs:
            client.fine_tuning.jobs.cancel(j.id)
        for j in jobs:
            assert wait_for(client, j.id, ("cancelled",)).status == "cancelled"
    finally:
        server.stop()


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) with a socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_without_a_key_it_binds_to_loopback_whatever_host_says(tmp_path):
    port = free_port()
    server = Server(tmp_path / "data", port, "--host", "0.0.0.0", api_key=None)
    try:
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, not 0.0.0.0
        assert "binding to 127.0.0.1 instead of 0.0.0.0" in server.log.read_text()
        reply = httpx.get(f"http://127.0.0.1:{port}/v1/fine_tuning/jobs", timeout=10)
        assert reply.status_code == 200  # no key needed on loopback
    finally:
        server.stop()


def env_without_bwrap() -> dict[str, str]:
    """This environment with a PATH where no `bwrap` can be found (the interpreter's own
    folder only): a machine without bubblewrap, as far as agentrft can tell."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTRFT_ALLOW_UNSANDBOXED_CODE"}
    env["PATH"] = os.path.dirname(sys.executable)
    assert not os.path.exists(os.path.join(env["PATH"], "bwrap"))
    return env


def run_python_grader(port: int) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/v1/fine_tuning/alpha/graders/run",
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                      json={"grader": PYTHON_GRADER, "item": {}, "model_sample": "x"})


def test_without_bubblewrap_python_graders_are_refused_unless_the_operator_opts_in(tmp_path):
    server = Server(tmp_path / "a", free_port(), env=env_without_bwrap())
    try:
        assert "python graders: refused (bubblewrap (bwrap) is not installed" in server.log.read_text()
        reply = run_python_grader(server.port)
        assert reply.status_code == 400, reply.text
        message = reply.json()["error"]["message"]
        assert "need a sandbox" in message and "AGENTRFT_ALLOW_UNSANDBOXED_CODE=1" in message
    finally:
        server.stop()

    server = Server(tmp_path / "b", free_port(), "--allow-unsandboxed-code", env=env_without_bwrap())
    try:
        assert "python graders: NOT ISOLATED" in server.log.read_text()
        reply = run_python_grader(server.port)
        assert reply.status_code == 200, reply.text
        assert reply.json()["reward"] == 0.75
    finally:
        server.stop()


@needs_system("bubblewrap", bwrap_problem(shutil.which("bwrap")))
def test_with_bubblewrap_the_server_says_so_and_grades(tmp_path):
    server = Server(tmp_path / "data", free_port())
    try:
        log = server.log.read_text()
        assert "python graders: bubblewrap (no network" in log, log
        assert "shell tools: bubblewrap workspaces" in log
        assert run_python_grader(server.port).json()["reward"] == 0.75
    finally:
        server.stop()
