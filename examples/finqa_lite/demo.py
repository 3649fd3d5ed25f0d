"""`agentrft demo`: the FinQA-lite walkthrough end to end on the bundled model.

    1. build the corpus (2,800 reports) and the questions, if missing (cached)
    2. start the tool server (search / list / cat) on loopback, with a bearer token
    3. baseline eval: every validation row `samples` times (per-row best, mean, spread)
    4. RL training on the training questions
    5. final eval of the trained model, the same way
    6. report: HTML + PNGs (variance plot, reward curves, tool calls per tool before/after,
       Δreward vs Δtool-calls scatter) and a summary table on the terminal
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentrft.models.bundled import cache_root
import yaml

from agentrft.spec.job import JobSpec, parse_job


HERE = Path(__file__).parent


@dataclass(frozen=True)
class DemoConfig:
    job_file: Path  # the job, with its hyperparameters; tools and data are filled in here
    n_train: int
    n_valid: int
    overrides: dict[str, Any] = field(default_factory=dict)  # hyperparameters
    task: str = "verify"  # questions.TASKS: which system prompt and demonstrations


CPU = DemoConfig(HERE / "job.yaml", n_train=200, n_valid=20)
GPU = DemoConfig(HERE / "job.gpu.yaml", n_train=400, n_valid=60)
QUICK = DemoConfig(HERE / "job.yaml", n_train=40, n_valid=8, overrides={
    "max_steps": 2, "eval_interval": 2, "batch_size": 2, "eval_samples": 2})


def job_spec(cfg: DemoConfig, data: Path, urls: dict[str, str], token: str) -> JobSpec:
    """The job file with this run's data files, tool server and overrides."""
    raw = yaml.safe_load(cfg.job_file.read_text(encoding="utf-8"))
    raw["training_file"], raw["validation_file"] = str(data / "train.jsonl"), str(data / "valid.jsonl")
    rl = raw["method"]["reinforcement"]
    headers = {"Authorization": f"Bearer {token}"}
    rl["tools"] = [{**t, "server_url": urls[t["name"]], "headers": headers} for t in rl["tools"]]
    rl["hyperparameters"] = {**rl["hyperparameters"], **cfg.overrides}
    return parse_job(raw, file=str(cfg.job_file))


def prepare_data(out: Path, cfg: DemoConfig) -> tuple[Path, Path]:
    """The corpus (cached across runs) and this run's question files."""
    from examples.finqa_lite import corpus as corpus_mod
    from examples.finqa_lite import questions

    corpus_dir = corpus_mod.write_corpus(cache_root() / "finqa_lite" / "corpus-seed0", seed=0)
    questions.write_rows(out / "data", corpus_mod.generate_corpus(seed=0), seed=0,
                         n_train=cfg.n_train, n_valid=cfg.n_valid, task=cfg.task)
    return corpus_dir, out / "data"


def config(*, quick: bool = False, device: str = "cpu", task: str = "verify",
           overrides: dict[str, Any] | None = None) -> DemoConfig:
    """The demo's sizes for the device, with `task`'s prompt (the same job file: the tools,
    grader and budgets do not change between tasks) and hyperparameter `overrides` on top
    (`agentrft demo --set KEY=VALUE`; the job's validation names a bad key or value)."""
    from examples.finqa_lite.questions import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown FinQA-lite task {task!r}; expected one of {', '.join(TASKS)}")
    cfg = QUICK if quick else GPU if device.startswith("cuda") else CPU
    return replace(cfg, task=task, overrides={**cfg.overrides, **(overrides or {})})


