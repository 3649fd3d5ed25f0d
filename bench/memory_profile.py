"""Peak resident memory (RSS) of each phase of the FinQA-lite demo, on the bundled model.

    python bench/memory_profile.py              # the quick demo's sizes (8 valid × 2, 2 rows × 4)
    python bench/memory_profile.py --full       # the CPU demo's sizes (20 valid × 3, 6 rows × 4)
    python bench/memory_profile.py --steps 1    # fewer training steps

Phases, as `agentrft demo` runs them (examples/finqa_lite/demo.py): the tool server with its
search index, the baseline eval (a model and engine of its own), the trainer (its policy,
then per step the rollouts and `Policy.update`), the final eval of the last checkpoint.
A thread reads /proc/self/statm every 5 ms; a phase's peak is the highest RSS it saw while
the phase ran, so what an earlier phase left behind counts in later peaks (that is the point:
a process that never gives memory back peaks at the sum). `VmHWM` (the kernel's own peak) is
printed at the end to check that the sampler missed nothing.

Why RSS and not tracemalloc: torch's tensors are allocated by its C++ allocator, invisible
to tracemalloc; RSS is also what `/usr/bin/time -v` reports for the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def vm_hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples RSS in a background thread; `phase(name)` records the peak seen while it ran."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.rows: list[tuple[str, float, float, float, float]] = []  # name, start, peak, end, s
        self._active: list[list[int]] = []  # [peak] of each phase running (phases nest)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = rss_bytes()
            for peak in list(self._active):
                peak[0] = max(peak[0], now)
            time.sleep(self.interval_s)

    @contextmanager
    def phase(self, name: str):
        start = rss_bytes()
        peak = [start]
        self._active.append(peak)
        index = len(self.rows)
        self.rows.append((name, 0, 0, 0, 0))  # in the order phases began
        t0 = time.perf_counter()
        try:
            yield
        finally:
            # by identity: a nested phase's peak can equal its parent's ([x] == [x])
            self._active = [p for p in self._active if p is not peak]
            end = rss_bytes()
            self.rows[index] = (name, start / 2**30, max(peak[0], end) / 2**30, end / 2**30,
                                time.perf_counter() - t0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the CPU demo's sizes, not the quick one's")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the demo's)")
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = ap.parse_args(argv)

    sampler = RssSampler()
    with sampler.phase("imports"):
        import torch

        from agentrft.models.bundled import cache_root
        from agentrft.train import policy as policy_mod
        from agentrft.train.checkpoint import latest_checkpoint
        from agentrft.train.evaluate import evaluate
        from agentrft.train.loop import Trainer
        from examples.finqa_lite import demo
        from examples.finqa_lite.server import ToolServer

    cfg = demo.CPU if args.full else demo.QUICK
    if args.steps:
        cfg = demo.DemoConfig(cfg.job_file, cfg.n_train, cfg.n_valid,
                              {**cfg.overrides, "max_steps": args.steps, "eval_interval": args.steps})
    # Each update is its own phase; the rest of a step is its rollouts.
    update = policy_mod.Policy.update
    step_no = [0]

    def phased_update(self, seqs):
        step_no[0] += 1
        with sampler.phase(f"  step {step_no[0]}: Policy.update ({len(seqs)} seqs, "
                           f"{sum(len(s.token_ids) for s in seqs)} tokens)"):
            return update(self, seqs)

    policy_mod.Policy.update = phased_update

    tmp = tempfile.TemporaryDirectory(prefix="memory_profile-")
    out = Path(args.out or tmp.name)
    print(f"# memory_profile: FinQA-lite {'CPU demo' if args.full else 'quick demo'} sizes, "
          f"{cfg.n_valid} valid rows, overrides {cfg.overrides}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '-')}",
          flush=True)
    with sampler.phase("corpus + questions"):
        corpus_dir, data = demo.prepare_data(out, cfg)
    token = secrets.token_urlsafe(16)
    with sampler.phase("tool server + search index"):
        server = ToolServer(corpus_dir, token=token, cache_dir=cache_root() / "finqa_lite" / "cache",
                            build_index=True)
        server.__enter__()
    try:
        urls = {name: server.url(name) for name in ("search", "list", "cat")}
        job = demo.job_spec(cfg, data, urls, token)
        n = job.hp.samples_per_eval_row
        with sampler.phase(f"baseline eval ({cfg.n_valid} rows × {n})"):
            evaluate(job, samples=n, out_dir=out / "baseline", device="cpu")
        last = [time.perf_counter()]

        def on_step(report) -> None:
            if report.step:
                sampler.rows.append((f"  step {report.step} done", 0, rss_bytes() / 2**30,
                                     rss_bytes() / 2**30, time.perf_counter() - last[0]))
            last[0] = time.perf_counter()

        with sampler.phase(f"training ({job.hp.max_steps} steps × {job.hp.rows_per_step} rows × "
                           f"{job.hp.group_size})"):
            trainer = Trainer(job, out / "run", device="cpu", on_step=on_step, evaluate=False)
            asyncio.run(trainer.run_async())
            del trainer
        with sampler.phase(f"final eval ({cfg.n_valid} rows × {n})"):
            evaluate(job, model_ref=str(latest_checkpoint(out / "run")), samples=n,
                     out_dir=out / "final", device="cpu")
    finally:
        server.__exit__(None, None, None)
    sampler.close()
    print(f"{'phase':<62}{'start GB':>9}{'peak GB':>9}{'end GB':>8}{'s':>7}")
    for name, start, peak, end, secs in sampler.rows:
        print(f"{name:<62}{start:>9.2f}{peak:>9.2f}{end:>8.2f}{secs:>7.0f}")
    print(f"peak RSS (VmHWM): {vm_hwm_bytes() / 2**30:.2f} GB")
    tmp.cleanup()


if __name__ == "__main__":
    main()
