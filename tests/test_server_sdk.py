"""The official `openai` SDK against a real `agentrft server` subprocess: files, jobs, events,
checkpoints, pause/resume/cancel, and recovery after the worker is SIGKILLed mid-job."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai import APIConnectionError, OpenAI

from examples.lookup import task
from tests.serving_fixtures import ROOT, free_port, stop_process, wait_healthy

KEY = "sk-test-agentrft"


class Server:
    """`agentrft server` in a subprocess; `args` are extra options (the key is KEY unless
    `api_key` says otherwise; None: no key), `env` replaces the environment."""

    def __init__(self, data_dir: Path, port: int, *args: str, api_key: str | None = KEY,
                 env: dict[str, str] | None = None):
        self.data_dir, self.port = data_dir, port
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / f"server-{port}-{time.time()}.log"
        key = ["--api-key", api_key] if api_key else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentrft.cli", "server", "--port", str(port),
             "--data-dir", str(data_dir), *key, *args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"), env=env)
        if wait_healthy(port, self.proc, timeout_s=60):
            return
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self.proc)


def wait_for(client: OpenAI, job_id: str, statuses, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} stuck in {job.status}")


def method(max_steps: int, eval_interval: int = 1) -> dict:
    return {"type": "reinforcement", "reinforcement": {
        "grader": {"type": "python", "name": "len", "callable": "tests.test_train_tiny:length_grade"},
        "tools": [{"name": "lookup", "python": "examples.lookup.task:lookup"}],
        "max_episode_steps": 2,
        "hyperparameters": {"n_epochs": 10, "batch_size": 2, "eval_interval": eval_interval,
                            "max_new_tokens": 8, "max_steps": max_steps}}}


@pytest.fixture
def dataset(tmp_path):
    train, valid = task.make_rows()
    for name, rows in (("train.jsonl", train[:4]), ("valid.jsonl", valid[:2])):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def create(client, tiny_model_dir, files, steps, eval_interval=1):
    m = method(steps, eval_interval)
    return client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=files[0], validation_file=files[1], seed=3,
        suffix="sdk", method={"type": "reinforcement",
                              "reinforcement": {"grader": m["reinforcement"]["grader"]}},
        extra_body={"method": m})  # tools and max_episode_steps are not typed by the SDK


def metric_steps(client, job_id):
    events = client.fine_tuning.jobs.list_events(job_id, limit=100).data
    return sorted(e.data["step"] for e in events if e.type == "metrics")


def test_sdk_drives_the_whole_job_lifecycle(tmp_path, dataset, tiny_model_dir):
    server = Server(tmp_path / "data", free_port())
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY, max_retries=0)
        files = [client.files.create(file=open(dataset / n, "rb"), purpose="fine-tune").id
                 for n in ("train.jsonl", "valid.jsonl")]
        job = create(client, tiny_model_dir, files, steps=3)
        assert job.status in ("validating_files", "queued", "running")
        done = wait_for(client, job.id, ("succeeded", "failed"))
        assert done.status == "succeeded", done.error
        assert done.fine_tuned_model.endswith(f":sdk:{job.id}")
        assert metric_steps(client, job.id) == [0, 1, 2, 3]
        checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
        assert {c.step_number for c in checkpoints} == {1, 2, 3}
        assert all(c.fine_tuned_model_checkpoint.startswith(done.fine_tuned_model) for c in checkpoints)

        paused = create(client, tiny_model_dir, files, steps=2)
        client.fine_tuning.jobs.pause(paused.id)
        assert wait_for(client, paused.id, ("paused",)).status == "paused"
        client.fine_tuning.jobs.resume(paused.id)
        assert wait_for(client, paused.id, ("succeeded",)).status == "succeeded"

        cancelled = create(client, tiny_model_dir, files, steps=50)
        client.fine_tuning.jobs.cancel(cancelled.id)
        assert wait_for(client, cancelled.id, ("cancelled",)).status == "cancelled"

        listed = client.fine_tuning.jobs.list(limit=10).data
        assert [j.id for j in listed] == [cancelled.id, paused.id, job.id]
        with pytest.raises(Exception) as e:
            OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).fine_tuning.jobs.list()
        assert "401" in str(e.value)
    finally:
        server.stop()


def test_worker_killed_mid_job_resumes_after_restart(tmp_path, dataset, tiny_model_dir):
    data = tmp_path / "data"
    server = Server(data, free_port())
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY, max_retries=0)
        files = [client.files.create(file=open(dataset / n, "rb"), purpose="fine-tune").id
                 for n in ("train.jsonl", "valid.jsonl")]
        job = create(client, tiny_model_dir, files, steps=12, eval_interval=3)
        deadline = time.time() + 180
        while not client.fine_tuning.jobs.checkpoints.list(job.id).data:  # past step 3
            assert time.time() < deadline, "no checkpoint"
            time.sleep(0.2)
        db = sqlite3.connect(data / "agentrft.sqlite")
        pid = db.execute("SELECT worker_pid FROM jobs WHERE id = ?", (job.id,)).fetchone()[0]
        db.close()
        os.kill(pid, signal.SIGKILL)
        server.stop()
        with pytest.raises(APIConnectionError):  # the server is down; restart it on the same data
            client.fine_tuning.jobs.retrieve(job.id)
        server = Server(data, free_port())
        client = OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY, max_retries=0)
        done = wait_for(client, job.id, ("succeeded", "failed"))
        assert done.status == "succeeded", done.error
        assert metric_steps(client, job.id) == list(range(13))  # every step exactly once
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
        assert any("resum" in m for m in messages)
    finally:
        server.stop()


def test_jobs_cli_and_ft_model_names_with_secrets_redacted(tmp_path, dataset, tiny_model_dir,
                                                           capsys, monkeypatch):
    from agentrft.cli import main
    from tests.tool_server import LoopbackToolServer

    data = tmp_path / "data"
    server = Server(data, free_port())
    secret = "Bearer sk-tool-secret-000111"
    try:
        with LoopbackToolServer(lookup={"Ann": "12"}) as tools:
            job_file = tmp_path / "job.yaml"
            m = method(2)
            m["reinforcement"]["tools"] = [{"name": "lookup", "server_url": tools.url("/lookup"),
                                            "headers": {"Authorization": secret}}]
            job_file.write_text(json.dumps({"model": str(tiny_model_dir), "suffix": "cli",
                                            "training_file": str(dataset / "train.jsonl"),
                                            "validation_file": str(dataset / "valid.jsonl"),
                                            "method": m}))
            base = ["jobs", "--base-url", f"http://127.0.0.1:{server.port}/v1", "--api-key", KEY]
            assert main(base + ["create", str(job_file)]) == 0
            job_id = json.loads(capsys.readouterr().out)["id"]
            assert main(base + ["events", job_id, "--follow", "--interval", "0.3"]) == 0
            followed = capsys.readouterr().out
            assert "Step 2/2" in followed and f"job {job_id}: succeeded" in followed
            assert main(base + ["get", job_id]) == 0
            job = json.loads(capsys.readouterr().out)
            assert job["status"] == "succeeded"
            assert main(base + ["checkpoints", job_id]) == 0
            assert json.loads(capsys.readouterr().out)["data"]
            # `ft:` names resolve through the server's data directory
            monkeypatch.setenv("AGENTRFT_DATA_DIR", str(data))
            assert main(["eval", str(job_file), "--model", job["fine_tuned_model"], "--samples", "1",
                         "--out", str(tmp_path / "eval")]) == 0
            assert "model ft:" in capsys.readouterr().out
        # the tool key appears nowhere the server writes: store, events, run directory
        assert secret not in json.dumps(job)
        for path in (data / "runs" / job_id).rglob("*"):
            if path.is_file() and path.suffix in (".json", ".jsonl", ".log"):
                assert secret not in path.read_text(errors="replace"), path
        assert main(base + ["cancel", job_id]) == 2  # already succeeded: a clear error
        assert "400" in capsys.readouterr().err
    finally:
        server.stop()
