"""`agentrft train` prints the reward-hacking alarm on the terminal (and keeps it in the run's
events) when validation reward jumps to near the maximum. The trainer is a fake that reports
the metrics of such a run; the CLI, the alarm and the run directory are the real ones."""

from __future__ import annotations

import json

from agentrft.cli import main
from agentrft.train import loop
from tests.test_train_tiny import make_job


class JumpingTrainer:
    """Reports a baseline eval at 0.40, then a step whose validation reward reads 0.97."""

    def __init__(self, job, out, **kwargs):
        self.total_steps, self.on_step = 2, None
        self.outcome, self.pause_reason = "succeeded", None

    async def run_async(self, resume: bool = False):
        records = [{"step": 0, "valid_reward_mean": 0.40},
                   {"step": 1, "train_reward_mean": 0.5, "rollouts": 8},
                   {"step": 2, "train_reward_mean": 0.9, "valid_reward_mean": 0.97, "rollouts": 8}]
        for m in records:
            self.on_step(loop.StepReport(m["step"], self.total_steps, m))
        return records


def test_train_prints_the_alarm_line_and_logs_the_warning(tmp_path, tiny_model_dir, monkeypatch, capsys):
    make_job(tmp_path, tiny_model_dir, max_steps=2)
    monkeypatch.setattr(loop, "Trainer", JumpingTrainer)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "job.yaml"), "--out", str(run), "--quiet"]) == 0
    printed = capsys.readouterr()
    line = next(l for l in printed.err.splitlines() if l.startswith("warning:"))
    assert "valid_reward_mean jumped from 0.400 to 0.970 at step 2" in line
    assert "validation reward: 0.400 (step 0) -> 0.970 (step 2)" in printed.out
    events = [json.loads(l) for l in (run / "events.jsonl").read_text().splitlines()]
    warning = next(e for e in events if e.get("type") == "warning")
    assert warning["data"]["kind"] == "valid_reward_jump" and warning["data"]["step"] == 2


def test_a_steady_run_prints_no_alarm(tmp_path, tiny_model_dir, monkeypatch, capsys):
    class SteadyTrainer(JumpingTrainer):
        async def run_async(self, resume: bool = False):
            records = [{"step": 0, "valid_reward_mean": 0.40},
                       {"step": 2, "train_reward_mean": 0.6, "valid_reward_mean": 0.55}]
            for m in records:
                self.on_step(loop.StepReport(m["step"], self.total_steps, m))
            return records

    make_job(tmp_path, tiny_model_dir, max_steps=2)
    monkeypatch.setattr(loop, "Trainer", SteadyTrainer)
    assert main(["train", str(tmp_path / "job.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "warning:" not in capsys.readouterr().err
