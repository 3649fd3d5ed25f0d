"""The demo's job: the job files validate, the demo fills in data and tool server, and its
verdict compares the gain with the baseline's run-to-run spread."""

from pathlib import Path

import pytest

from agentrft.spec import load_job
from examples.finqa_lite.demo import CPU, GPU, QUICK, job_spec, verdict

URLS = {name: f"http://127.0.0.1:9/{name}" for name in ("search", "list", "cat")}


@pytest.mark.parametrize("cfg", [CPU, GPU, QUICK])
def test_demo_job_takes_this_runs_data_and_server(cfg, tmp_path):
    job = job_spec(cfg, tmp_path, URLS, token="t0k")
    assert job.training_file == str(tmp_path / "train.jsonl")
    assert {t.name: t.server_url for t in job.rl.tools} == URLS
    assert all(t.headers == {"Authorization": "Bearer t0k"} for t in job.rl.tools)
    assert job.rl.max_episode_steps == 10
    assert job.rl.grader["type"] == "multi"


def test_quick_is_smaller_than_the_cpu_default(tmp_path):
    cpu, quick = (job_spec(c, tmp_path, URLS, "t") for c in (CPU, QUICK))
    assert quick.hp.max_steps < cpu.hp.max_steps and QUICK.n_valid < CPU.n_valid


@pytest.mark.parametrize("name", ["job.yaml", "job.gpu.yaml"])
def test_job_files_load_on_their_own(name):
    job = load_job(Path("examples/finqa_lite") / name)
    assert job.training_file.endswith("examples/finqa_lite/data/train.jsonl")


def test_verdict_needs_the_gain_to_exceed_the_spread():
    base = {"mean_reward": 0.20, "run_to_run_std": 0.05, "pass_mean_rewards": [0.15, 0.2, 0.25]}
    assert verdict(base, {"mean_reward": 0.30})["gain_exceeds_spread"] is True
    small = verdict(base, {"mean_reward": 0.24})
    assert small["gain_exceeds_spread"] is False and "does NOT exceed" in small["text"]
    assert verdict({"mean_reward": 0.2, "pass_mean_rewards": [0.2]},
                   {"mean_reward": 0.9})["gain_exceeds_spread"] is False
