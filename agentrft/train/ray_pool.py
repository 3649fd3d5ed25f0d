"""Rollouts over a Ray cluster: `agentrft train JOB --ray ADDRESS` (or `auto`, or `local`).

Each worker is a Ray actor holding what a rollout needs: the policy model (same structure
as the trainer's), its engine, the job's tool clients (and so their sandboxes and MCP
connections) and the grader. The trainer stays where it is: before each batch it puts the
policy's current weights (the LoRA adapter, or every weight for full fine-tuning) in Ray's
object store once, and every worker loads them before sampling, so workers are stateless
between calls and a restarted one needs nothing but the next call.

    pool = RayRolloutPool(job, address="auto", workers=4)
    pool.bind(policy)                         # weights come from here before every batch
    rollouts = await pool.run_rollouts(rows)  # same shape as agentrft.rollout.loop.run_rollouts

A batch is cut into one contiguous chunk per worker (a row's G rollouts stay together and
share their prompt's prefill). Same seeds, same results as the local path: each chunk's
engine is seeded from the job seed and the chunk, and at temperature 0 the rollouts are the
local ones token for token (at temperature > 0 the sampled tokens depend on which rollouts
share an engine batch, on a cluster as locally).

A worker that dies mid-batch (its node lost, its process killed) loses no rollout: Ray
restarts the actor and its chunk is run again (`rerun_rollouts`); a chunk that fails twice
comes back as discarded rollouts with the reason, which the metrics count.

Workers sample with an in-process engine only (`transformers` or `static`). With a server
engine every worker would run one (`vllm`: a vLLM server per actor) or all would share one
(`remote`: each pushing its own adapter copy over the others' mid-batch), so such a job is
refused before anything starts (`check_ray_engine`); the server already batches rollouts.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any, Callable

from agentrft.rollout.types import Rollout
from agentrft.spec.dataset import DatasetRow
from agentrft.spec.job import JobSpec
from agentrft.train.ray_cluster import connect_ray

MAX_ATTEMPTS = 2  # a chunk runs at most this often before its rollouts are discarded
RESTART_WAIT_S = 300.0  # how long to wait for a restarting worker


def check_ray_engine(job: JobSpec) -> None:
    """Refuse a job whose rollouts run on an inference server: Ray workers sample in-process."""
    from agentrft.engines.build import FIELD
    from agentrft.errors import SpecError

    decl = job.rl.engine
    if decl is not None and decl.type in ("remote", "vllm"):
        raise SpecError(f"engine type {decl.type!r} samples on an inference server, which already "
                        "batches every rollout; Ray rollout workers (--ray) need an in-process "
                        "engine: drop --ray, or set type 'transformers' or 'static'",
                        field=f"{FIELD}.type")


class RolloutWorker:
    """The body of a Ray actor (wrapped by `ray.remote` in `RayRolloutPool`)."""

    def __init__(self, job_json: str, import_paths: list[str], device: str, threads: int):
        for p in reversed(import_paths):  # python tools and graders import as in the driver
            if p not in sys.path:
                sys.path.insert(0, p)
        import torch

        from agentrft.train.policy import Policy
        from agentrft.train.setup import build_env, build_tools, validate_job

        torch.set_num_threads(threads)
        self.job = JobSpec.model_validate_json(job_json)
        validated = validate_job(self.job)
        self.loop = asyncio.new_event_loop()  # tool clients keep connections on one loop
        self.tools = build_tools(self.job.rl.tools)
        self.policy = Policy(self.job.model, self.job.hp, device=device)
        self.env, self.engine = build_env(self.job, self.policy.model, self.policy.tokenizer,
                                          self.tools, validated.grader, device=device)

    def pid(self) -> int:
        return os.getpid()

    def run(self, weights: dict[str, Any] | None, rows: list[tuple[int, DatasetRow]], seed: int
            ) -> list[Rollout]:
        from agentrft.rollout.loop import run_rollouts

        if weights is not None:
            self._load(weights)
        self.engine.reseed(seed)
        return self.loop.run_until_complete(run_rollouts(rows, self.env))

    def _load(self, weights: dict[str, Any]) -> None:
        if self.job.hp.finetune == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.policy.model, weights)
        else:
            self.policy.model.load_state_dict(weights, strict=False)
        self.engine.sync_weights(self.policy.model)  # a remote engine pushes them on


def policy_weights(policy) -> dict[str, Any]:
    """What a worker needs to sample like `policy`: the adapter, or the full state dict."""
    if policy.hp.finetune == "lora":
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(policy.model)
    else:
        state = policy.model.state_dict()
    return {k: v.detach().to("cpu") for k, v in state.items()}


class RayRolloutPool:
    def __init__(self, job: JobSpec, *, address: str = "auto", workers: int = 2,
                 device: str = "cpu", cpus_per_worker: float = 1.0,
                 on_event: Callable[..., None] | None = None):
        check_ray_engine(job)
        import ray

        connect_ray(address)
        self.job, self.on_event = job, on_event
        self.rerun_rollouts = 0  # totals over the pool's life
        self.discarded_rollouts = 0
        self.last_reruns = 0  # rollouts re-run during the latest `run_rollouts`
        self._policy = None
        self._calls = 0
        actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=1 if device.startswith("cuda") else 0,
                           max_restarts=-1, max_task_retries=0)(RolloutWorker)
        paths = [os.getcwd(), *[p for p in sys.path if p and os.path.isdir(p)]]
        threads = max(1, int(cpus_per_worker))
        self.workers = [actor.remote(job.model_dump_json(), paths, device, threads)
                        for _ in range(workers)]

    def bind(self, policy) -> None:
        self._policy = policy

    def pids(self) -> list[int]:
        import ray

        return ray.get([w.pid.remote() for w in self.workers])

    async def run_rollouts(self, rows: list[tuple[int, DatasetRow]], env=None) -> list[Rollout]:
        """Like `agentrft.rollout.loop.run_rollouts` (`env` is ignored: workers have theirs)."""
        import ray

        if not rows:
            return []
        self._calls += 1
        weights = ray.put(policy_weights(self._policy)) if self._policy is not None else None
        n = min(len(self.workers), len(rows))
        size = -(-len(rows) // n)
        chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
        before = self.rerun_rollouts
        results = await asyncio.gather(*(self._run_chunk(k, chunk, weights)
                                         for k, chunk in enumerate(chunks)))
        self.last_reruns = self.rerun_rollouts - before
        return [r for chunk in results for r in chunk]

    async def _run_chunk(self, k: int, chunk: list[tuple[int, DatasetRow]], weights) -> list[Rollout]:
        from ray.exceptions import RayActorError, WorkerCrashedError

        seed = (self.job.effective_seed * 1_000_003 + self._calls * 1009 + k) % 2**63
        worker = self.workers[k % len(self.workers)]
        failures, last = 0, None
        while True:
            try:
                return await worker.run.remote(weights, chunk, seed)
            except (RayActorError, WorkerCrashedError) as e:  # the chunk's work is lost
                last, failures = e, failures + 1
                if failures >= MAX_ATTEMPTS:
                    break
                self.rerun_rollouts += len(chunk)
                self._event(f"rollout worker {k} died mid-batch ({type(e).__name__}); "
                            f"re-running its {len(chunk)} rollouts", "warn")
                if not await _restarted(worker):
                    break
        self.discarded_rollouts += len(chunk)
        self._event(f"rollout worker {k} could not run {len(chunk)} rollouts "
                    f"({type(last).__name__}); they are discarded", "error")
        reason = f"ray worker died: {type(last).__name__}"
        return [Rollout(trace_id=f"trace_{uuid.uuid4().hex}", row_index=i, item=r.item,
                        status="discarded", discard_reason=reason) for i, r in chunk]

    def _event(self, message: str, level: str) -> None:
        if self.on_event:
            self.on_event(message, level=level)

    def shutdown(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []


async def _restarted(worker) -> bool:
    """Wait until Ray has restarted a dead actor (True), or it is gone for good (False)."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    deadline = time.monotonic() + RESTART_WAIT_S
    while time.monotonic() < deadline:
        try:
            await worker.pid.remote()
            return True
        except ActorUnavailableError:
            await asyncio.sleep(0.5)
        except RayActorError:
            return False
    return False
