"""The RL loop, top to bottom: rollout → grade → advantages → policy-gradient update,
with an eval and a checkpoint every `eval_interval` steps.

    for step in steps:
        rows      = the step's `batch_size` dataset rows
        rollouts  = G rollouts per row (G = hyperparameters.group_size), run concurrently
        rewards   = the grader's reward, minus the configured penalties
        groups    = per row: advantages, or dropped (zero variance / discarded rollouts)
        update    = one AdamW step on the clipped token-level surrogate loss, its ratio
                    against the engine's sampling log-probs, truncated at tis_cap (train/loss.py)
        every eval_interval steps: validation rollouts, metrics, checkpoint
    with max_staleness k > 0, steps t+1 … t+k sample while step t trains (train/pipeline.py)
    before the first update: the readiness gate (train/readiness.py) stops a job whose groups
    are all flat; during training, steps in a row that train nothing raise a warning
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from agentrft.errors import SpecError, TrainingPaused
from agentrft.malloc import release_free_memory
from agentrft.rollout.loop import RolloutEnv, run_rollouts
from agentrft.rollout.types import Rollout
from agentrft.spec.dataset import DatasetRow
from agentrft.spec.job import JobSpec
from agentrft.spec.secrets import redact
from agentrft.tools.base import ToolClient
from agentrft.train.advantages import group_advantages
from agentrft.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from agentrft.train.loss import TrainSequence
from agentrft.train.metrics import rollout_metrics
from agentrft.train.pipeline import RolloutPipeline
from agentrft.train.policy import Policy
from agentrft.train.readiness import NotReady, Readiness, StallWatch
from agentrft.train.records import RunDir
from agentrft.train.setup import build_env, build_policy, open_tools, validate_job


STALL_STEPS = 3  # this many steps in a row with no trained sequence raise a warning event


@dataclass
class StepReport:
    step: int
    total_steps: int
    metrics: dict[str, Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def step_rows(rows: list[DatasetRow], step: int, batch_size: int, seed: int
              ) -> list[tuple[int, DatasetRow]]:
    """The rows of a step: each epoch is a fresh seeded shuffle, so a resumed run sees the same."""
    per_epoch = -(-len(rows) // batch_size)
    epoch, k = divmod(step, per_epoch)
    order = list(range(len(rows)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [(i, rows[i]) for i in order[k * batch_size:(k + 1) * batch_size]]


def shape_rewards(rollouts: list[Rollout], job: JobSpec) -> None:
    hp = job.hp
    for r in rollouts:
        if r.reward is None:
            continue
        shaped = r.reward - hp.reasoning_token_penalty * r.reasoning_tokens
        if r.status == "budget_exceeded":
            shaped -= hp.budget_exceeded_penalty
        # an agent that explores forever is slow: turns past a soft limit, and wall time, cost
        # (wall time includes waiting for the shared engine batch, so it is noisier than turns)
        shaped -= hp.turn_penalty * max(0, r.turns - hp.soft_max_turns)
        shaped -= hp.wall_time_penalty * r.timing.get("rollout", 0.0)
        r.shaped_reward = shaped


def training_sequences(rollouts: list[Rollout], job: JobSpec) -> tuple[list[TrainSequence], int]:
    """Group by row, compute advantages; returns the sequences and the zero-variance count."""
    groups: dict[int, list[Rollout]] = {}
    for r in rollouts:
        if not r.discarded and r.shaped_reward is not None:
            groups.setdefault(r.row_index, []).append(r)
    seqs, zero_variance = [], 0
    for members in groups.values():
        advantages = group_advantages([r.shaped_reward for r in members], job.hp.advantage)
        if advantages is None:
            zero_variance += 1
            continue
        for r, a in zip(members, advantages):
            seqs.append(TrainSequence(r.token_ids, r.mask, a, r.logprobs))
    return seqs, zero_variance


class Trainer:
    """Runs one job. Hooks for whoever drives it (the CLI, the jobs worker):

    - `on_step(StepReport)` after every step (step 0: the baseline eval);
    - `on_checkpoint(step, path, metrics)` after every checkpoint is written;
    - `on_event(message, level, data)` for every run event;
    - `control()` before every step: "pause" checkpoints and stops, "cancel" stops.

    After `run_async`, `outcome` is "succeeded", "paused" or "cancelled". A pause is one
    mechanism whoever asks for it: `control()`, or the run itself when a step discards more
    than `max_discarded_fraction` of its rollouts; then `pause_reason` says why (None for a
    requested pause). Either way a checkpoint holds the state and `resume=True` redoes the step.
    """

    def __init__(self, job: JobSpec, out_dir: str | Path, *, device: str = "cpu",
                 on_step: Callable[[StepReport], None] | None = None,
                 on_checkpoint: Callable[[int, Path, dict[str, Any]], None] | None = None,
                 on_event: Callable[[str, str, dict | None], None] | None = None,
                 control: Callable[[], str | None] | None = None, evaluate: bool = True,
                 ray: str | None = None, ray_workers: int = 2):
        """`evaluate=False` skips the validation evals (the baseline and every eval_interval),
        for a caller that evaluates on its own; checkpoints are still written.
        `ray` (an address, `auto` or `local`) runs rollouts on `ray_workers` Ray actors."""
        self.job, self.device, self.on_step = job, device, on_step
        self.ray, self.ray_workers, self.pool = ray, ray_workers, None
        self.engine, self.policy, self.pipeline = None, None, None  # set by run_async
        self.evaluate = evaluate
        self.stall = StallWatch(STALL_STEPS)  # steps in a row that trained nothing
        self.on_checkpoint, self.control = on_checkpoint, control
        self.outcome: str | None = None
        self.pause_reason: str | None = None  # set when the run paused itself
        self.run = RunDir(out_dir, on_event=on_event)
        self.validated = validate_job(job)
        if ray:
            from agentrft.train.ray_pool import check_ray_engine

            check_ray_engine(job)  # before a model is loaded or a server started
            if job.hp.max_staleness:
                raise SpecError("asynchronous RL (max_staleness > 0) is not available with "
                                "--ray rollout workers yet: set max_staleness to 0 or drop --ray",
                                field="hyperparameters.max_staleness")
        self.seed = job.effective_seed
        hp = job.hp
        self.total_steps = hp.epochs * -(-len(self.validated.train_rows) // hp.rows_per_step)
        if hp.max_steps:
            self.total_steps = min(self.total_steps, hp.max_steps)

    def _env(self, policy: Policy, tools) -> RolloutEnv:
        env, self.engine = build_env(self.job, policy.model, policy.tokenizer, tools,
                                     self.validated.grader, device=self.device)
        self._engine_events()
        return env

    def _engine_events(self) -> None:
        """What the engine asked to tell the user (a server without seeds, a restart)."""
        for message, level, data in self.engine.take_events():
            self.run.log_event(message, level=level, data=data)

    async def _evaluate(self, env: RolloutEnv, step: int) -> dict[str, Any]:
        rows = self.validated.valid_rows
        if not rows or not self.evaluate:
            return {}
        t0 = time.perf_counter()
        n = self.job.hp.samples_per_eval_row
        rollouts = await self._run_rollouts([(i, r) for i, r in enumerate(rows)] * n, env)
        for r in rollouts:
            self.run.log_rollout({"step": step, "phase": "eval", **r.to_record()})
        return {**rollout_metrics(rollouts, "valid"), "timing.eval": time.perf_counter() - t0}

    def _checkpoint(self, policy: Policy, step: int, metrics: dict[str, Any]) -> None:
        kept = {k: v for k, v in metrics.items() if "reward" in k}
        path = save_checkpoint(self.run.path, step, policy, engine=self.engine,
                               state={"metrics": kept})
        if self.on_checkpoint:
            self.on_checkpoint(step, path, kept)

    async def run_async(self, *, resume: bool = False) -> list[dict[str, Any]]:
        """The job, start to end (or to a pause or cancel); the metrics of every step."""
        seed_everything(self.seed)
        async with open_tools(self.job.rl.tools) as tools:  # closed last, after the engine
            try:
                return await self._run(tools, resume=resume)
            finally:
                await self._close()

    async def _run(self, tools: dict[str, ToolClient], *, resume: bool) -> list[dict[str, Any]]:
        job, hp = self.job, self.job.hp
        policy = self.policy = build_policy(job, device=self.device, ray=self.ray)
        env = self._env(policy, tools)
        if self.ray:
            from agentrft.train.ray_pool import RayRolloutPool

            self.pool = RayRolloutPool(job, address=self.ray, workers=self.ray_workers,
                                       device=self.device, on_event=self.run.log_event)
            self.pool.bind(policy)
        start = 0
        checkpoint = latest_checkpoint(self.run.path) if resume else None
        if checkpoint is not None:
            state = load_checkpoint(checkpoint, policy, engine=self.engine)
            self.engine.sync_weights(policy.model)  # a remote engine gets the loaded weights
            start = state["step"]
            self.run.truncate_after(start)
            self.run.log_event(f"resumed from {checkpoint.name} (step {start})")
        else:
            self.run.truncate_after(-1)
            spec = redact(json.loads(job.model_dump_json()))  # no tool headers on disk
            self.run.spec_file.write_text(json.dumps(spec, indent=2))
            self._announce(policy, env)
            baseline = {"step": 0, **await self._evaluate(env, 0)}
            self.run.log_metrics(baseline)
            self._report(0, baseline)

        self.policy_version = start  # updates the weights have seen
        pipeline = self.pipeline = RolloutPipeline(
            lambda step: self._run_rollouts(self._step_rollout_rows(step), env),
            max_staleness=hp.max_staleness, total_steps=self.total_steps,
            version=lambda: self.policy_version)
        for step in range(start, self.total_steps):
            request = self.control() if self.control else None
            if request == "pause":
                return self._pause(step, policy, f"paused after step {step}; a checkpoint "
                                                 "holds the state")
            if request == "cancel":
                self.run.log_event(f"cancelled after step {step}")
                self.outcome = "cancelled"
                return self.run.read_metrics()
            t0 = time.perf_counter()
            # sampled now, or started earlier while a previous step trained (max_staleness)
            rollouts, staleness = await pipeline.take(step)
            t_sampled = time.perf_counter()
            outage = self._outage(step, rollouts)
            if outage is not None:  # the step is redone on resume
                message, data = outage
                return self._pause(step, policy, message, reason=message, data=data)
            shape_rewards(rollouts, self.job)
            if step == 0:
                self._check_readiness(rollouts)  # NotReady: nothing here can be learned
            metrics = await self._train_step(step, policy, rollouts)
            metrics.update({"timing.sampling": t_sampled - t0, "policy_staleness": staleness})
            done = self.policy_version = step + 1  # what the sampler now holds
            evaluated = done % hp.eval_every == 0 or done == self.total_steps
            if evaluated:
                metrics.update(await self._evaluate(env, done))
            metrics["timing.full_iteration"] = time.perf_counter() - t0
            if stalled := self.stall.observe(done, int(metrics["trained_sequences"])):
                self.run.log_event(stalled, level="warn", type="warning")  # a banner too
            # The step's line before its checkpoint: a crash between the two redoes the step
            # (resume truncates after the checkpoint's step), never loses its line.
            self.run.log_metrics(metrics)
            if evaluated:
                self._checkpoint(policy, done, metrics)
            self._report(done, metrics)
        self.run.log_event(f"finished {self.total_steps} steps")
        self.outcome = "succeeded"
        return self.run.read_metrics()

    async def _close(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.cancel()  # steps sampled ahead and not trained: redone on resume
        if self.engine is not None:
            self.engine.close()  # a server the engine started ends with the job
        if self.pool is not None:
            self.pool.shutdown()
        if self.policy is not None:
            self.policy.close()  # a distributed policy's ranks end with the job

    def _step_rollout_rows(self, step: int) -> list[tuple[int, DatasetRow]]:
        """A step's rows, each group_size times: one group per row, sampled together."""
        hp = self.job.hp
        rows = step_rows(self.validated.train_rows, step, hp.rows_per_step, self.seed)
        return [r for r in rows for _ in range(hp.group_size)]

    async def _run_rollouts(self, rows: list[tuple[int, Any]], env: RolloutEnv) -> list[Rollout]:
        """In this process, or on the Ray workers with `ray=`."""
        if self.pool is not None:
            return await self.pool.run_rollouts(rows)
        return await run_rollouts(rows, env)

    async def _train_step(self, step: int, policy: Policy, rollouts: list[Rollout]
                          ) -> dict[str, Any]:
        """Shaped rewards → advantages → one update, from a step's rollouts; its metrics.
        The update runs in a worker thread, so rollouts sampled ahead keep going meanwhile."""
        t_sampled = time.perf_counter()
        seqs, zero_variance = training_sequences(rollouts, self.job)
        update = await asyncio.to_thread(policy.update, seqs) if seqs else {}
        release_free_memory()  # the update's activations: back to the OS before the next rollouts
        if seqs:
            self.engine.sync_weights(policy.model)  # no-op in-process; a remote engine pushes
        t_trained = time.perf_counter()
        ray = {"rerun_rollouts": float(self.pool.last_reruns)} if self.pool is not None else {}
        self._engine_events()
        for r in rollouts:
            self.run.log_rollout({"step": step + 1, "phase": "train", **r.to_record()})
        grading = sum(r.timing.get("grading", 0.0) for r in rollouts) / max(len(rollouts), 1)
        return {
            "step": step + 1,
            **rollout_metrics(rollouts, "train"),
            "zero_variance_groups": float(zero_variance),
            "groups": float(len({r.row_index for r in rollouts})),
            "rollouts": float(len(rollouts)), "trained_sequences": float(len(seqs)), **ray,
            **update, **self.engine.step_metrics(),
            "timing.grading": grading,
            "timing.training": t_trained - t_sampled,
        }

    def _outage(self, step: int, rollouts: list[Rollout]) -> tuple[str, dict] | None:
        """Failures are data, but a step that is mostly failures is an outage: (message, event
        data) when the step must not train on the remainder, else None."""
        discarded = sum(r.discarded for r in rollouts)
        if discarded <= self.job.hp.max_discarded_fraction * len(rollouts):
            return None
        reasons = sorted({r.discard_reason or "" for r in rollouts if r.discarded})
        message = (f"paused at step {step + 1}: {discarded} of {len(rollouts)} rollouts discarded "
                   f"(max_discarded_fraction {self.job.hp.max_discarded_fraction}); e.g. {reasons[0]}")
        return message, {"reasons": reasons[:5]}

    def _check_readiness(self, rollouts: list[Rollout]) -> None:
        """The first step's groups, before any update: can they teach anything? Always an
        event (zero-variance, never-solved and always-solved shares, best-of-N); raises
        NotReady, with advice, when every group is flat and `readiness_gate` is on."""
        groups: dict[int, list[float]] = {}
        for r in rollouts:
            if not r.discarded and r.shaped_reward is not None:
                groups.setdefault(r.row_index, []).append(r.shaped_reward)
        readiness = Readiness.of(groups.values())
        self.run.log_event(readiness.line(), data=asdict(readiness))
        if readiness.can_teach or not self.job.hp.readiness_gate:
            return
        for r in rollouts:  # kept, so the trace viewer shows what the model did
            self.run.log_rollout({"step": 1, "phase": "train", **r.to_record()})
        self.run.log_event(readiness.advice(), level="error", data=asdict(readiness))
        raise NotReady(readiness.advice())

    def _pause(self, step: int, policy: Policy, message: str, *, reason: str | None = None,
               data: dict | None = None) -> list[dict[str, Any]]:
        """Checkpoint the state before `step` and stop; `resume=True` redoes the step. `reason`
        when the run paused itself rather than being asked to."""
        self._checkpoint(policy, step, {})
        self.run.log_event(message, level="error" if reason else "info", data=data)
        self.outcome, self.pause_reason = "paused", reason
        return self.run.read_metrics()

    def _announce(self, policy: Policy, env: RolloutEnv) -> None:
        hp = self.job.hp
        self.run.log_event(
            f"training {self.job.model} ({hp.finetune}) for {self.total_steps} steps: "
            f"{hp.rows_per_step} rows × {hp.group_size} rollouts per step, lr {hp.learning_rate:g}")
        if hp.reasoning_effort not in (None, "default") and not env.renderer.has_thinking:
            self.run.log_event(f"reasoning_effort={hp.reasoning_effort!r} has no effect: the chat "
                               f"template of {self.job.model} has no thinking mode", level="warn")

    def _report(self, step: int, metrics: dict[str, Any]) -> None:
        if self.on_step:
            self.on_step(StepReport(step, self.total_steps, metrics))


def train(job: JobSpec, out_dir: str | Path, *, resume: bool = False, device: str = "cpu",
          on_step: Callable[[StepReport], None] | None = None) -> list[dict[str, Any]]:
    """Run a job to the end; returns every metrics line of the run directory. Raises
    TrainingPaused if the run paused itself (see `Trainer`)."""
    trainer = Trainer(job, out_dir, device=device, on_step=on_step)
    metrics = asyncio.run(trainer.run_async(resume=resume))
    raise_if_paused(trainer)
    return metrics


def raise_if_paused(trainer: Trainer) -> None:
    """For callers without a paused state of their own (a script, the CLI): a run that paused
    itself is an error to report."""
    if trainer.outcome == "paused" and trainer.pause_reason:
        raise TrainingPaused(trainer.pause_reason)  # with the CLI's hint: --resume
