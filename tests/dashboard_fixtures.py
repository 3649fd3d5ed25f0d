"""A synthetic run directory shaped like the trainer's (metrics.jsonl, rollouts.jsonl,
events.jsonl), registered as a finished job in a JobStore: for the dashboard's API tests and
for `bench/dashboard_load.py` (500 steps, 50,000 rollouts). Seeded, so the same arguments
write the same bytes.

    job_id, run_dir = synthesize_job(store, steps=20, rows=4, group=3, eval_every=5)
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

from agentrft.jobs.store import JobStore

TOOLS = ("search", "cat")
SYSTEM = ("You answer questions about company filings. Call the tools to find the report, "
          "read it, then answer with the number only. ") * 6  # ~700 characters, like a real prompt


def _rollout(rng: random.Random, step: int, phase: str, row: int, k: int, progress: float
             ) -> dict[str, Any]:
    n_calls = rng.choice([0, 1, 1, 2, 2, 3, 4]) if progress < 0.5 else rng.choice([1, 1, 2, 2, 3])
    names = [rng.choice(TOOLS) for _ in range(n_calls)]
    calls = [{"turn": t, "call_id": f"call_{step}_{row}_{k}_{t}", "name": name,
              "arguments": json.dumps({"query": f"company {row} revenue", "page": t}),
              "output": f"report {row}-{t}: revenue {100 + row}.{t} million " + "x" * 300,
              "is_error": rng.random() < 0.05, "latency_s": round(rng.uniform(0.01, 0.3), 4),
              "status_code": 200} for t, name in enumerate(names)]
    reward = round(min(1.0, max(0.0, rng.gauss(0.2 + 0.6 * progress, 0.25))), 2)
    discarded = rng.random() < 0.01
    question = f"Q{row}: what was the revenue of company {row} in FY2020?"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    for c in calls:
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [{"id": c["call_id"], "type": "function",
                                         "function": {"name": c["name"], "arguments": c["arguments"]}}]})
        messages.append({"role": "tool", "tool_call_id": c["call_id"], "content": c["output"]})
    answer = f"{100 + row}.0 million"
    messages.append({"role": "assistant", "content": answer})
    tokens = 20 + 30 * n_calls + rng.randint(0, 20)
    return {"step": step, "phase": phase, "trace_id": f"trace_{phase}_{step}_{row}_{k}",
            "row_index": row, "status": "discarded" if discarded else "completed",
            "discard_reason": "tool server 503" if discarded else None,
            "reward": None if discarded else reward, "shaped_reward": None if discarded else reward,
            "grader": None if discarded else {
                "reward": reward, "sub_rewards": {"numeric": reward, "sources": 1.0},
                "metadata": {"name": "finqa", "type": "multi", "errors": {}}},
            "final_text": answer, "turns": n_calls + 1, "messages": messages,
            "tool_calls": calls, "prompt_tokens": 300, "completion_tokens": tokens,
            "reasoning_tokens": 0, "total_tokens": 300 + tokens + 80 * n_calls,
            "timing": {"grading": 0.01}}


def _metrics(rollouts: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    scored = [r["reward"] for r in rollouts if r["reward"] is not None]
    p = "" if prefix == "train" else "valid_"
    calls = [c for r in rollouts for c in r["tool_calls"]]
    n = len(rollouts)
    out: dict[str, Any] = {f"{prefix}_reward_mean": sum(scored) / len(scored) if scored else None,
                           f"{prefix}_reward_mean.numeric": sum(scored) / len(scored) if scored else None,
                           f"{p}tool_calls_per_rollout": len(calls) / n}
    for name in TOOLS:
        out[f"{p}tool_calls_per_rollout.{name}"] = sum(c["name"] == name for c in calls) / n
    out[f"{p}completion_tokens_mean"] = sum(r["completion_tokens"] for r in rollouts) / n
    out[f"{p}reasoning_tokens_mean"] = 0.0
    out[f"{p}tokens_per_tool_call_mean"] = (
        sum(r["completion_tokens"] for r in rollouts if r["tool_calls"]) / len(calls) if calls else None)
    out[f"{p}tool_latency_mean"] = sum(c["latency_s"] for c in calls) / len(calls) if calls else None
    out[f"{p}tool_errors"] = float(sum(c["is_error"] for c in calls))
    out[f"{p}tool_infra_failures"] = float(sum(r["status"] == "discarded" for r in rollouts))
    out[f"{p}discarded_rollouts"] = float(sum(r["status"] == "discarded" for r in rollouts))
    out[f"{p}budget_exceeded_rollouts"] = 0.0
    return out


def synthesize_run(run_dir: Path, *, steps: int, rows: int, group: int, eval_every: int,
                   eval_rows: int | None = None, eval_samples: int = 2, seed: int = 0
                   ) -> list[dict[str, Any]]:
    """Write the run dir; returns its metrics records. Train steps 1..steps hold rows × group
    rollouts each; evals (step 0 and every eval_every steps) eval_rows × eval_samples."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_rows = rows if eval_rows is None else eval_rows
    metrics = []
    with (run_dir / "rollouts.jsonl").open("w") as out:
        def write(batch):
            out.write("".join(json.dumps(r) + "\n" for r in batch))

        def evaluate(step: int) -> dict[str, Any]:
            batch = [_rollout(rng, step, "eval", row, k, step / steps)
                     for k in range(eval_samples) for row in range(eval_rows)]
            write(batch)
            return {**_metrics(batch, "valid"), "timing.eval": 0.5 + rng.random()}

        metrics.append({"step": 0, **evaluate(0)})
        for step in range(1, steps + 1):
            batch = [_rollout(rng, step, "train", (step * rows + row) % 997, k, step / steps)
                     for row in range(rows) for k in range(group)]
            write(batch)
            m = {"step": step, **_metrics(batch, "train"),
                 "zero_variance_groups": float(rng.randint(0, rows // 2)), "groups": float(rows),
                 "rollouts": float(len(batch)), "timing.sampling": 5 + rng.random(),
                 "timing.grading": 0.01, "timing.training": 2 + rng.random()}
            if step % eval_every == 0 or step == steps:
                m.update(evaluate(step))
            m["timing.full_iteration"] = m["timing.sampling"] + m["timing.training"] + m.get("timing.eval", 0)
            metrics.append(m)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return metrics


def synthesize_job(store: JobStore, **kwargs: Any) -> tuple[str, Path]:
    """A succeeded job in `store` whose run dir is synthesized; metrics events, checkpoints
    at the eval steps, and a warning event as the alarm writes it."""
    job = store.create_job({"model": "bundled:smollm2-135m-instruct", "training_file": "file-x",
                            "suffix": "synthetic", "method": {"type": "reinforcement"}})
    run_dir = Path(store.job_row(job["id"])["run_dir"])
    metrics = synthesize_run(run_dir, **kwargs)
    total = metrics[-1]["step"]
    for m in metrics:
        store.add_event(job["id"], f"Step {m['step']}/{total}", type="metrics", step=m["step"],
                        data={**m, "total_steps": total})
        if m.get("valid_reward_mean") is not None and m["step"] > 0:
            store.add_checkpoint(job["id"], m["step"], {"valid_reward_mean": m["valid_reward_mean"]},
                                 str(run_dir / "checkpoints" / f"step_{m['step']:06d}"),
                                 f"ft:base:synthetic:{job['id']}:ckpt-step-{m['step']}")
    store.add_event(job["id"], "valid_reward_mean jumped (synthetic)", level="warn", type="warning",
                    data={"kind": "valid_reward_jump", "step": total,
                          "examples": [{"trace_id": f"trace_eval_{total}_0_0", "step": total,
                                        "phase": "eval", "row_index": 0, "reward": 1.0,
                                        "tool_calls": 1, "final_text": "<b>42</b>"}]})
    for status in ("queued", "running"):  # the store allows only the lifecycle's moves
        store.set_status(job["id"], status)
    store.set_status(job["id"], "succeeded", fine_tuned_model=f"ft:base:synthetic:{job['id']}")
    return job["id"], run_dir


# --- a real server and a real browser --------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def serving(app, *, lifespan: str = "on"):
    """Run `app` with uvicorn in a background thread on a free loopback port; yields its URL."""
    from agentrft.loopback import LoopbackServer

    with LoopbackServer(app, lifespan=lifespan, name="dashboard-test-server") as server:
        yield f"http://127.0.0.1:{server.port}"


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


@contextlib.contextmanager
def headless_chromium(width: int = 1400, height: int = 1000):
    """Debian's chromium through its chromedriver (Selenium); no browser is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                "--proxy-server=direct://", "--proxy-bypass-list=*"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