def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, device: str = "cpu",
             task: str = "verify", overrides: dict[str, Any] | None = None,
             progress=print) -> dict[str, Any]:
    from agentrft.analysis.report import format_summary_table, write_report
    from agentrft.malloc import release_free_memory
    from agentrft.train.checkpoint import latest_checkpoint
    from agentrft.train.evaluate import evaluate
    from agentrft.train.loop import Trainer
    from examples.finqa_lite.server import ToolServer

    cfg = config(quick=quick, device=device, task=task, overrides=overrides)
    out = Path(out)
    # a bad override fails here, naming its field, not after the corpus and the index are built
    job_spec(cfg, out / "data", {name: f"http://127.0.0.1/{name}" for name in ("search", "list", "cat")},
             token="unchecked")
    started = time.perf_counter()
    progress(f"[1/6] corpus and questions ({cfg.n_train} train, {cfg.n_valid} validation)")
    corpus_dir, data = prepare_data(out, cfg)
    token = secrets.token_urlsafe(16)
    with ToolServer(corpus_dir, token=token, cache_dir=cache_root() / "finqa_lite" / "cache",
                    build_index=True) as server:  # the index is built (or loaded) before timing
        progress(f"[2/6] tool server on {server.url('search').rsplit('/', 1)[0]}")
        urls = {name: server.url(name) for name in ("search", "list", "cat")}
        job = job_spec(cfg, data, urls, token)
        timings: dict[str, float] = {}
        peaks: dict[str, float] = {}  # the process's peak RSS so far, after each phase

        t0 = time.perf_counter()
        progress(f"[3/6] baseline eval: {cfg.n_valid} rows × {job.hp.samples_per_eval_row}")
        baseline = evaluate(job, samples=job.hp.samples_per_eval_row, out_dir=out / "baseline", device=device)
        timings["baseline_eval"] = time.perf_counter() - t0
        peaks["baseline_eval"] = peak_rss_gib()

        t0 = time.perf_counter()
        progress(f"[4/6] training: {job.hp.max_steps} steps of {job.hp.rows_per_step} rows × "
                 f"{job.hp.group_size} rollouts")

        def on_step(report) -> None:
            m = report.metrics
            if report.step:
                progress(f"      step {report.step}/{report.total_steps}: reward "
                         f"{m.get('train_reward_mean') or 0:.3f}, tool calls/rollout "
                         f"{m.get('tool_calls_per_rollout') or 0:.2f}, "
                         f"{m.get('timing.full_iteration', 0):.0f} s")

        trainer = Trainer(job, out / "run", device=device, on_step=on_step, evaluate=False)
        asyncio.run(trainer.run_async())
        del trainer  # its policy, optimizer and engine: not held through the final eval
        gc.collect()
        release_free_memory()
        timings["training"] = time.perf_counter() - t0
        peaks["training"] = peak_rss_gib()
        final_ckpt = latest_checkpoint(out / "run")

        t0 = time.perf_counter()
        progress(f"[5/6] final eval of {final_ckpt.name}")
        final = evaluate(job, model_ref=str(final_ckpt), samples=job.hp.samples_per_eval_row,
                         out_dir=out / "final", device=device)
        timings["final_eval"] = time.perf_counter() - t0
        peaks["final_eval"] = peak_rss_gib()

    timings["total"] = time.perf_counter() - started
    progress("[6/6] report")
    summary = write_report(out / "report", out / "baseline", out / "final", run_dir=out / "run",
                           title="FinQA-lite: bundled SmolLM2-135M before and after RL",
                           wall_times=timings)
    progress(format_summary_table(summary))
    summary["result"] = result = {**verdict(baseline, final), "peak_rss_gib": peaks}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    progress(result["text"])
    progress("peak RSS so far after the baseline eval, training, final eval: "
             + ", ".join(f"{gib:.2f}" for gib in peaks.values()) + " GiB")
    progress(f"report: {out / 'report' / 'report.html'}")
    return summary


def peak_rss_gib() -> float:
    """The highest RSS this process has had so far (the kernel's own count, as `time -v`
    reports it; kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def verdict(baseline: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """Did training help? A paired two-level bootstrap over validation rows and their passes
    (agentrft/analysis/significance.py): the gain counts when its 95% interval is above zero.
    The baseline's run-to-run spread (std of its passes' means) is reported beside it."""
    from agentrft.analysis.significance import paired_bootstrap

    def rewards(summary):
        return {r["row_index"]: r["rewards"] for r in summary["per_row"]}

    paired = paired_bootstrap(rewards(baseline), rewards(final))
    spread = baseline.get("run_to_run_std")
    text = (f"validation reward {baseline['mean_reward']:.3f} -> {final['mean_reward']:.3f}; "
            f"paired gain over {paired.rows} rows {paired.gain:+.3f}, 95% CI "
            f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]: "
            + ("training helped" if paired.significant
               else "NOT significant (the interval reaches zero)")
            + (f"; baseline run-to-run spread {spread:.3f}" if spread is not None else ""))
    return {"baseline_mean_reward": baseline["mean_reward"], "final_mean_reward": final["mean_reward"],
            "gain": paired.gain, "paired_bootstrap": paired.to_dict(),
            "significant": paired.significant, "baseline_run_to_run_std": spread,
            "gain_over_spread": paired.gain / spread if spread else None,
            "baseline_pass_means": baseline.get("pass_mean_rewards"),
            "final_pass_means": final.get("pass_mean_rewards"), "text": text}
