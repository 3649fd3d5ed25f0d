"""The worker process: takes queued jobs one at a time and trains them.

    python -m agentrft.jobs.worker --data-dir DIR [--device cpu]

It runs apart from the API process (started and restarted by `agentrft server`), so a slow
step never blocks the API. Crash recovery: a job left `running` by a worker that died (its
pid is gone) is picked up again and resumes from its last checkpoint; metrics events of
steps after that checkpoint are dropped first, so every step's event appears exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from agentrft.analysis.alarm import AlarmWatcher
from agentrft.errors import AgentRFTError, TrainingPaused
from agentrft.jobs.models import resolve_spec_model
from agentrft.jobs.service import error_object, model_name, spec_from_body
from agentrft.jobs.store import JobStore
from agentrft.train.checkpoint import latest_checkpoint
from agentrft.train.loop import StepReport, Trainer
from agentrft.train.records import RunDir

log = logging.getLogger("agentrft.worker")
KEEP_BEST = 3  # checkpoints kept by valid_reward_mean, besides the latest


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_next(store: JobStore) -> str | None:
    """An orphaned running job first (crash recovery), else the oldest queued one."""
    me = os.getpid()
    for job_id, pid in store.running_jobs():
        if pid != me and not _alive(pid) and store.take_over(job_id, pid, me):
            store.add_event(job_id, "worker restarted; resuming from the last checkpoint",
                            level="warn")
            return job_id
    while (job := store.next_job(("queued",))) is not None:
        if store.set_status(job["id"], "running", expect=("queued",), worker_pid=me):
            store.add_event(job["id"], "job started")
            return job["id"]
    return None


def prune_checkpoints(store: JobStore, job_id: str) -> None:
    """Keep the KEEP_BEST best by valid_reward_mean, and the latest (needed to resume)."""
    rows = store.checkpoint_rows(job_id)
    if len(rows) <= KEEP_BEST + 1:
        return
    latest = max(r["step"] for r in rows)

    def score(r) -> float:
        value = json.loads(r["metrics"]).get("valid_reward_mean")
        return float("-inf") if value is None else value

    best = {r["step"] for r in sorted(rows, key=score, reverse=True)[:KEEP_BEST]}
    for r in rows:
        if r["step"] != latest and r["step"] not in best:
            shutil.rmtree(r["path"], ignore_errors=True)
            store.delete_checkpoint(job_id, r["step"])


def run_job(store: JobStore, job_id: str, *, device: str = "cpu") -> str:
    """Train one claimed job to its next resting state; returns the job's new status."""
    row = store.job_row(job_id)
    run_dir = Path(row["run_dir"])
    checkpoint = latest_checkpoint(run_dir) if run_dir.exists() else None
    resume_step = -1
    if checkpoint is not None:
        resume_step = json.loads((checkpoint / "state.json").read_text())["step"]
    store.drop_metrics_after(job_id, resume_step)
    alarms = AlarmWatcher(run_dir)  # reward hacking: a warning event, a banner on the dashboard
    if checkpoint is not None:
        alarms.replay([m for m in RunDir(run_dir).read_metrics() if m["step"] <= resume_step])

    def on_step(report: StepReport) -> None:
        m = {k: v for k, v in report.metrics.items() if not k.startswith("_")}
        reward = m.get("train_reward_mean", m.get("valid_reward_mean"))
        summary = f"Step {report.step}/{report.total_steps}" + (
            f": reward {reward:.3f}" if isinstance(reward, float) else "")
        store.add_event(job_id, summary, type="metrics", step=report.step,
                        data={**m, "total_steps": report.total_steps})
        store.update_job(job_id, trained_steps=report.step)
        for warning in alarms.on_metrics({**m, "step": report.step}):
            store.add_event(job_id, warning["message"], level="warn", type="warning",
                            data=warning["data"])

    def on_checkpoint(step: int, path: Path, metrics: dict[str, Any]) -> None:
        store.add_checkpoint(job_id, step, metrics, str(path), model_name(store, job_id, step))
        prune_checkpoints(store, job_id)

    def on_event(message: str, level: str, data: dict | None) -> None:
        store.add_event(job_id, message, level=level, data=data)

    def control() -> str | None:
        return store.job_row(job_id)["requested"]

    try:
        # An ft: model (a job continuing another's) trains from its checkpoint directory:
        # the job keeps its ft: name, and its checkpoints record the directory as their
        # `base_model`, so they load without this database.
        spec = resolve_spec_model(spec_from_body(store, store.get_job_body(job_id)), store=store)
        trainer = Trainer(spec, run_dir, device=device, on_step=on_step,
                          on_checkpoint=on_checkpoint, on_event=on_event, control=control)
        asyncio.run(trainer.run_async(resume=checkpoint is not None))
    except AgentRFTError as e:
        return _finish(store, job_id, "failed", error=error_object(e), event=f"job failed: {e}")
    except Exception as e:  # noqa: BLE001 - a crash fails this job, never the worker
        (run_dir / "worker.log").open("a").write(traceback.format_exc())
        return _finish(store, job_id, "failed",
                       error={"code": "internal_error", "message": f"{type(e).__name__}: {e}",
                              "param": None},
                       event=f"job failed: {type(e).__name__}: {e}")

    if trainer.outcome == "succeeded":
        return _finish(store, job_id, "succeeded", fine_tuned_model=model_name(store, job_id),
                       event="The job has successfully completed")
    if trainer.outcome == "paused":
        # asked for (no error), or the run paused itself: its reason is the job's error
        error = None if trainer.pause_reason is None else {
            "code": "TrainingPaused", "param": None,
            "message": f"{trainer.pause_reason}; {TrainingPaused.api_hint(job_id)}"}
        return _finish(store, job_id, "paused", error=error)
    return _finish(store, job_id, "cancelled", event="job cancelled")


def _finish(store: JobStore, job_id: str, status: str, *, event: str | None = None,
            **fields: Any) -> str:
    """Move the running job to where its run ended; returns the job's status then."""
    level = "error" if status == "failed" else "info"
    if store.set_status(job_id, status, expect=("running",), requested=None, **fields) and event:
        store.add_event(job_id, event, level=level)
    return store.job_row(job_id)["status"]


def worker_loop(data_dir: str | Path, *, device: str = "cpu", poll_s: float = 0.5,
                once: bool = False) -> None:
    store = JobStore(data_dir)
    log.info("worker %d serving %s on %s", os.getpid(), data_dir, device)
    while True:
        job_id = claim_next(store)
        if job_id is not None:
            status = run_job(store, job_id, device=device)
            log.info("job %s: %s", job_id, status)
        elif once:
            return
        else:
            time.sleep(poll_s)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="agentrft-worker")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--poll", type=float, default=0.5)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    worker_loop(args.data_dir, device=args.device, poll_s=args.poll)


if __name__ == "__main__":
    main()
