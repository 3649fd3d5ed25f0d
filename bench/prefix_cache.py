"""The kept prompt head (`TransformersEngine(prefix_cache=True)`) against recomputing it, on
the demo's own workload: FinQA-lite's baseline eval (bundled SmolLM2-135M, its tool server on
loopback, the demo's job), run twice in one process with the same seed, first without the
kept head, then with it.

An agent's turns reach the engine a few at a time: a rollout's second turn waits on its tool
call, so the batcher often holds one prompt, and every prompt starts with the task's ~1,000
tokens of system prompt, tools and demonstrations. Printed per run: wall time, prompt
positions run through the model in prefill (pads included) and those reused from the kept
head, the reward and tool calls. The same seed samples nearly the same rollouts: float
rounding differs between the two ways of computing the head, so now and then a sampled token
differs and a rollout takes another path.

    .venv/bin/python bench/prefix_cache.py [--rows 8] [--samples 3]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentrft.engines.transformers_engine import TransformersEngine  # noqa: E402
from agentrft.models.bundled import cache_root  # noqa: E402
from agentrft.train.evaluate import evaluate  # noqa: E402
from examples.finqa_lite.demo import config, job_spec, prepare_data  # noqa: E402
from examples.finqa_lite.server import ToolServer  # noqa: E402

ENGINES: list[TransformersEngine] = []
_init = TransformersEngine.__init__


def engines_with(prefix_cache: bool):
    """Every TransformersEngine built from now on keeps its head or not, and is recorded."""
    def init(self, *args, **kwargs):
        _init(self, *args, **{**kwargs, "prefix_cache": prefix_cache})
        ENGINES.append(self)
    TransformersEngine.__init__ = init


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="prefix_cache-"))

    cfg = replace(config(), n_valid=args.rows)
    corpus_dir, data = prepare_data(out, cfg)
    token = secrets.token_urlsafe(16)
    rows = []
    with ToolServer(corpus_dir, token=token, cache_dir=cache_root() / "finqa_lite" / "cache",
                    build_index=True) as server:
        job = job_spec(cfg, data, {n: server.url(n) for n in ("search", "list", "cat")}, token)
        for keep in (False, True):
            engines_with(keep)
            ENGINES.clear()
            t0 = time.perf_counter()
            s = evaluate(job, samples=args.samples, out_dir=out / f"keep-{keep}")
            wall = time.perf_counter() - t0
            computed = sum(e.prefill_tokens_run for e in ENGINES)
            reused = sum(e.prefill_tokens_reused for e in ENGINES)
            rows.append((keep, wall, computed, reused, s["mean_reward"],
                         s.get("valid_tool_calls_per_rollout")))
            print(f"prefix_cache={keep}: {wall:.0f} s", flush=True)

    base = rows[0][1]
    print(f"\nFinQA-lite baseline eval, {args.rows} rows x {args.samples}, bundled SmolLM2-135M, CPU")
    print("| kept head | wall s | vs recompute | prompt tokens run (pads included) | reused "
          "| reward | tool calls/rollout |")
    print("|---|---|---|---|---|---|---|")
    for keep, wall, computed, reused, reward, calls in rows:
        calls_s = "-" if calls is None else f"{calls:.2f}"
        print(f"| {'yes' if keep else 'no'} | {wall:.0f} | {base / wall:.2f}x | {computed:,} "
              f"| {reused:,} | {reward:.3f} | {calls_s} |")


if __name__ == "__main__":
    main()
