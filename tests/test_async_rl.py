"""Asynchronous RL (train/pipeline.py, engines/snapshot.py): bounded staleness, the sampler's
own weights, and exactly-once training of rows across a SIGKILL and --resume.

The importance weights for rollouts whose behaviour log-probs differ from the trainer's are
checked on hand-built trajectories in tests/test_importance_sampling.py.
"""

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from agentrft.engines.snapshot import SnapshotEngine
from agentrft.errors import SpecError
from agentrft.train.loop import Trainer, step_rows
from agentrft.train.pipeline import RolloutPipeline
from tests.tiny_jobs import lookup_job

ROOT = Path(__file__).parents[1]


def length_grade(sample: dict, item: dict) -> float:
    return (len(sample["output_text"]) % 5) / 4


def make_job(tmp_path, model_dir, *, max_staleness, max_steps, eval_interval=100):
    return lookup_job(tmp_path, model_dir, seed=5, grader="tests.test_async_rl:length_grade",
                      batch_size=2, eval_interval=eval_interval, eval_samples=1, max_new_tokens=8,
                      max_steps=max_steps, n_epochs=4, max_staleness=max_staleness,
                      readiness_gate=False)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- the pipeline alone ---------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 2])
def test_pipeline_starts_k_steps_ahead_and_never_further(k):
    """A trainer far slower than sampling: steps start as early as the bound allows, no earlier."""
    version, started = 0, {}

    async def sample(step):
        started[step] = version
        await asyncio.sleep(0.001)
        return [step]

    async def run():
        nonlocal version
        pipe = RolloutPipeline(sample, max_staleness=k, total_steps=6, version=lambda: version)
        stalenesses = []
        for step in range(6):
            rollouts, staleness = await pipe.take(step)
            assert rollouts == [step]
            assert all(s <= step + k for s in pipe.in_flight())  # never more than k ahead
            await asyncio.sleep(0.01)  # the slow update; sampled-ahead steps finish meanwhile
            version = step + 1
            stalenesses.append(staleness)
        return stalenesses

    stalenesses = asyncio.run(run())
    assert stalenesses == [min(step, k) for step in range(6)]  # reaches the bound, never passes
    assert all(step - v <= k for step, v in started.items())


def test_pipeline_cancel_drops_steps_sampled_ahead():
    async def sample(step):
        await asyncio.sleep(10)

    async def run():
        pipe = RolloutPipeline(sample, max_staleness=2, total_steps=9, version=lambda: 0)
        pipe._start(0), pipe._start(1)
        await pipe.cancel()
        return pipe.in_flight()

    assert asyncio.run(run()) == []


# --- the sampler's copy ---------------------------------------------------------------------

def test_snapshot_engine_samples_its_copy_until_synced(tiny_model):
    model = copy.deepcopy(tiny_model)  # the fixture is shared by the session: leave it as it is
    built = []
    engine = SnapshotEngine(model, lambda copy: built.append(copy) or _Recorder(copy))
    assert built[0] is not model
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # an optimizer step on the trainer's weights
    first = lambda m: next(m.parameters())  # noqa: E731
    assert not torch.equal(first(engine.model), first(model))  # the sampler did not see it
    engine.sync_weights(model)
    assert torch.equal(first(engine.model), first(model)) and engine.syncs == 1
    assert engine.inner.synced == [engine.model]  # told, so it drops what it kept (a prompt head)


class _Recorder:
    def __init__(self, model):
        self.model, self.generator, self.synced = model, torch.Generator(), []

    def sync_weights(self, model):
        self.synced.append(model)

    def generate(self, prompts, params):
        return []

    def take_events(self):
        return []

    def step_metrics(self):
        return {}

    def close(self):
        pass


# --- the training loop ------------------------------------------------------------------------

def test_slow_trainer_keeps_staleness_within_the_bound(tmp_path, tiny_model_dir, monkeypatch):
    from agentrft.train.policy import Policy

    update = Policy.update

    def slow_update(self, seqs):
        time.sleep(0.5)  # rollouts sampled ahead finish long before this
        return update(self, seqs)

    monkeypatch.setattr(Policy, "update", slow_update)
    job = make_job(tmp_path, tiny_model_dir, max_staleness=2, max_steps=5)
    metrics = asyncio.run(Trainer(job, tmp_path / "run").run_async())
    staleness = [m["policy_staleness"] for m in metrics if m["step"] > 0]
    assert staleness == [0, 1, 2, 2, 2]  # step 1 on-policy; then up to the bound, never past
    assert all(m["trained_sequences"] > 0 for m in metrics if m["step"] > 0)


def test_sequential_by_default(tmp_path, tiny_model_dir):
    metrics = asyncio.run(Trainer(make_job(tmp_path, tiny_model_dir, max_staleness=0, max_steps=2),
                                  tmp_path / "run").run_async())
    assert [m["policy_staleness"] for m in metrics if m["step"] > 0] == [0, 0]


def test_async_with_ray_is_refused_naming_the_field(tmp_path, tiny_model_dir):
    with pytest.raises(SpecError, match="max_staleness"):
        Trainer(make_job(tmp_path, tiny_model_dir, max_staleness=1, max_steps=2),
                tmp_path / "run", ray="local")


RUN_JOB = """
import asyncio, sys, time
from agentrft.spec import load_job
from agentrft.train.loop import Trainer
from agentrft.train.policy import Policy
update = Policy.update
Policy.update = lambda self, seqs: time.sleep(1) or update(self, seqs)  # time to kill it mid-run
asyncio.run(Trainer(load_job(sys.argv[1]), sys.argv[2]).run_async(resume=True))
"""


def test_sigkill_and_resume_train_every_row_exactly_once(tmp_path, tiny_model_dir):
    """Killed while later steps are sampled ahead; --resume neither repeats nor skips a row."""
    job = make_job(tmp_path, tiny_model_dir, max_staleness=1, max_steps=6, eval_interval=1)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", RUN_JOB, str(tmp_path / "job.yaml"), str(run)],
                            env=env, cwd=tmp_path, start_new_session=True)
    latest = run / "checkpoints" / "LATEST"
    deadline = time.monotonic() + 600
    while not (latest.is_file() and latest.read_text() >= "step_000003"):
        assert proc.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-way: step 4 trains while step 5 samples
    proc.wait()
    assert read_jsonl(run / "metrics.jsonl")[-1]["step"] < 6

    metrics = asyncio.run(Trainer(job, run).run_async(resume=True))
    assert [m["step"] for m in metrics] == list(range(7))
    trained = [r for r in read_jsonl(run / "rollouts.jsonl") if r["phase"] == "train"]
    per_step = Counter(r["step"] for r in trained)
    assert per_step == {s: 2 * job.hp.group_size for s in range(1, 7)}
    n_rows = len(read_jsonl(tmp_path / "train.jsonl"))
    for step in range(1, 7):  # each step trained exactly its own rows, group_size times each
        want = Counter({i: job.hp.group_size for i, _ in
                        step_rows(list(range(n_rows)), step - 1, 2, job.effective_seed)})
        assert Counter(r["row_index"] for r in trained if r["step"] == step) == want
