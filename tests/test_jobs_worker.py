"""The jobs layer without HTTP: validation stage, worker runs, pause/cancel, crash recovery."""

import json
import os

import pytest

from agentrft.jobs import service
from agentrft.jobs.worker import claim_next, run_job
from examples.lookup import task


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def body(store, model, *, max_steps=2, train=None):
    train_rows, valid_rows = task.make_rows()
    t = store.add_file("train.jsonl", "fine-tune", train or jsonl(train_rows[:4]))
    v = store.add_file("valid.jsonl", "fine-tune", jsonl(valid_rows[:2]))
    return {"model": str(model), "training_file": t["id"], "validation_file": v["id"], "seed": 1,
            "suffix": "demo",
            "method": {"type": "reinforcement", "reinforcement": {
                "grader": {"type": "python", "name": "g", "callable": "tests.test_train_tiny:length_grade"},
                "tools": [{"name": "lookup", "python": "examples.lookup.task:lookup"}],
                "max_episode_steps": 2,
                "hyperparameters": {"n_epochs": 2, "batch_size": 2, "eval_interval": 1, "max_new_tokens": 8,
                                    "max_steps": max_steps}}}}


def claimed_job(store, model, **kwargs):
    """A job created, validated and claimed by the worker (now running)."""
    job = service.create_job(store, body(store, model, **kwargs))
    service.validate_files_sync(store, job["id"])
    claim_next(store)
    return job


def metric_steps(store, job_id):
    events, _ = store.list_events(job_id, limit=100)
    return sorted(e["data"]["step"] for e in events if e["type"] == "metrics")


def test_job_runs_to_succeeded_with_events_and_checkpoints(store, tiny_model_dir):
    job = service.create_job(store, body(store, tiny_model_dir))
    service.validate_files_sync(store, job["id"])
    assert store.get_job(job["id"])["status"] == "queued"
    assert claim_next(store) == job["id"]
    assert run_job(store, job["id"]) == "succeeded"
    done = store.get_job(job["id"])
    name = done["fine_tuned_model"]
    assert name.startswith("ft:") and name.endswith(f":demo:{job['id']}")
    assert metric_steps(store, job["id"]) == [0, 1, 2]
    checkpoints, _ = store.list_checkpoints(job["id"])
    assert [c["step_number"] for c in checkpoints] == [2, 1]
    assert checkpoints[0]["fine_tuned_model_checkpoint"] == f"{name}:ckpt-step-2"
    assert store.resolve_model_name(name).endswith("step_000002")


def test_broken_dataset_line_fails_validation_naming_the_line(store, tiny_model_dir):
    good = service.create_job(store, body(store, tiny_model_dir))
    train_rows, _ = task.make_rows()
    broken = jsonl(train_rows[:2]) + b'{"messages": [\n' + jsonl(train_rows[2:3])
    bad = service.create_job(store, body(store, tiny_model_dir, train=broken))
    service.validate_files_sync(store, bad["id"])
    failed = store.get_job(bad["id"])
    assert failed["status"] == "failed"
    assert ":3" in failed["error"]["param"] and ":3:" in failed["error"]["message"]
    assert store.get_job(good["id"])["status"] == "validating_files"  # untouched


def test_pause_then_resume_then_finish(store, tiny_model_dir):
    job = claimed_job(store, tiny_model_dir, max_steps=3)
    service.request(store, job["id"], "pause")  # asked before the first step: pauses at once
    assert run_job(store, job["id"]) == "paused"
    with pytest.raises(service.JobStateError):
        service.request(store, job["id"], "pause")
    service.request(store, job["id"], "resume")
    assert claim_next(store) == job["id"]
    assert run_job(store, job["id"]) == "succeeded"
    assert metric_steps(store, job["id"]) == [0, 1, 2, 3]


def test_a_paused_job_says_how_to_resume_it_over_the_api(store, tiny_model_dir):
    """The CLI's message says `--resume`; a job run by the worker is resumed over the API."""
    spec = body(store, tiny_model_dir)
    spec["method"]["reinforcement"]["grader"]["callable"] = "tests.grader_fixtures:buggy"
    job = service.create_job(store, spec)
    service.validate_files_sync(store, job["id"])
    claim_next(store)
    assert run_job(store, job["id"]) == "paused"
    message = store.get_job(job["id"])["error"]["message"]
    assert "rollouts discarded" in message
    assert f"POST /v1/fine_tuning/jobs/{job['id']}/resume" in message
    assert "--resume" not in message


def test_orphaned_running_job_resumes_without_duplicate_steps(store, tiny_model_dir):
    job = claimed_job(store, tiny_model_dir, max_steps=3)
    service.request(store, job["id"], "pause")
    run_job(store, job["id"])  # checkpoint at step 0
    service.request(store, job["id"], "resume")
    claim_next(store)
    # Simulate a worker killed mid-run: status running, its pid gone, a stray step-2 event.
    store.add_event(job["id"], "Step 2/3", type="metrics", step=2, data={"step": 2})
    store.update_job(job["id"], worker_pid=2 ** 22 + 7)
    assert not os.path.exists(f"/proc/{2 ** 22 + 7}")
    assert claim_next(store) == job["id"]
    assert run_job(store, job["id"]) == "succeeded"
    assert metric_steps(store, job["id"]) == [0, 1, 2, 3]


def test_cancel_running_job_at_the_next_step(store, tiny_model_dir):
    job = claimed_job(store, tiny_model_dir, max_steps=3)
    service.request(store, job["id"], "cancel")
    assert run_job(store, job["id"]) == "cancelled"
    assert store.get_job(job["id"])["finished_at"] is not None


def test_prune_keeps_three_best_and_the_latest(store, tmp_path):
    from agentrft.jobs.worker import prune_checkpoints

    job = store.create_job({"model": "m", "training_file": "f", "method": {}})
    rewards = {1: 0.5, 2: 0.9, 3: 0.1, 4: 0.7, 5: 0.8, 6: 0.2}
    for step, reward in rewards.items():
        path = tmp_path / f"step_{step}"
        path.mkdir()
        store.add_checkpoint(job["id"], step, {"valid_reward_mean": reward}, str(path), f"m:{step}")
        prune_checkpoints(store, job["id"])
    kept = sorted(r["step"] for r in store.checkpoint_rows(job["id"]))
    assert kept == [2, 4, 5, 6]  # best three (0.9, 0.8, 0.7) and the latest
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_2", "step_4", "step_5", "step_6"]
