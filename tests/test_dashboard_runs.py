"""Run dirs written outside the jobs service, on the dashboard: a real `agentrft train` run
and an eval dir under one root, listed and read like jobs; ids cannot leave the root."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from agentrft.cli import main
from agentrft.jobs.store import JobStore
from agentrft.server import create_app
from tests.test_analysis_report import BASELINE


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir):
    from tests.test_train_tiny import make_job

    base = tmp_path_factory.mktemp("runs-root")
    job_dir = tmp_path_factory.mktemp("job")
    make_job(job_dir, tiny_model_dir, max_steps=2)
    assert main(["train", str(job_dir / "job.yaml"), "--out", str(base / "tiny"), "--quiet"]) == 0
    evals = base / "demo" / "baseline"
    evals.mkdir(parents=True)
    evals.joinpath("rollouts.jsonl").write_text(
        "".join(json.dumps({"step": 0, "phase": "eval", **r}) + "\n" for r in BASELINE))
    evals.joinpath("summary.json").write_text(json.dumps({"model": "base-model"}))
    (base / "notes").mkdir()  # no run files: not listed
    (base / "odd:name").mkdir()
    (base / "odd:name" / "metrics.jsonl").write_text("")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "metrics.jsonl").write_text('{"step": 0}\n')
    (base / "escape").symlink_to(outside, target_is_directory=True)
    return base


@pytest.fixture
def client(tmp_path, root):
    store = JobStore(tmp_path / "data")
    with TestClient(create_app(store, run_root=root)) as c:
        yield c
    store.close()


def test_runs_are_listed_beside_jobs(client, root):
    jobs = {j["id"]: j for j in client.get("/dashboard/api/jobs").json()["data"]}
    assert set(jobs) == {"run:tiny", "run:demo:baseline"}
    assert jobs["run:tiny"]["status"] == "succeeded" and jobs["run:tiny"]["step"] == 2
    assert jobs["run:demo:baseline"]["status"] == "succeeded"
    assert jobs["run:demo:baseline"]["model"] == "base-model"


def test_a_cli_run_reads_like_a_job(client, root):
    data = client.get("/dashboard/api/jobs/run:tiny").json()
    metrics = [json.loads(x) for x in (root / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert data["metrics"] == metrics and [m["step"] for m in metrics] == [0, 1, 2]
    assert [c["step"] for c in data["checkpoints"]] == [1, 2]
    assert "valid_reward_mean" in data["checkpoints"][0]["metrics"]
    assert data["events"][0]["message"] == "finished 2 steps"  # newest first
    assert data["tool_calls"]["steps"] == [1, 2] and data["warnings"] == []
    steps = client.get("/dashboard/api/jobs/run:tiny/steps").json()["data"]
    assert [(s["step"], s["phase"]) for s in steps] == [(0, "eval"), (1, "eval"), (1, "train"),
                                                        (2, "eval"), (2, "train")]
    rows = client.get("/dashboard/api/jobs/run:tiny/rows", params={"step": 1}).json()["data"]
    trace = client.get("/dashboard/api/jobs/run:tiny/trace",
                       params={"step": 1, "phase": "train", "row": rows[0]["row_index"]})
    assert len(trace.json()["rollouts"]) == rows[0]["rollouts"] == 4  # the group
    assert client.get("/dashboard/api/jobs/run:tiny/compare").json()["a"] == 0


def test_an_eval_dir_shows_its_traces(client):
    data = client.get("/dashboard/api/jobs/run:demo:baseline").json()
    assert data["metrics"] == [] and data["checkpoints"] == []
    rows = client.get("/dashboard/api/jobs/run:demo:baseline/rows",
                      params={"step": 0, "phase": "eval"}).json()["data"]
    assert [r["row_index"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["mean_reward"] == 0.25  # rewards 0 and 0.5


@pytest.mark.parametrize("run_id", ["run:", "run:..", "run:tiny:..:..", "run:notes", "run:escape",
                                    "run:odd:name", "run:tiny:checkpoints", "run:%2Fetc",
                                    "run:tiny\\..", "run:.:tiny"])
def test_ids_stay_inside_the_root(client, run_id):
    r = client.get(f"/dashboard/api/jobs/{run_id}")
    assert r.status_code == 404, r.text


def test_without_a_root_run_ids_are_unknown(tmp_path):
    store = JobStore(tmp_path / "data")
    with TestClient(create_app(store)) as c:
        assert c.get("/dashboard/api/jobs/run:tiny").status_code == 404
    store.close()
