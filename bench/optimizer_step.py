"""One AdamW step over the bundled model's parameters (a full fine-tune): torch's default
`foreach` implementation (the baseline: what `Policy` used before) against the `fused` one
(`agentrft.train.policy.adamw`), and the plain per-tensor loop, timed in the same run.

Gradients are random (the step's cost does not depend on their values). Settings are
interleaved round by round, so a change of load on a shared machine hits them alike.

    .venv/bin/python bench/optimizer_step.py                  # CPU, 3 rounds × 5 steps
    .venv/bin/python bench/optimizer_step.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from agentrft.models.loading import load_model

KINDS = {"foreach (baseline)": {"foreach": True}, "fused": {"fused": True},
         "per-tensor loop": {"foreach": False}}


def step_seconds(params: list[torch.nn.Parameter], options: dict, steps: int, device) -> list[float]:
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.99), weight_decay=0.0, **options)
    opt.step()  # allocates the state: not timed
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    device = torch.device(args.device)
    model = load_model(args.model, device=args.device)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    n = sum(p.numel() for p in params)
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(args.rounds):
        for kind, options in KINDS.items():
            times[kind] += step_seconds(params, options, args.steps, device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# AdamW step, {args.model}: {n / 1e6:.1f}M trainable parameters in {len(params)} "
          f"tensors, {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load {load:.1f}; {args.rounds} rounds x {args.steps} steps, median")
    base = statistics.median(times["foreach (baseline)"])
    print("| implementation | s/step | min | max | vs foreach |")
    print("|---|---|---|---|---|")
    for kind, ts in times.items():
        med = statistics.median(ts)
        print(f"| {kind} | {med:.3f} | {min(ts):.3f} | {max(ts):.3f} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
