"""The training loop end to end on a tiny random model: records, checkpoints, resume."""

import asyncio
import json

import pytest
import yaml

from agentrft.train.loop import Trainer
from agentrft.train.readiness import NotReady
from examples.lookup import task
from tests.tiny_jobs import lookup_job

DESIGN_METRICS = {"train_reward_mean", "completion_tokens_mean", "reasoning_tokens_mean",
                  "tool_calls_per_rollout", "tokens_per_tool_call_mean", "tool_latency_mean",
                  "tool_errors", "tool_infra_failures", "discarded_rollouts", "zero_variance_groups",
                  "budget_exceeded_rollouts", "timing.sampling", "timing.grading",
                  "timing.training", "timing.full_iteration"}


def length_grade(sample: dict, item: dict) -> float:
    """Varies with the (random) output, so groups have reward variance to learn from."""
    return (len(sample["output_text"]) % 5) / 4


def make_job(tmp_path, model_dir, *, max_steps, finetune="lora",
             grader="tests.test_train_tiny:length_grade", readiness_gate=True):
    return lookup_job(tmp_path, model_dir, seed=3, grader=grader, batch_size=2, eval_interval=1,
                      eval_samples=1, max_new_tokens=12, max_steps=max_steps, finetune=finetune,
                      micro_batch_size=3, readiness_gate=readiness_gate)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_train_writes_metrics_rollouts_and_checkpoints(tmp_path, tiny_model_dir, finetune):
    run = tmp_path / "run"
    metrics = asyncio.run(Trainer(make_job(tmp_path, tiny_model_dir, max_steps=2, finetune=finetune),
                                  run).run_async())
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert "valid_reward_mean" in metrics[0]  # the baseline eval
    assert DESIGN_METRICS <= set(metrics[1])
    assert metrics[1]["trained_sequences"] > 0 and metrics[1]["grad_norm"] > 0
    rollouts = read_jsonl(run / "rollouts.jsonl")
    assert {r["phase"] for r in rollouts} == {"train", "eval"}
    train_rollouts = [r for r in rollouts if r["phase"] == "train" and r["step"] == 1]
    assert len(train_rollouts) == 2 * 4  # batch_size rows × group size
    assert len({r["trace_id"] for r in rollouts}) == len(rollouts)
    assert all(r["trace_id"].startswith("trace_") and "messages" in r for r in rollouts)
    assert (run / "checkpoints" / "LATEST").read_text() == "step_000002"
    ckpt = run / "checkpoints" / "step_000002"
    weights = "adapter_model.safetensors" if finetune == "lora" else "model.safetensors"
    assert (ckpt / weights).is_file() and (ckpt / "optimizer.pt").is_file()


def test_resume_continues_without_duplicate_or_missing_steps(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    asyncio.run(Trainer(make_job(tmp_path, tiny_model_dir, max_steps=2), run).run_async())
    # A crash after step 2's checkpoint, mid-way through step 3: a torn line and step-3 records.
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 3, "train_reward_mean": 0.5}) + "\n" + '{"step": 4, "tra')
    with (run / "rollouts.jsonl").open("a") as f:
        f.write(json.dumps({"step": 3, "phase": "train", "trace_id": "trace_lost"}) + "\n")

    resumed = asyncio.run(Trainer(make_job(tmp_path, tiny_model_dir, max_steps=4), run)
                          .run_async(resume=True))
    assert [m["step"] for m in resumed] == [0, 1, 2, 3, 4]
    assert "trace_lost" not in (run / "rollouts.jsonl").read_text()
    assert (run / "checkpoints" / "LATEST").read_text() == "step_000004"
    events = read_jsonl(run / "events.jsonl")
    assert any("resumed from step_000002" in e["message"] for e in events)


def test_checkpoint_loads_as_a_model_for_eval(tmp_path, tiny_model_dir):
    from agentrft.train.evaluate import evaluate

    job = make_job(tmp_path, tiny_model_dir, max_steps=1)
    asyncio.run(Trainer(job, tmp_path / "run").run_async())
    summary = evaluate(job, model_ref=str(tmp_path / "run" / "checkpoints" / "step_000001"),
                       samples=2, out_dir=tmp_path / "eval")
    assert summary["rows"] == len(task.make_rows()[1])
    assert 0 <= summary["mean_reward"] <= summary["best_of_n_reward"] <= 1
    assert (tmp_path / "eval" / "summary.json").is_file()


