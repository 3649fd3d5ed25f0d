"""A quick look at the untrained model on a FinQA-lite task: the demo's baseline eval on a
few validation rows, without training. What a task change is checked with before a full demo.

    python bench/finqa_task_probe.py --task verify --rows 10 --samples 4 [--out /tmp/probe]
    python bench/finqa_task_probe.py --task browse --split-tool list --set max_new_tokens=96 \
        --set max_rollout_tokens=3072

Prints the reward (and per grader), best-of-N, zero-variance share, tool calls per rollout
(per tool, malformed among them), and how the rollouts that call one tool (`--split-tool`,
`cat` by default: those that open a report) compare with those that do not: their shares, mean rewards (overall and paired within the rows whose
group holds both), and the share of rows whose group mixes both patterns, the within-group
variance in calls that RL needs to learn to skip the extra call.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def call_pattern_stats(records: list[dict], tool: str = "cat") -> dict:
    """From rollouts.jsonl records: rewards, answer accuracy and call counts, split by whether
    the rollout made a (well-formed) call to `tool`."""
    scored = [r for r in records if r.get("status") != "discarded" and r.get("reward") is not None]

    def answer(r: dict) -> float:
        return ((r.get("grader") or {}).get("sub_rewards") or {}).get("answer", 0.0)

    def uses(r: dict) -> bool:
        return any(c.get("name") == tool for c in r["tool_calls"])

    with_tool = [r for r in scored if uses(r)]
    without = [r for r in scored if not uses(r)]
    n = max(len(scored), 1)
    per_tool = collections.Counter(c.get("name", "?") for r in scored for c in r["tool_calls"])
    groups: dict[int, list[dict]] = collections.defaultdict(list)
    for r in scored:
        groups[r["row_index"]].append(r)
    mixed = [g for g in groups.values() if any(map(uses, g)) and not all(map(uses, g))]
    calls_vary = [g for g in groups.values() if len({len(r["tool_calls"]) for r in g}) > 1]
    paired = [_mean([r["reward"] for r in g if not uses(r)]) - _mean([r["reward"] for r in g if uses(r)])
              for g in mixed]
    return {
        "rollouts": len(scored),
        "reward_mean": _mean([r["reward"] for r in scored]),
        "answer_mean": _mean([answer(r) for r in scored]),
        "tool_calls_per_rollout": sum(per_tool.values()) / n,
        **{f"tool_calls_per_rollout.{k}": v / n for k, v in sorted(per_tool.items())},
        f"{tool}_share": len(with_tool) / n,
        f"reward_mean_with_{tool}": _mean([r["reward"] for r in with_tool]),
        f"reward_mean_without_{tool}": _mean([r["reward"] for r in without]),
        f"answer_mean_with_{tool}": _mean([answer(r) for r in with_tool]),
        f"answer_mean_without_{tool}": _mean([answer(r) for r in without]),
        f"rows_mixing_{tool}_share": len(mixed) / max(len(groups), 1),
        "rows_with_varied_call_counts_share": len(calls_vary) / max(len(groups), 1),
        f"paired_gain_without_{tool}": _mean(paired),  # within mixed rows: without the tool minus with it
        "completion_tokens_mean": _mean([float(r["completion_tokens"]) for r in scored]),
        "total_tokens_mean": _mean([float(r["total_tokens"]) for r in scored]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="search")
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", default="/tmp/finqa_probe")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="hyperparameter override (int), e.g. max_new_tokens=80")
    ap.add_argument("--split-tool", default="cat",
                    help="split the rollouts by whether they called this tool (browse: list)")
    args = ap.parse_args()

    import secrets

    from agentrft.models.bundled import cache_root
    from agentrft.train.evaluate import evaluate
    from examples.finqa_lite.demo import config, job_spec, prepare_data
    from examples.finqa_lite.server import ToolServer

    cfg = config(task=args.task)
    overrides = {k: int(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = replace(cfg, n_valid=args.rows, overrides={**cfg.overrides, **overrides})
    out = Path(args.out)
    corpus_dir, data = prepare_data(out, cfg)
    token = secrets.token_urlsafe(16)
    with ToolServer(corpus_dir, token=token, cache_dir=cache_root() / "finqa_lite" / "cache",
                    build_index=True) as server:
        urls = {n: server.url(n) for n in ("search", "list", "cat")}
        job = job_spec(cfg, data, urls, token)
        s = evaluate(job, samples=args.samples, out_dir=out / "baseline")
    for k in ["mean_reward", "best_of_n_reward", "zero_variance_share", "run_to_run_std",
              "valid_tool_errors", "valid_truncated_rollouts", "valid_budget_exceeded_rollouts",
              "wall_s"]:
        v = s.get(k)
        print(f"{k:48s} {v:.3f}" if isinstance(v, float) else f"{k:48s} {v}")
    records = [json.loads(line) for line in
               (out / "baseline" / "rollouts.jsonl").read_text().splitlines()]
    for k, v in call_pattern_stats(records, args.split_tool).items():
        print(f"{k:48s} {v:.3f}" if isinstance(v, float) else f"{k:48s} {v}")
    shapes = collections.Counter(" > ".join(c.get("name", "?") for c in r["tool_calls"]) or "(none)"
                                 for r in records)
    print("call sequences:", dict(shapes.most_common(8)))


if __name__ == "__main__":
    main()
