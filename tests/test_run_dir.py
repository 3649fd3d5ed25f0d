"""`RunDir`, the one reader of a run directory: what a crash mid-write leaves is read without
an error, and reading creates nothing."""

from __future__ import annotations

import json

from agentrft.analysis.compare import load_eval, read_metrics
from agentrft.analysis.traces import MetricsFile
from agentrft.server.dashboard_runs import RunDirs
from agentrft.train.records import RunDir


def test_reader_creates_nothing_and_finds_nothing(tmp_path):
    run = RunDir.existing(tmp_path / "absent")
    assert run.read_metrics() == [] and run.read_rollouts() == [] and run.read_events() == []
    assert run.spec() == {} and run.summary() == {} and run.checkpoint_states() == []
    assert not (tmp_path / "absent").exists()


def test_a_half_written_last_line_is_skipped_by_every_reader(tmp_path):
    writer = RunDir(tmp_path / "run")
    writer.log_metrics({"step": 0, "valid_reward_mean": 0.25})
    writer.log_metrics({"step": 1, "train_reward_mean": 0.5})
    writer.log_rollout({"step": 0, "phase": "eval", "row_index": 0, "reward": 1.0})
    for path in (writer.metrics, writer.rollouts):
        with path.open("a") as f:
            f.write('{"step": 2, "train_rew')  # the crash
    run = RunDir.existing(tmp_path / "run")
    assert [m["step"] for m in run.read_metrics()] == [0, 1]
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [0, 1]
    assert [m["step"] for m in MetricsFile(tmp_path / "run").read()] == [0, 1]
    assert len(run.read_rollouts()) == 1
    assert load_eval(tmp_path / "run").rows[0].rewards == [1.0]


def test_half_written_json_files_read_as_empty(tmp_path):
    writer = RunDir(tmp_path / "run")
    writer.log_metrics({"step": 0})
    writer.spec_file.write_text('{"model": "bundled:')
    writer.summary_file.write_text("[1, 2]")  # not an object
    state = tmp_path / "run" / "checkpoints" / "step_1" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"step": 1, "metr')
    done = tmp_path / "run" / "checkpoints" / "step_2" / "state.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"step": 2, "metrics": {"valid_reward_mean": 0.5}}))
    run = RunDir.existing(tmp_path / "run")
    assert run.spec() == {} and run.summary() == {}
    assert [s["step"] for _, s in run.checkpoint_states()] == [2]
    dirs = RunDirs(tmp_path)
    assert dirs.ids() == ["run:run"]
    assert dirs.job_object("run:run", tmp_path / "run")["model"] == "?"
    assert [c["step"] for c in dirs.checkpoints(tmp_path / "run")] == [2]
