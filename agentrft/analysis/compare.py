"""Two evaluations of the same validation rows, side by side: the baseline and the trained model.

An evaluation is N rollouts per validation row, read from `rollouts.jsonl` (an `evaluate`
output dir, or one eval step of a training run dir). The definitions the report states:

- **Row reward**: mean of the row's *scored* rollouts (not discarded, reward not None), as in
  `train.metrics.per_row_summary`; best = max, std = population std.
- **Run reward** (`mean_reward`, `best_of_n_reward`, `mean_row_std`): the mean over rows of the
  row mean / best / std, as in `train.evaluate.summarize`.
- **Tool calls, completion tokens per rollout**: over *all* rollouts, discarded included, as in
  `train.metrics.rollout_metrics`. Tool latency: mean over calls, malformed calls excluded.
- **Δreward** = final row mean − baseline row mean; **Δcalls** = final − baseline mean tool calls
  per rollout of that row. Only rows scored in both runs are compared.
- **Quadrants** (`QUADRANTS`): |Δreward| ≤ tol → `unchanged`, whatever the calls did. Otherwise
  `better_*` if Δreward > 0, `worse_*` if < 0; `*_fewer` if Δcalls ≤ tol (fewer *or the same*
  calls: not more), `*_more` if Δcalls > tol. tol = 1e-9 absorbs float noise in the means.
- **Repeat bigrams**: in each rollout, the tool names in call order (by turn, then as recorded
  within a turn); every adjacent pair with the same name counts once, under that name:
  search, search, search, cat → {"search": 2}. Summed over rollouts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrft.train.records import ROLLOUTS, RunDir, read_jsonl

TOL = 1e-9
QUADRANTS = ("better_fewer", "better_more", "worse_fewer", "worse_more", "unchanged")
MALFORMED = "(malformed)"  # the rollout loop's name for a call it could not parse


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


@dataclass(frozen=True)
class RolloutView:
    """The parts of one rollouts.jsonl line the report needs."""

    row_index: int
    reward: float | None
    status: str
    tools: tuple[str, ...]  # tool names in call order
    latencies: tuple[float, ...]  # parallel to `tools`
    tool_errors: int
    completion_tokens: int
    turns: int
    final_text: str
    question: str  # the row's first user message, for people reading examples
    trace_id: str

    @property
    def scored(self) -> bool:
        return self.status != "discarded" and self.reward is not None

    def repeat_bigrams(self) -> Counter[str]:
        return Counter(a for a, b in zip(self.tools, self.tools[1:]) if a == b)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> RolloutView:
        calls = sorted(rec.get("tool_calls") or [], key=lambda c: c.get("turn", 0))  # stable
        reward = rec.get("reward")
        return cls(
            row_index=int(rec["row_index"]),
            reward=None if reward is None else float(reward),
            status=rec.get("status") or "completed",
            tools=tuple(c.get("name") or MALFORMED for c in calls),
            latencies=tuple(float(c.get("latency_s") or 0.0) for c in calls),
            tool_errors=sum(bool(c.get("is_error")) for c in calls),
            completion_tokens=int(rec.get("completion_tokens") or 0),
            turns=int(rec.get("turns") or 0),
            final_text=rec.get("final_text") or "",
            question=_first_user_text(rec.get("messages") or []),
            trace_id=rec.get("trace_id") or "",
        )


def _first_user_text(messages: list[dict[str, Any]]) -> str:
    for m in messages:
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


@dataclass(frozen=True)
class RowEval:
    """The N rollouts of one validation row."""

    row_index: int
    rollouts: tuple[RolloutView, ...]

    @property
    def rewards(self) -> list[float]:
        return [r.reward for r in self.rollouts if r.scored]

    @property
    def n(self) -> int:
        return len(self.rewards)

    @property
    def mean(self) -> float | None:
        return _mean(self.rewards)

    @property
    def best(self) -> float | None:
        return max(self.rewards) if self.rewards else None

    @property
    def std(self) -> float | None:
        m = self.mean
        return None if m is None else _mean([(x - m) ** 2 for x in self.rewards]) ** 0.5

    @property
    def tool_calls_mean(self) -> float:
        return sum(len(r.tools) for r in self.rollouts) / len(self.rollouts)

    def tool_calls_by_tool(self) -> dict[str, float]:
        counts = Counter(name for r in self.rollouts for name in r.tools)
        return {name: counts[name] / len(self.rollouts) for name in sorted(counts)}

    @property
    def completion_tokens_mean(self) -> float:
        return sum(r.completion_tokens for r in self.rollouts) / len(self.rollouts)

    @property
    def latency_mean(self) -> float | None:
        return _mean([lat for r in self.rollouts
                      for name, lat in zip(r.tools, r.latencies) if name != MALFORMED])

    @property
    def best_rollout(self) -> RolloutView:
        """The highest-reward scored rollout (the first on ties); else the first rollout."""
        scored = [r for r in self.rollouts if r.scored]
        return max(scored, key=lambda r: r.reward) if scored else self.rollouts[0]


@dataclass(frozen=True)
class EvalRun:
    source: str
    step: int | None
    rows: dict[int, RowEval]  # by row_index, ascending
    wall_s: float | None = None
    model: str | None = None

    @property
    def rollouts(self) -> list[RolloutView]:
        return [r for row in self.rows.values() for r in row.rollouts]

    def tool_names(self) -> list[str]:
        return sorted({name for r in self.rollouts for name in r.tools})

    def stats(self, tools: list[str] | None = None) -> dict[str, Any]:
        """Flat run statistics, DESIGN.md names where one exists (`tool_calls_per_rollout.search`).
        `tools` fixes the per-tool keys (0.0 for a tool this run never called)."""
        rollouts = self.rollouts
        n = max(len(rollouts), 1)
        scored_rows = [row for row in self.rows.values() if row.n]
        calls = Counter(name for r in rollouts for name in r.tools)
        repeats = sum((r.repeat_bigrams() for r in rollouts), Counter())
        out: dict[str, Any] = {
            "rows": len(scored_rows),
            "rollouts": len(rollouts),
            "scored_rollouts": sum(r.scored for r in rollouts),
            "discarded_rollouts": sum(r.status == "discarded" for r in rollouts),
            "samples_per_row": max((len(row.rollouts) for row in self.rows.values()), default=0),
            "mean_reward": _mean([row.mean for row in scored_rows]),
            "best_of_n_reward": _mean([row.best for row in scored_rows]),
            "mean_row_std": _mean([row.std for row in scored_rows]),
            "zero_variance_share": _mean([float(row.std == 0) for row in scored_rows]),
            "tool_calls_per_rollout": sum(calls.values()) / n,
        }
        for name in tools if tools is not None else sorted(calls):
            out[f"tool_calls_per_rollout.{name}"] = calls[name] / n
        out["completion_tokens_mean"] = _mean([float(r.completion_tokens) for r in rollouts])
        out["tool_latency_mean"] = _mean([lat for r in rollouts for name, lat
                                          in zip(r.tools, r.latencies) if name != MALFORMED])
        out["tool_errors_per_rollout"] = sum(r.tool_errors for r in rollouts) / n
        out["repeat_bigrams"] = sum(repeats.values())
        for name in tools if tools is not None else sorted(repeats):
            out[f"repeat_bigrams.{name}"] = repeats[name]
        out["wall_s"] = self.wall_s
        return out


# ---------------------------------------------------------------- loading


def _eval_records(path: Path) -> list[dict[str, Any]]:
    """The eval rollouts of a run or eval dir, or of a rollouts.jsonl named directly."""
    file = path if path.is_file() else RunDir.existing(path).rollouts
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no {ROLLOUTS}")
    # lines written by hand may omit `phase`; evaluate and the trainer always write it
    return [r for r in read_jsonl(file) if r.get("phase", "eval") == "eval"]


def eval_steps(path: str | Path) -> list[int]:
    """The steps with eval rollouts in an eval dir (just [0]) or a training run dir."""
    return sorted({int(r.get("step", 0)) for r in _eval_records(Path(path))})


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """metrics.jsonl of a training run dir (one record per step; step 0 = baseline eval)."""
    return RunDir.existing(run_dir).read_metrics()


def rows_of(records: list[dict[str, Any]]) -> dict[int, RowEval]:
    """rollouts.jsonl records of one eval, grouped by row (ascending)."""
    grouped: dict[int, list[RolloutView]] = {}
    for rec in records:
        view = RolloutView.from_record(rec)
        grouped.setdefault(view.row_index, []).append(view)
    return {i: RowEval(i, tuple(grouped[i])) for i in sorted(grouped)}


def load_eval(path: str | Path, step: int | None = None) -> EvalRun:
    """The eval rollouts of an `evaluate` output dir, or of one eval `step` of a training run
    dir (step 0 = the baseline eval). step=None takes the only eval step there is; a run dir
    with several asks for one."""
    path = Path(path)
    records = _eval_records(path)
    steps = sorted({int(r.get("step", 0)) for r in records})
    if not steps:
        raise ValueError(f"{path}: no eval rollouts")
    if step is None:
        if len(steps) > 1:
            raise ValueError(f"{path}: eval rollouts at steps {steps}; pass step=")
        step = steps[0]
    records = [r for r in records if int(r.get("step", 0)) == step]
    if not records:
        raise ValueError(f"{path}: no eval rollouts at step {step} (steps with some: {steps})")
    rows = rows_of(records)

    run = RunDir.existing(path if path.is_dir() else path.parent)
    summary = run.summary()  # an evaluate output dir; {} for a training run dir
    wall_s, model = summary.get("wall_s"), summary.get("model")
    for m in run.read_metrics():  # a training run dir: the eval time of that step
        if m.get("step") == step and m.get("timing.eval") is not None:
            wall_s = m["timing.eval"]
    return EvalRun(source=str(path), step=step, rows=rows, wall_s=wall_s, model=model)


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True)
class RowDelta:
    row_index: int
    baseline_mean: float
    final_mean: float
    d_reward: float
    baseline_calls: float
    final_calls: float
    d_calls: float
    quadrant: str


def quadrant(d_reward: float, d_calls: float, tol: float = TOL) -> str:
    """See the module docstring: reward ties are `unchanged`; equal calls count as `fewer`."""
    if abs(d_reward) <= tol:
        return "unchanged"
    side = "better" if d_reward > 0 else "worse"
    return f"{side}_{'fewer' if d_calls <= tol else 'more'}"


@dataclass(frozen=True)
class Comparison:
    baseline: EvalRun
    final: EvalRun
    rows: tuple[RowDelta, ...]  # rows scored in both runs, by row_index
    quadrants: dict[str, int]  # every key of QUADRANTS
    unmatched_rows: tuple[int, ...]  # rows present in one run only, or scored in one only
    tools: tuple[str, ...]  # every tool either run called
    baseline_stats: dict[str, Any] = field(default_factory=dict)
    final_stats: dict[str, Any] = field(default_factory=dict)

    def top_examples(self, k: int = 3) -> dict[str, list[RowDelta]]:
        """Per quadrant, the k rows with the largest |Δreward| (then |Δcalls|, then row index)."""
        out: dict[str, list[RowDelta]] = {q: [] for q in QUADRANTS}
        for d in sorted(self.rows, key=lambda d: (-abs(d.d_reward), -abs(d.d_calls), d.row_index)):
            if len(out[d.quadrant]) < k:
                out[d.quadrant].append(d)
        return out


def compare(baseline: EvalRun, final: EvalRun, *, tol: float = TOL) -> Comparison:
    deltas = []
    for i in sorted(set(baseline.rows) & set(final.rows)):
        b, f = baseline.rows[i], final.rows[i]
        if b.mean is None or f.mean is None:
            continue
        d_reward, d_calls = f.mean - b.mean, f.tool_calls_mean - b.tool_calls_mean
        deltas.append(RowDelta(i, b.mean, f.mean, d_reward, b.tool_calls_mean, f.tool_calls_mean,
                               d_calls, quadrant(d_reward, d_calls, tol)))
    counts = Counter(d.quadrant for d in deltas)
    matched = {d.row_index for d in deltas}
    tools = sorted(set(baseline.tool_names()) | set(final.tool_names()))
    return Comparison(
        baseline=baseline, final=final, rows=tuple(deltas),
        quadrants={q: counts[q] for q in QUADRANTS},
        unmatched_rows=tuple(sorted((set(baseline.rows) | set(final.rows)) - matched)),
        tools=tuple(tools),
        baseline_stats=baseline.stats(tools), final_stats=final.stats(tools),
    )
