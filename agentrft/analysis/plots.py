"""The report's figures, drawn on matplotlib's Agg canvas (no display, no pyplot state).

Each function writes one PNG and returns its path. Output is deterministic for the same input
and matplotlib version: no random jitter (overlapping points grow instead), no timestamp.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agentrft.analysis.compare import Comparison, EvalRun

BASELINE_COLOR, FINAL_COLOR = "#7f8c8d", "#2e86de"
QUADRANT_COLORS = {"better_fewer": "#27ae60", "better_more": "#f39c12",
                   "worse_fewer": "#8e44ad", "worse_more": "#c0392b", "unchanged": "#95a5a6"}
MAX_TICK_LABELS = 40


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})  # no version stamp in the file
    return path


def _dot_size(count: int) -> float:
    return 18.0 + 22.0 * (count - 1)


def plot_variance(run: EvalRun, path: Path) -> Path:
    """Per validation row, its N rewards as dots (bigger where several coincide), the mean
    (red bar) and the best (green ring); rows sorted by mean. Rows with headroom between mean
    and best are where RL has signal to learn from."""
    rows = sorted((r for r in run.rows.values() if r.n), key=lambda r: (r.mean, r.row_index))
    fig = _figure(max(6.0, min(16.0, 0.25 * len(rows) + 4)), 4.5)
    ax = fig.add_subplot()
    for x, row in enumerate(rows):
        counts = sorted(Counter(row.rewards).items())
        ax.scatter([x] * len(counts), [v for v, _ in counts], s=[_dot_size(c) for _, c in counts],
                   color=BASELINE_COLOR, alpha=0.7, zorder=2,
                   label="sample reward" if x == 0 else None)
        ax.scatter([x], [row.mean], marker="_", s=260, color="#c0392b", linewidths=2.5, zorder=3,
                   label="row mean" if x == 0 else None)
        ax.scatter([x], [row.best], marker="o", s=120, facecolors="none", edgecolors="#27ae60",
                   linewidths=1.5, zorder=4, label="row best" if x == 0 else None)
    stats = run.stats()
    if rows:
        ax.axhline(stats["mean_reward"], color="#c0392b", linestyle=":", linewidth=1,
                   label=f"mean {stats['mean_reward']:.3f}")
        ax.axhline(stats["best_of_n_reward"], color="#27ae60", linestyle=":", linewidth=1,
                   label=f"best-of-{stats['samples_per_row']} {stats['best_of_n_reward']:.3f}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # off the dots
    else:
        ax.text(0.5, 0.5, "no scored rollouts", ha="center", va="center", transform=ax.transAxes)
    if 0 < len(rows) <= MAX_TICK_LABELS:
        ax.set_xticks(range(len(rows)), [str(r.row_index) for r in rows], fontsize=7)
        ax.set_xlabel("validation row (sorted by mean reward)")
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(rows)} validation rows, sorted by mean reward")
    ax.set_xlim(-0.7, max(len(rows), 1) - 0.3)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("reward")
    ax.set_title("Baseline variance: per-row rewards of N samples")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_reward_curves(metrics: list[dict[str, Any]], path: Path) -> Path:
    """train_reward_mean per training step; valid_reward_mean at eval steps (step 0 = baseline)."""
    fig = _figure()
    ax = fig.add_subplot()
    train = [(m["step"], m["train_reward_mean"]) for m in metrics
             if m.get("train_reward_mean") is not None and "step" in m]
    valid = [(m["step"], m["valid_reward_mean"]) for m in metrics
             if m.get("valid_reward_mean") is not None and "step" in m]
    if train:
        ax.plot(*zip(*train), color=BASELINE_COLOR, marker=".", label="train_reward_mean")
    if valid:
        ax.plot(*zip(*valid), color=FINAL_COLOR, marker="o", label="valid_reward_mean")
    if train or valid:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no reward metrics", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title("Reward during training")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_tool_calls(comparison: Comparison, path: Path) -> Path:
    """Tool calls per rollout, all tools and each tool, baseline vs final, as grouped bars."""
    b, f = comparison.baseline_stats, comparison.final_stats
    labels = ["all tools", *comparison.tools]
    keys = ["tool_calls_per_rollout", *(f"tool_calls_per_rollout.{t}" for t in comparison.tools)]
    fig = _figure(max(6.0, min(16.0, 1.2 * len(labels) + 3)), 4.5)
    ax = fig.add_subplot()
    xs = range(len(labels))
    width = 0.38
    for offset, stats, name, color in ((-width / 2, b, "baseline", BASELINE_COLOR),
                                       (width / 2, f, "final", FINAL_COLOR)):
        bars = ax.bar([x + offset for x in xs], [stats[k] for k in keys], width, label=name,
                      color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("tool calls per rollout")
    ax.set_title("Tool calls per rollout, before vs after")
    ax.margins(y=0.15)
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_delta_scatter(comparison: Comparison, path: Path) -> Path:
    """Δreward vs Δtool-calls per row; quadrant lines at 0 and counts in the corners. A point on
    x = 0 counts as `fewer` (no more calls); a point on y = 0 as `unchanged`."""
    fig = _figure(6.5, 5.5)
    ax = fig.add_subplot()
    points = Counter((d.d_calls, d.d_reward, d.quadrant) for d in comparison.rows)
    for (dc, dr, q), count in sorted(points.items()):
        ax.scatter([dc], [dr], s=_dot_size(count) * 1.5, color=QUADRANT_COLORS[q], alpha=0.75,
                   edgecolors="white", linewidths=0.5, zorder=3)
    xmax = max([abs(d.d_calls) for d in comparison.rows] + [0.5]) * 1.25
    ymax = max([abs(d.d_reward) for d in comparison.rows] + [0.1]) * 1.25
    ax.set_xlim(-xmax, xmax)
    ax.set_ylim(-ymax, ymax)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axvline(0, color="black", linewidth=0.8)
    q = comparison.quadrants
    corners = (("better_fewer", 0.02, 0.98, "left", "top"), ("better_more", 0.98, 0.98, "right", "top"),
               ("worse_fewer", 0.02, 0.02, "left", "bottom"),
               ("worse_more", 0.98, 0.02, "right", "bottom"))
    for key, x, y, ha, va in corners:
        side, calls = key.split("_")
        label = f"{side} + {'same or fewer' if calls == 'fewer' else 'more'} calls: {q[key]}"
        ax.text(x, y, label, transform=ax.transAxes,
                ha=ha, va=va, fontsize=9, color=QUADRANT_COLORS[key], fontweight="bold")
    ax.set_xlabel("Δ tool calls per rollout (final − baseline)")
    ax.set_ylabel("Δ mean reward (final − baseline)")
    ax.set_title(f"Per-row change ({len(comparison.rows)} rows; unchanged reward: {q['unchanged']})")
    ax.grid(alpha=0.3)
    return _save(fig, path)
