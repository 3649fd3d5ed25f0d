"""The demo's job: the job files validate and the demo fills in data and tool server (its
verdict is tested in test_significance.py)."""

from pathlib import Path

import pytest

from agentrft.cli import main
from agentrft.errors import SpecError
from agentrft.spec import load_job
from examples.finqa_lite.demo import CPU, GPU, QUICK, config, job_spec, run_demo

URLS = {name: f"http://127.0.0.1:9/{name}" for name in ("search", "list", "cat")}


@pytest.mark.parametrize("cfg", [CPU, GPU, QUICK])
def test_demo_job_takes_this_runs_data_and_server(cfg, tmp_path):
    job = job_spec(cfg, tmp_path, URLS, token="t0k")
    assert job.training_file == str(tmp_path / "train.jsonl")
    assert {t.name: t.server_url for t in job.rl.tools} == URLS
    assert all(t.headers == {"Authorization": "Bearer t0k"} for t in job.rl.tools)
    assert job.rl.max_episode_steps == 4  # the verify demonstrations' 2 calls, with room
    assert cfg.task == "verify" and job.hp.turn_penalty > 0  # the efficiency story's task
    assert job.rl.grader["type"] == "multi"


def test_quick_is_smaller_than_the_cpu_default(tmp_path):
    cpu, quick = (job_spec(c, tmp_path, URLS, "t") for c in (CPU, QUICK))
    assert quick.hp.max_steps < cpu.hp.max_steps and QUICK.n_valid < CPU.n_valid


@pytest.mark.parametrize("name", ["job.yaml", "job.gpu.yaml"])
def test_job_files_load_on_their_own(name):
    job = load_job(Path("examples/finqa_lite") / name)
    assert job.training_file.endswith("examples/finqa_lite/data/train.jsonl")


def test_set_overrides_the_jobs_hyperparameters(tmp_path):
    cfg = config(quick=True, overrides={"max_new_tokens": 96, "turn_penalty": 0.1})
    job = job_spec(cfg, tmp_path, URLS, "t")
    assert (job.hp.max_new_tokens, job.hp.turn_penalty) == (96, 0.1)
    assert job.hp.max_steps == QUICK.overrides["max_steps"]  # the quick sizes stay


def test_a_bad_setting_names_its_field_before_anything_is_built(tmp_path, capsys):
    with pytest.raises(SpecError, match=r"hyperparameters\.turn_penalty"):
        run_demo(tmp_path / "demo", quick=True, overrides={"turn_penalty": -1})
    assert not (tmp_path / "demo").exists()
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--set", "bogus=1"]) != 0
    assert "hyperparameters.bogus: unknown key" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not KEY=VALUE
        main(["demo", "--set", "max_new_tokens"])
