"""Measure the learning test's effect against its run-to-run spread, over seeds.

    python -m examples.lookup.spread --seeds 1 2 3 --out runs/spread

For each seed: the validation reward before training (step 0) and after the job's steps.
Prints each run and the mean and standard deviation of baseline, trained and gain.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from agentrft.spec import load_job
from agentrft.train.loop import train
from examples.lookup import task

JOB = Path(__file__).parent / "job.yaml"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", default="runs/spread")
    args = ap.parse_args()
    task.write(JOB.parent / "data")
    base, trained = [], []
    for seed in args.seeds:
        job = load_job(JOB)
        job = job.model_copy(update={"seed": seed})
        metrics = train(job, Path(args.out) / f"seed{seed}")
        evals = [m for m in metrics if "valid_reward_mean" in m]
        base.append(evals[0]["valid_reward_mean"])
        trained.append(evals[-1]["valid_reward_mean"])
        print(f"seed {seed}: baseline {base[-1]:.3f} -> trained {trained[-1]:.3f}", flush=True)
    print(summary(base, trained))


def summary(base: list[float], trained: list[float]) -> str:
    """Mean ± standard deviation of baseline, trained and gain over the seeds' runs."""
    gains = [t - b for b, t in zip(base, trained)]
    sd = statistics.pstdev
    return (f"baseline {statistics.mean(base):.3f} ± {sd(base):.3f}; trained "
            f"{statistics.mean(trained):.3f} ± {sd(trained):.3f}; gain {statistics.mean(gains):.3f} "
            f"± {sd(gains):.3f} over {len(base)} seeds")


if __name__ == "__main__":
    main()
