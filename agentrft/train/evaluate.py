"""Evaluate a model (base, bundled or checkpoint) on a job's validation rows, N samples per row.

Writes `rollouts.jsonl` and `summary.json` (per row: mean, best, spread; overall: mean reward,
best-of-N reward, share of rows with zero variance) into the output directory.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import torch

from agentrft.malloc import release_free_memory
from agentrft.models.loading import load_model, load_tokenizer
from agentrft.rollout.loop import run_rollouts
from agentrft.spec.dataset import load_dataset
from agentrft.spec.job import JobSpec
from agentrft.train.metrics import per_row_summary, rollout_metrics
from agentrft.train.records import RunDir
from agentrft.train.setup import build_env, open_tools, validate_job


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"rows": 0}
    return {
        "rows": len(rows),
        "mean_reward": sum(r["mean"] for r in rows) / len(rows),
        "best_of_n_reward": sum(r["best"] for r in rows) / len(rows),
        "mean_row_std": sum(r["std"] for r in rows) / len(rows),
        "zero_variance_share": sum(r["std"] == 0 for r in rows) / len(rows),
    }


def pass_spread(rollouts: list, n_rows: int, samples: int) -> dict[str, Any]:
    """The eval as `samples` passes over the rows (rollout k·n … k·n + n-1 is pass k): each
    pass's mean reward, and their standard deviation (n-1), the run-to-run spread that a
    trained model's gain has to beat to mean anything."""
    means = []
    for k in range(samples):
        scored = [r.reward for r in rollouts[k * n_rows:(k + 1) * n_rows]
                  if not r.discarded and r.reward is not None]
        if scored:
            means.append(sum(scored) / len(scored))
    if len(means) < 2:
        return {"pass_mean_rewards": means}
    mu = sum(means) / len(means)
    std = (sum((m - mu) ** 2 for m in means) / (len(means) - 1)) ** 0.5
    return {"pass_mean_rewards": means, "run_to_run_std": std}


async def _evaluate(job: JobSpec, model_ref: str, model_name: str, samples: int, out: RunDir,
                    device: str, data_file: str | None) -> dict[str, Any]:
    validated = validate_job(job)
    rows = load_dataset(data_file) if data_file else (validated.valid_rows or validated.train_rows)
    async with open_tools(job.rl.tools) as tools:
        tokenizer = load_tokenizer(model_ref)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model = load_model(model_ref, device=device, dtype=dtype)
        env, _ = build_env(job, model, tokenizer, tools, validated.grader, device=device)
        t0 = time.perf_counter()
        rollouts = await run_rollouts([(i, r) for i, r in enumerate(rows)] * samples, env)
        elapsed = time.perf_counter() - t0
    for r in rollouts:
        out.log_rollout({"step": 0, "phase": "eval", **r.to_record()})
    per_row = per_row_summary(rollouts)
    summary = {"model": model_name, "samples_per_row": samples, **summarize(per_row),
               **pass_spread(rollouts, len(rows), samples),
               **rollout_metrics(rollouts, "valid"), "wall_s": elapsed, "per_row": per_row}
    out.summary_file.write_text(json.dumps(summary, indent=2))
    return summary


def evaluate(job: JobSpec, *, model_ref: str | None = None, samples: int = 3, out_dir: str | Path,
             device: str = "cpu", data_file: str | None = None,
             model_name: str | None = None) -> dict[str, Any]:
    """`model_ref` (default the job's model) is what loads; `model_name` what summary.json
    calls it (default `model_ref`): the `ft:` name a caller resolved to `model_ref`."""
    model_ref = model_ref or job.model
    try:
        return asyncio.run(_evaluate(job, model_ref, model_name or model_ref, samples,
                                     RunDir(out_dir), device, data_file))
    finally:
        release_free_memory()  # the eval's model and engine are gone: their pages too