def test_a_step_of_mostly_discarded_rollouts_pauses_with_a_checkpoint(tmp_path, tiny_model_dir):
    from agentrft.errors import TrainingPaused
    from agentrft.train.loop import train

    run = tmp_path / "run"
    job = make_job(tmp_path, tiny_model_dir, max_steps=2, grader="tests.grader_fixtures:buggy")
    trainer = Trainer(job, run)
    asyncio.run(trainer.run_async())  # a pause is an outcome, as a requested one is
    assert trainer.outcome == "paused" and "8 of 8 rollouts discarded" in trainer.pause_reason
    with pytest.raises(TrainingPaused) as e:  # a caller without a paused state gets an error
        train(job, run, resume=True)
    assert "8 of 8 rollouts discarded" in str(e.value) and "--resume" in str(e.value)
    assert (run / "checkpoints" / "LATEST").read_text() == "step_000000"
    assert [m["step"] for m in read_jsonl(run / "metrics.jsonl")] == [0]  # the failed step is redone
    assert read_jsonl(run / "events.jsonl")[-1]["level"] == "error"


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_kl_to_the_starting_model_is_measured_and_grows_from_zero(tmp_path, tiny_model_dir, finetune):
    job = make_job(tmp_path, tiny_model_dir, max_steps=2, finetune=finetune)
    job.hp.kl_coef = 0.1
    metrics = asyncio.run(Trainer(job, tmp_path / "run").run_async())
    kl = [m["kl_mean"] for m in metrics[1:] if "kl_mean" in m]
    assert len(kl) == 2
    assert kl[0] == pytest.approx(0.0, abs=1e-6)  # step 1 starts at the reference weights
    assert kl[1] > 0


def test_cli_train_then_eval_a_checkpoint(tmp_path, tiny_model_dir, capsys):
    from agentrft.cli import main

    job = make_job(tmp_path, tiny_model_dir, max_steps=1)
    raw = yaml.safe_load((tmp_path / "job.yaml").read_text())
    raw["method"]["reinforcement"]["hyperparameters"]["reasoning_effort"] = "high"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "job.yaml"), "--out", str(run), "--quiet"]) == 0
    assert "validation reward:" in capsys.readouterr().out
    events = read_jsonl(run / "events.jsonl")
    assert any("reasoning_effort='high' has no effect" in e["message"] for e in events)
    ckpt = run / "checkpoints" / "step_000001"
    assert main(["eval", str(tmp_path / "job.yaml"), "--model", str(ckpt), "--samples", "2",
                 "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "best-of-2" in out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["samples_per_row"] == 2 and len(summary["per_row"]) == summary["rows"]
    assert summary["model"] == str(ckpt)  # the checkpoint was evaluated, not the job's model


def test_pause_checkpoints_and_resume_finishes(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    seen_checkpoints, events = [], []
    requests = iter([None, "pause"])  # asked before step 1 and step 2
    trainer = Trainer(make_job(tmp_path, tiny_model_dir, max_steps=3), run,
                      control=lambda: next(requests, None),
                      on_checkpoint=lambda step, path, m: seen_checkpoints.append((step, path.name)),
                      on_event=lambda msg, level, data: events.append(msg))
    asyncio.run(trainer.run_async())
    assert trainer.outcome == "paused"
    assert seen_checkpoints[-1] == (1, "step_000001")
    assert any("paused after step 1" in e for e in events)
    resumed = Trainer(make_job(tmp_path, tiny_model_dir, max_steps=3), run)
    metrics = asyncio.run(resumed.run_async(resume=True))
    assert resumed.outcome == "succeeded" and [m["step"] for m in metrics] == [0, 1, 2, 3]


def test_cancel_stops_before_the_next_step(tmp_path, tiny_model_dir):
    trainer = Trainer(make_job(tmp_path, tiny_model_dir, max_steps=3), tmp_path / "run",
                      control=lambda: "cancel")
    metrics = asyncio.run(trainer.run_async())
    assert trainer.outcome == "cancelled" and [m["step"] for m in metrics] == [0]


def constant_grade(sample: dict, item: dict) -> float:
    """The same score for every answer: no group has anything to teach."""
    return 0.5


def test_flat_first_step_stops_the_job_before_any_update(tmp_path, tiny_model_dir):
    job = make_job(tmp_path, tiny_model_dir, max_steps=3, grader="tests.test_train_tiny:constant_grade")
    with pytest.raises(NotReady, match="no group of the first step can teach anything"):
        asyncio.run(Trainer(job, tmp_path / "run").run_async())
    events = read_jsonl(tmp_path / "run" / "events.jsonl")
    readiness = next(e for e in events if e["message"].startswith("readiness over 2 groups"))
    assert readiness["data"]["zero_variance_share"] == 1.0
    assert [m["step"] for m in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [0]  # no update
    assert not (tmp_path / "run" / "checkpoints" / "LATEST").exists()
    assert {r["step"] for r in read_jsonl(tmp_path / "run" / "rollouts.jsonl")
            if r["phase"] == "train"} == {1}  # what the model did is kept for the trace viewer


def test_steps_that_train_nothing_raise_a_stall_warning(tmp_path, tiny_model_dir):
    job = make_job(tmp_path, tiny_model_dir, max_steps=3, grader="tests.test_train_tiny:constant_grade",
                   readiness_gate=False)
    metrics = asyncio.run(Trainer(job, tmp_path / "run").run_async())
    assert [m["trained_sequences"] for m in metrics[1:]] == [0, 0, 0]
    warnings = [e for e in read_jsonl(tmp_path / "run" / "events.jsonl") if e["type"] == "warning"]
    assert len(warnings) == 1 and "3 steps in a row (through step 3) trained no sequence" in \
        warnings[0]["message"]
