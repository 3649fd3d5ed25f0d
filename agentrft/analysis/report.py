"""The report of a run: baseline eval vs final eval of the same validation rows, plus curves.

    write_report(out_dir, baseline_dir, final_dir, run_dir=None) writes into out_dir:
        variance.png        the baseline's per-row rewards (N samples), mean and best
        reward_curves.png   train/valid reward per step (only with a run_dir)
        tool_calls.png      tool calls per rollout per tool, before vs after
        delta_scatter.png   Δreward vs Δtool-calls per row, quadrant counts
        report.html         self-contained page (images by relative path), model text escaped
        summary.json        the numbers; also returned

Definitions (row reward, quadrants, repeat bigrams) live in `agentrft.analysis.compare`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from agentrft.analysis.compare import (QUADRANTS, Comparison, EvalRun, RowDelta, compare,
                                       eval_steps, load_eval, read_metrics)

TEXT_CHARS = 2000  # model text kept per answer in summary.json and the page
QUADRANT_TEXT = {
    "better_fewer": "reward up, tool calls per rollout down or the same",
    "better_more": "reward up, tool calls per rollout up",
    "worse_fewer": "reward down, tool calls per rollout down or the same",
    "worse_more": "reward down, tool calls per rollout up",
    "unchanged": "reward the same (|Δreward| ≤ 1e-9), whatever the tool calls did",
}
HEAD_KEYS = ("mean_reward", "best_of_n_reward", "mean_row_std", "zero_variance_share",
             "tool_calls_per_rollout")
TAIL_KEYS = ("tool_errors_per_rollout", "completion_tokens_mean", "tool_latency_mean", "rows",
             "rollouts", "discarded_rollouts", "samples_per_row", "wall_s")


def _clip(text: str, limit: int = TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more chars]"


def _as_run(source: str | Path | EvalRun, step: int | None = None) -> EvalRun:
    return source if isinstance(source, EvalRun) else load_eval(source, step)


def _delta(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return b - a
    return None


def _example(c: Comparison, d: RowDelta) -> dict[str, Any]:
    b, f = c.baseline.rows[d.row_index].best_rollout, c.final.rows[d.row_index].best_rollout
    # each side's highest-reward sample: its answer, reward and tool-call sequence
    return {**_row_dict(d), "question": _clip(f.question or b.question),
            "baseline_answer": _clip(b.final_text), "baseline_answer_reward": b.reward,
            "baseline_answer_tools": list(b.tools),
            "final_answer": _clip(f.final_text), "final_answer_reward": f.reward,
            "final_answer_tools": list(f.tools)}


def _row_dict(d: RowDelta) -> dict[str, Any]:
    return {"row_index": d.row_index, "quadrant": d.quadrant, "baseline_mean": d.baseline_mean,
            "final_mean": d.final_mean, "d_reward": d.d_reward,
            "baseline_calls": d.baseline_calls, "final_calls": d.final_calls, "d_calls": d.d_calls}


def build_summary(c: Comparison, *, title: str = "agentrft report",
                  metrics: list[dict[str, Any]] | None = None,
                  wall_times: dict[str, float] | None = None, top_k: int = 3) -> dict[str, Any]:
    """The summary dict write_report saves and returns (no files touched)."""
    def side(run: EvalRun, stats: dict[str, Any]) -> dict[str, Any]:
        return {"source": run.source, "step": run.step, "model": run.model, **stats}

    delta_keys = [k for k in c.final_stats if k not in ("rows", "rollouts", "samples_per_row")]
    wall = {"baseline_eval": c.baseline.wall_s, "final_eval": c.final.wall_s}
    summary: dict[str, Any] = {
        "title": title,
        "baseline": side(c.baseline, c.baseline_stats),
        "final": side(c.final, c.final_stats),
        "delta": {k: _delta(c.baseline_stats.get(k), c.final_stats.get(k)) for k in delta_keys},
        "tools": list(c.tools),
        "rows_compared": len(c.rows),
        "unmatched_rows": list(c.unmatched_rows),
        "quadrants": dict(c.quadrants),
        "quadrant_definitions": dict(QUADRANT_TEXT),
        "top_examples": {q: [_example(c, d) for d in ds] for q, ds in c.top_examples(top_k).items()},
        "per_row": [_row_dict(d) for d in c.rows],
    }
    if metrics:
        train = [m for m in metrics if m.get("train_reward_mean") is not None]
        valid = [m for m in metrics if m.get("valid_reward_mean") is not None]
        summary["training"] = {
            "steps": max((m.get("step", 0) for m in metrics), default=0),
            "train_reward_mean_first": train[0]["train_reward_mean"] if train else None,
            "train_reward_mean_last": train[-1]["train_reward_mean"] if train else None,
            "valid_reward_mean": {str(m["step"]): m["valid_reward_mean"] for m in valid},
        }
        iters = [m["timing.full_iteration"] for m in metrics if m.get("timing.full_iteration")]
        wall["training"] = sum(iters) if iters else None
    wall.update(wall_times or {})
    summary["wall_s"] = {k: v for k, v in wall.items() if v is not None}
    return summary


def write_report(out_dir: str | Path, baseline_dir: str | Path | EvalRun | None,
                 final_dir: str | Path | EvalRun | None, run_dir: str | Path | None = None, *,
                 title: str = "agentrft report", wall_times: dict[str, float] | None = None,
                 top_k: int = 3) -> dict[str, Any]:
    """Write the PNGs, report.html and summary.json into out_dir; return the summary.

    baseline_dir / final_dir: an `evaluate` output dir, or an EvalRun (e.g.
    `load_eval(run_dir, step=0)`). Left None with a run_dir, they default to the run's first
    and last eval steps. `wall_times` (seconds, by name) are added to the summary's `wall_s`.
    """
    from agentrft.analysis import plots  # matplotlib only when drawing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (baseline_dir is None or final_dir is None) and run_dir is None:
        raise ValueError("write_report needs baseline_dir and final_dir, or a run_dir")
    steps = eval_steps(run_dir) if run_dir is not None else []
    baseline = _as_run(run_dir, steps[0]) if baseline_dir is None else _as_run(baseline_dir)
    final = _as_run(run_dir, steps[-1]) if final_dir is None else _as_run(final_dir)
    comparison = compare(baseline, final)
    metrics = read_metrics(run_dir) if run_dir is not None else []
    summary = build_summary(comparison, title=title, metrics=metrics, wall_times=wall_times,
                            top_k=top_k)

    files = [plots.plot_variance(baseline, out / "variance.png")]
    if run_dir is not None:
        files.append(plots.plot_reward_curves(metrics, out / "reward_curves.png"))
    files.append(plots.plot_tool_calls(comparison, out / "tool_calls.png"))
    files.append(plots.plot_delta_scatter(comparison, out / "delta_scatter.png"))
    summary["files"] = [p.name for p in files] + ["report.html", "summary.json"]
    (out / "report.html").write_text(render_html(summary), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    return summary


# ---------------------------------------------------------------- tables


def table_keys(summary: dict[str, Any]) -> list[str]:
    """The rows of the summary table, in order: rewards, tool calls (total, per tool), repeat
    bigrams, tokens, latency, counts, wall time."""
    tools = summary.get("tools", [])
    return [*HEAD_KEYS, *(f"tool_calls_per_rollout.{t}" for t in tools), "repeat_bigrams",
            *(f"repeat_bigrams.{t}" for t in tools), *TAIL_KEYS]


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return str(value)


def _rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    b, f, d = summary["baseline"], summary["final"], summary["delta"]
    return [(k, _fmt(b.get(k)), _fmt(f.get(k)), _fmt(d.get(k), signed=True))
            for k in table_keys(summary)]


def format_summary_table(summary: dict[str, Any]) -> str:
    """A plain-text table for the terminal: metric, baseline, final, Δ; then quadrants, times."""
    rows = [("metric", "baseline", "final", "delta"), *_rows(summary)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{r[0]:<{widths[0]}}  " + "  ".join(f"{r[i]:>{widths[i]}}" for i in (1, 2, 3))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    q = summary["quadrants"]
    lines.append("")
    lines.append(f"rows compared: {summary['rows_compared']}  quadrants: "
                 + "  ".join(f"{k.replace('_fewer', '+same-or-fewer').replace('_more', '+more')} {q[k]}"
                             for k in QUADRANTS) + " (calls per rollout)")
    if summary.get("wall_s"):
        lines.append("wall time: " + "  ".join(f"{k} {v:.1f}s" for k, v in summary["wall_s"].items()))
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 0.9em; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: 6px; max-height: 20em; overflow: auto; }
img { max-width: 100%; border: 1px solid #eee; }
.muted { color: #777; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], text_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="text">{_e(c)}</td>' if i in text_cols else f"<td>{_e(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(name: str, caption: str, files: list[str]) -> str:
    if name not in files:
        return f'<p class="muted">{_e(caption)}: not drawn (no training run dir given).</p>'
    return (f'<figure><img src="{_e(name)}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def render_html(summary: dict[str, Any]) -> str:
    b, f = summary["baseline"], summary["final"]
    files = summary.get("files", [])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(summary['title'])}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(summary['title'])}</h1>"]
    parts.append(f"<p>Baseline: <code>{_e(b['source'])}</code> (step {_e(b['step'])}"
                 f"{', model ' + _e(b['model']) if b.get('model') else ''}) · "
                 f"Final: <code>{_e(f['source'])}</code> (step {_e(f['step'])}"
                 f"{', model ' + _e(f['model']) if f.get('model') else ''}) · "
                 f"{summary['rows_compared']} rows compared, "
                 f"{b.get('samples_per_row')} / {f.get('samples_per_row')} samples per row.</p>")
    if summary["unmatched_rows"]:
        parts.append(f"<p class='muted'>Rows not scored in both runs (left out): "
                     f"{_e(summary['unmatched_rows'])}</p>")

    parts.append("<h2>Summary</h2>")
    parts.append(_table(["metric", "baseline", "final", "Δ"], [list(r) for r in _rows(summary)]))
    if summary.get("wall_s"):
        parts.append(_table(["wall time", "seconds"],
                            [[k, f"{v:.1f}"] for k, v in summary["wall_s"].items()]))

    parts.append("<h2>Figures</h2>")
    parts.append(_figure("variance.png", "Baseline variance: N rewards per row, mean and best", files))
    parts.append(_figure("reward_curves.png", "train_reward_mean and valid_reward_mean per step", files))
    parts.append(_figure("tool_calls.png", "Tool calls per rollout, baseline vs final", files))
    parts.append(_figure("delta_scatter.png", "Δreward vs Δtool-calls per row", files))

    parts.append("<h2>Quadrants</h2>")
    q = summary["quadrants"]
    parts.append(_table(["quadrant", "definition", "rows"],
                        [[k, summary["quadrant_definitions"][k], str(q[k])] for k in QUADRANTS],
                        text_cols=(1,)))
    parts.append("<p class='muted'>Δreward = final − baseline mean reward of the row; Δcalls = "
                 "final − baseline mean tool calls per rollout of the row. Repeat bigrams: "
                 "adjacent calls to the same tool within one rollout (search→search).</p>")

    parts.append("<h2>Top examples</h2>")
    for key in QUADRANTS:
        examples = summary["top_examples"][key]
        if not examples:
            continue
        definition = summary["quadrant_definitions"][key]
        parts.append(f"<h3>{_e(key)} <span class='muted'>({_e(definition)})</span></h3>")
        for ex in examples:
            parts.append(
                f"<h4>row {ex['row_index']}: reward {ex['baseline_mean']:.3f} → "
                f"{ex['final_mean']:.3f} (Δ {ex['d_reward']:+.3f}), tool calls {ex['baseline_calls']:.2f} → "
                f"{ex['final_calls']:.2f} (Δ {ex['d_calls']:+.2f})</h4>")
            if ex["question"]:
                parts.append(f"<p><b>Question</b></p><pre>{_e(ex['question'])}</pre>")
            for side in ("baseline", "final"):
                tools = " → ".join(ex[f"{side}_answer_tools"]) or "no tool calls"
                parts.append(f"<p><b>{side.capitalize()} answer</b> <span class='muted'>(best of "
                             f"the row's samples: reward {_fmt(ex[f'{side}_answer_reward'])}; "
                             f"{_e(tools)})</span></p><pre>{_e(ex[f'{side}_answer'])}</pre>")

    parts.append("<details><summary>All rows</summary>")
    parts.append(_table(["row", "quadrant", "baseline", "final", "Δreward", "calls before",
                         "calls after", "Δcalls"],
                        [[str(r["row_index"]), r["quadrant"], _fmt(r["baseline_mean"]),
                          _fmt(r["final_mean"]), _fmt(r["d_reward"], True), _fmt(r["baseline_calls"]),
                          _fmt(r["final_calls"]), _fmt(r["d_calls"], True)]
                         for r in summary["per_row"]], text_cols=(1,)))
    parts.append("</details></body></html>\n")
    return "\n".join(parts)
