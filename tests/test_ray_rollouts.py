"""Rollouts on a local Ray instance with two worker actors: the same rollouts as the local
path, the trainer's weights shipped to the workers, and a worker SIGKILLed mid-batch."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

import ray  # the [ray] extra; scripts/setup.sh installs it (an import error fails)

from agentrft.rollout.loop import run_rollouts  # noqa: E402
from agentrft.train.ray_pool import RayRolloutPool  # noqa: E402
from agentrft.train.loop import Trainer  # noqa: E402
from agentrft.train.policy import Policy  # noqa: E402
from agentrft.train.setup import build_env, build_tools, validate_job  # noqa: E402
from tests.test_train_tiny import make_job  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def greedy_job(tmp_path, model_dir, **hp):
    job = make_job(tmp_path, model_dir, max_steps=1)
    job.hp.temperature = 0.0  # deterministic sampling: the comparison is token for token
    for k, v in hp.items():
        setattr(job.hp, k, v)
    return job


def batch(job):
    rows = validate_job(job).train_rows[:2]
    return [(i, r) for i, r in enumerate(rows) for _ in range(job.hp.group_size)]


def local_rollouts(job, policy, rows):
    tools = build_tools(job.rl.tools)
    env, _ = build_env(job, policy.model, policy.tokenizer, tools, validate_job(job).grader,
                       device="cpu")
    return asyncio.run(run_rollouts(rows, env))


def summary(rollouts):
    return [(r.row_index, r.token_ids, r.reward, r.status) for r in rollouts]


def test_ray_workers_give_the_local_rollouts_and_follow_the_trainers_weights(local_ray, tmp_path,
                                                                          tiny_model_dir):
    job = greedy_job(tmp_path, tiny_model_dir)
    policy = Policy(job.model, job.hp)
    rows = batch(job)
    pool = RayRolloutPool(job, address="auto", workers=2)
    try:
        pool.bind(policy)
        assert len(set(pool.pids())) == 2
        remote = asyncio.run(pool.run_rollouts(rows))
        local = local_rollouts(job, policy, rows)
        assert len(remote) == len(rows) == 8
        assert summary(remote) == summary(local)
        assert all(r.reward is not None for r in remote)

        # Change the trainer's weights: the workers sample from the new ones.
        import torch

        with torch.no_grad():
            for name, p in policy.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        moved_local = local_rollouts(job, policy, rows)
        moved_remote = asyncio.run(pool.run_rollouts(rows))
        assert summary(moved_remote) == summary(moved_local)
        assert [r.token_ids for r in moved_local] != [r.token_ids for r in local]
    finally:
        pool.shutdown()


def marking_grade(sample: dict, item: dict) -> float:
    """Leaves a file named after this process, then takes its time: the test kills the
    worker while it grades."""
    Path(item["marker_dir"], str(os.getpid())).touch()
    time.sleep(1.5)
    return (len(sample["output_text"]) % 5) / 4


def marking_job(tmp_path, model_dir):
    """A greedy job graded by `marking_grade`, and the folder its markers appear in."""
    job = greedy_job(tmp_path, model_dir)
    markers = tmp_path / "markers"
    markers.mkdir()
    job.rl.grader["callable"] = "tests.test_ray_rollouts:marking_grade"
    train = Path(job.training_file)
    lines = [json.loads(x) for x in train.read_text().splitlines()]
    train.write_text("".join(json.dumps({**x, "marker_dir": str(markers)}) + "\n" for x in lines))
    return job, markers


def test_a_worker_killed_mid_batch_loses_no_rollout(local_ray, tmp_path, tiny_model_dir):
    job, markers = marking_job(tmp_path, tiny_model_dir)
    events = []
    pool = RayRolloutPool(job, address="auto", workers=2,
                          on_event=lambda message, level: events.append((level, message)))
    try:
        policy = Policy(job.model, job.hp)
        pool.bind(policy)
        victim = pool.pids()[0]

        async def run_and_kill():
            task = asyncio.ensure_future(pool.run_rollouts(batch(job)))
            deadline = time.time() + 120
            while not (markers / str(victim)).exists():
                assert time.time() < deadline and not task.done()
                await asyncio.sleep(0.05)
            os.kill(victim, signal.SIGKILL)
            return await task

        rollouts = asyncio.run(run_and_kill())
        assert len(rollouts) == 8 and [r.row_index for r in rollouts] == [0] * 4 + [1] * 4
        assert all(r.status != "discarded" and r.reward is not None for r in rollouts), (events, [r.discard_reason for r in rollouts])
        assert pool.rerun_rollouts == pool.last_reruns == 4 and pool.discarded_rollouts == 0
        assert events and events[0][0] == "warn" and "re-running its 4 rollouts" in events[0][1]
        assert victim not in pool.pids()  # Ray restarted the actor
        # greedy: the re-run chunk is exactly what the first attempt would have given
        assert summary(rollouts) == summary(local_rollouts(job, policy, batch(job)))
    finally:
        pool.shutdown()


def test_a_chunk_whose_worker_dies_twice_is_discarded_and_counted(local_ray, tmp_path, tiny_model_dir):
    job, markers = marking_job(tmp_path, tiny_model_dir)
    pool = RayRolloutPool(job, address="auto", workers=2)
    try:
        pool.bind(Policy(job.model, job.hp))
        spared = pool.pids()[1]

        async def run_and_kill_twice():
            task = asyncio.ensure_future(pool.run_rollouts(batch(job)))
            killed: set[str] = set()
            deadline = time.time() + 180
            while len(killed) < 2:
                assert time.time() < deadline and not task.done()
                for marker in markers.iterdir():
                    if marker.name != str(spared) and marker.name not in killed:
                        os.kill(int(marker.name), signal.SIGKILL)
                        killed.add(marker.name)
                await asyncio.sleep(0.05)
            return await task

        rollouts = asyncio.run(run_and_kill_twice())
        assert len(rollouts) == 8
        assert [r.status == "discarded" for r in rollouts] == [True] * 4 + [False] * 4
        assert all("ray worker died" in r.discard_reason for r in rollouts[:4])
        assert pool.rerun_rollouts == 4 and pool.discarded_rollouts == 4
    finally:
        pool.shutdown()


def test_trainer_with_ray_runs_steps_and_records_rollouts(local_ray, tmp_path, tiny_model_dir):
    job = make_job(tmp_path, tiny_model_dir, max_steps=1)
    trainer = Trainer(job, tmp_path / "run", ray="auto", ray_workers=2)
    metrics = asyncio.run(trainer.run_async())
    assert trainer.outcome == "succeeded" and [m["step"] for m in metrics] == [0, 1]
    assert metrics[1]["rollouts"] == 8 and metrics[1]["discarded_rollouts"] == 0
    assert metrics[1]["rerun_rollouts"] == 0
    records = [json.loads(x) for x in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    assert len({r["trace_id"] for r in records}) == len(records) >= 8


def server_engine_job(tmp_path, model_dir, engine: str):
    """The tiny job with its rollouts on a server engine (vLLM's Python: this one, never run)."""
    import sys

    from agentrft.spec import load_job

    import yaml

    make_job(tmp_path, model_dir, max_steps=1)
    path = tmp_path / "job.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["method"]["reinforcement"]["engine"] = (
        {"type": "vllm", "python": sys.executable} if engine == "vllm"
        else {"type": "remote", "base_url": "http://127.0.0.1:9/v1"})
    path.write_text(yaml.safe_dump(raw))
    return path, load_job(path)


@pytest.mark.parametrize("engine", ["vllm", "remote"])
def test_ray_with_a_server_engine_is_refused_before_anything_starts(tmp_path, tiny_model_dir,
                                                                    engine, capsys, monkeypatch):
    from agentrft.cli import main
    from agentrft.errors import SpecError

    path, job = server_engine_job(tmp_path, tiny_model_dir, engine)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init before the check"))
    with pytest.raises(SpecError, match="--ray") as caught:
        Trainer(job, tmp_path / "run", ray="local")
    assert caught.value.field == "method.reinforcement.engine.type"
    assert f"engine type {engine!r}" in str(caught.value)
    with pytest.raises(SpecError, match="in-process engine"):
        RayRolloutPool(job, address="local")
    # refused before connecting to (or starting) a cluster: ray.init above would have failed

    assert main(["train", str(path), "--out", str(tmp_path / "cli-run"), "--ray", "local", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: method.reinforcement.engine.type:" in err and "--ray" in err
    assert not (tmp_path / "cli-run" / "metrics.jsonl").exists()
    # without --ray the same job is accepted (the engine itself is not started here)
    Trainer(job, tmp_path / "run2")
