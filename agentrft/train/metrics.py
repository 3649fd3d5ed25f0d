"""Per-step metrics with DESIGN.md's names, computed from a list of rollouts.

Keys are flat: `tool_calls_per_rollout.search`, `valid_reward_mean.exact`, `timing.sampling`.
Means are over scored (non-discarded) rollouts unless the name says otherwise.
"""

from __future__ import annotations

from collections import Counter

from agentrft.rollout.types import Rollout


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def rollout_metrics(rollouts: list[Rollout], prefix: str) -> dict[str, float | None]:
    """prefix 'train' or 'valid'; tool and token statistics are reported for training rollouts
    without prefix and for validation rollouts with a `valid_` prefix."""
    scored = [r for r in rollouts if not r.discarded and r.reward is not None]
    p = "" if prefix == "train" else "valid_"
    out: dict[str, float | None] = {f"{prefix}_reward_mean": _mean([r.reward for r in scored])}
    by_grader: dict[str, list[float]] = {}
    for r in scored:
        result = r.grader_result or {}
        subs = result.get("sub_rewards") or {}
        if not subs:  # a single grader: report it under its own name
            subs = {(result.get("metadata") or {}).get("name") or "grader": r.reward}
        for key, value in subs.items():
            by_grader.setdefault(key, []).append(value)
    for key, values in sorted(by_grader.items()):
        out[f"{prefix}_reward_mean.{key}"] = _mean(values)

    calls = [c for r in rollouts for c in r.tool_calls]
    n = max(len(rollouts), 1)
    out[f"{p}tool_calls_per_rollout"] = len(calls) / n
    for name, count in sorted(Counter(c.name for c in calls).items()):
        out[f"{p}tool_calls_per_rollout.{name}"] = count / n
    out[f"{p}completion_tokens_mean"] = _mean([float(r.completion_tokens) for r in rollouts])
    out[f"{p}reasoning_tokens_mean"] = _mean([float(r.reasoning_tokens) for r in rollouts])
    out[f"{p}tokens_per_tool_call_mean"] = (
        sum(r.completion_tokens for r in rollouts if r.tool_calls) / len(calls) if calls else None)
    out[f"{p}tool_latency_mean"] = _mean([c.latency_s for c in calls if c.name != "(malformed)"])
    out[f"{p}tool_errors"] = float(sum(c.is_error for c in calls))
    out[f"{p}tool_infra_failures"] = float(sum(r.tool_infra_failures for r in rollouts))
    out[f"{p}discarded_rollouts"] = float(sum(r.discarded for r in rollouts))
    out[f"{p}budget_exceeded_rollouts"] = float(sum(r.status == "budget_exceeded" for r in rollouts))
    out[f"{p}truncated_rollouts"] = float(sum(r.status == "truncated" for r in rollouts))
    out[f"{p}turns_per_rollout"] = _mean([float(r.turns) for r in rollouts])
    # calls per turn that made any: a coding agent learns to issue many at once, in fewer turns
    turns_with_calls = sum(len({c.turn for c in r.tool_calls}) for r in rollouts)
    out[f"{p}parallel_tool_calls_per_turn"] = len(calls) / turns_with_calls if turns_with_calls else None
    return out


def per_row_summary(rollouts: list[Rollout]) -> list[dict]:
    """Per validation row: mean, best, spread (std), count and the rewards of its scored
    rollouts (the rewards feed the paired before/after comparison, analysis/significance.py)."""
    rows: dict[int, list[float]] = {}
    for r in rollouts:
        if not r.discarded and r.reward is not None:
            rows.setdefault(r.row_index, []).append(r.reward)
    out = []
    for idx, rewards in sorted(rows.items()):
        mean = sum(rewards) / len(rewards)
        std = (sum((x - mean) ** 2 for x in rewards) / len(rewards)) ** 0.5
        out.append({"row_index": idx, "n": len(rewards), "mean": mean, "best": max(rewards),
                    "std": std, "rewards": rewards})
    return out
