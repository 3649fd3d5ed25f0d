"""Which turns share a batch: the batcher waiting for live rollouts' tool calls
(`BatchingSampler.live`, up to `max_gather_s`) against closing a batch after a 2 ms window
with no new turn (`max_gather_s` 0: what it did before), on the demo's own workload:
FinQA-lite's baseline eval (bundled SmolLM2-135M, its tool server on loopback, the demo's
job), run twice in one process with the same seed, first the window alone, then waiting.

The engine's batch runs until its longest turn ends, so a turn that misses a batch waits for
all of it. Printed per run: wall time, engine batches and turns per batch, engine time, the
mean tool-call latency, reward and tool calls. Which turns share a batch changes which random
draws fall on which row, so the two runs sample different rollouts: compare walls with the
rollouts' token counts beside them.

    .venv/bin/python bench/batch_gather.py [--rows 8] [--samples 3]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentrft.engines.batcher import BatchingSampler  # noqa: E402
from agentrft.models.bundled import cache_root  # noqa: E402
from agentrft.train.evaluate import evaluate  # noqa: E402
from examples.finqa_lite.demo import config, job_spec, prepare_data  # noqa: E402
from examples.finqa_lite.server import ToolServer  # noqa: E402

SAMPLERS: list[BatchingSampler] = []
_init = BatchingSampler.__init__


def samplers_gathering_for(max_gather_s: float | None) -> None:
    """Every BatchingSampler built from now on waits up to `max_gather_s` (None: its default)."""
    def init(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        if max_gather_s is not None:
            self.max_gather_s = max_gather_s
        SAMPLERS.append(self)
    BatchingSampler.__init__ = init


def rollout_stats(out_dir: Path) -> tuple[float, float]:
    """Mean tool-call latency (s) and mean total tokens of the run's rollouts."""
    records = [json.loads(line) for line in (out_dir / "rollouts.jsonl").read_text().splitlines()]
    latencies = [c["latency_s"] for r in records for c in r["tool_calls"] if c.get("latency_s")]
    return (sum(latencies) / max(1, len(latencies)),
            sum(r["total_tokens"] for r in records) / max(1, len(records)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="batch_gather-"))

    cfg = replace(config(), n_valid=args.rows)
    corpus_dir, data = prepare_data(out, cfg)
    token = secrets.token_urlsafe(16)
    rows = []
    with ToolServer(corpus_dir, token=token, cache_dir=cache_root() / "finqa_lite" / "cache",
                    build_index=True) as server:
        job = job_spec(cfg, data, {n: server.url(n) for n in ("search", "list", "cat")}, token)
        for name, gather in (("2 ms window (before)", 0.0), ("waits for live rollouts", None)):
            samplers_gathering_for(gather)
            SAMPLERS.clear()
            t0 = time.perf_counter()
            run_dir = out / ("window" if gather == 0.0 else "live")
            s = evaluate(job, samples=args.samples, out_dir=run_dir)
            wall = time.perf_counter() - t0
            batches = sum(x.batches for x in SAMPLERS)
            turns = sum(x.turns for x in SAMPLERS)
            engine_s = sum(x.engine_time_s for x in SAMPLERS)
            latency, tokens = rollout_stats(run_dir)
            rows.append((name, wall, batches, turns / max(1, batches), engine_s, latency, tokens,
                         s["mean_reward"], s.get("valid_tool_calls_per_rollout")))
            print(f"{name}: {wall:.0f} s", flush=True)

    base = rows[0][1]
    print(f"\nFinQA-lite baseline eval ({cfg.task} task), {args.rows} rows x {args.samples}, "
          "bundled SmolLM2-135M, CPU")
    print("| batcher | wall s | vs before | engine batches | turns/batch | engine s "
          "| tool latency s | tokens/rollout | reward | tool calls/rollout |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, wall, batches, per, engine_s, latency, tokens, reward, calls in rows:
        calls_s = "-" if calls is None else f"{calls:.2f}"
        print(f"| {name} | {wall:.0f} | {base / wall:.2f}x | {batches} | {per:.1f} | {engine_s:.0f} "
              f"| {latency:.2f} | {tokens:.0f} | {reward:.3f} | {calls_s} |")


if __name__ == "__main__":
    main()
