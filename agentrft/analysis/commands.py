"""The analysis commands behind the CLI: what `agentrft eval --samples N` adds to its output
dir (the variance plot and the readiness numbers), and `agentrft compare`.

    agentrft compare RUN_A RUN_B --out DIR [--step-a N] [--step-b N] [--title T] [--top K]

RUN_A and RUN_B are `agentrft eval` output dirs or training run dirs (their eval steps:
RUN_A's first, RUN_B's last unless --step-a/--step-b say otherwise; the same training run
twice compares its baseline with its final eval). DIR receives report.html, summary.json,
the PNGs of `report.write_report` and interactive delta_scatter.html / tool_calls.html.

**Readiness** (is RFT worth it on these rows?): a row whose N samples all score the same
gives a group-relative policy gradient nothing to learn from; a row whose best sample beats
its mean shows the model can already sometimes do better. Over rows with a scored sample:
`zero_variance_share`, `headroom_share` (best > mean), `never_solved_share` (best = 0) and
`always_solved_share` (every sample scored the maximum, 1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agentrft.analysis.compare import (TOL, EvalRun, compare, eval_steps, load_eval,
                                       read_metrics)
from agentrft.analysis.report import format_summary_table, write_report


def readiness(run: EvalRun) -> dict[str, Any]:
    rows = [r for r in run.rows.values() if r.n]
    n = len(rows)

    def share(pred) -> float | None:
        return sum(1 for r in rows if pred(r)) / n if n else None

    return {
        "rows": n,
        "samples_per_row": max((len(r.rollouts) for r in run.rows.values()), default=0),
        "zero_variance_share": share(lambda r: r.std <= TOL),
        "headroom_share": share(lambda r: r.best - r.mean > TOL),
        "never_solved_share": share(lambda r: r.best <= TOL),
        "always_solved_share": share(lambda r: min(r.rewards) >= 1 - TOL),
    }


def readiness_line(r: dict[str, Any]) -> str:
    if not r["rows"]:
        return "readiness: no scored rows"
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    line = (f"readiness: {pct(r['zero_variance_share'])} of {r['rows']} rows have zero variance "
            f"(no learning signal), {pct(r['headroom_share'])} have headroom (best > mean), "
            f"{pct(r['never_solved_share'])} are never solved, "
            f"{pct(r['always_solved_share'])} always solved")
    if r["samples_per_row"] < 2:
        line += "; with 1 sample per row every row has zero variance: use --samples 2 or more"
    return line


def eval_analysis(out_dir: str | Path) -> dict[str, Any]:
    """After `evaluate` wrote rollouts.jsonl and summary.json into out_dir: draw the variance
    plot (variance.png, variance.html) and add `readiness` and `files` to summary.json."""
    from agentrft.analysis.interactive import write_variance_html
    from agentrft.analysis.plots import plot_variance

    out = Path(out_dir)
    run = load_eval(out)
    plot_variance(run, out / "variance.png")
    write_variance_html(run, out / "variance.html")
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary["readiness"] = readiness(run)
    summary["files"] = ["rollouts.jsonl", "summary.json", "variance.png", "variance.html"]
    summary_path.write_text(json.dumps(summary, indent=2))
    return summary


def _pick(path: Path, step: int | None, first: bool) -> EvalRun:
    if step is None:
        steps = eval_steps(path)
        if not steps:
            raise ValueError(f"{path}: no eval rollouts")
        step = steps[0] if first else steps[-1]
    return load_eval(path, step)


def run_compare(run_a: str | Path, run_b: str | Path, out_dir: str | Path, *,
                step_a: int | None = None, step_b: int | None = None,
                title: str = "agentrft compare", top_k: int = 3) -> dict[str, Any]:
    from agentrft.analysis.interactive import write_comparison_html, write_variance_html

    a, b, out = Path(run_a), Path(run_b), Path(out_dir)
    for p in (a, b):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such run or eval directory")
    baseline, final = _pick(a, step_a, first=True), _pick(b, step_b, first=False)
    # reward curves when RUN_B is a training run dir
    run_dir = b if b.is_dir() and read_metrics(b) else None
    summary = write_report(out, baseline, final, run_dir=run_dir, title=title, top_k=top_k)
    comparison = compare(baseline, final)
    extra = [p.name for p in write_comparison_html(comparison, out)]
    extra.append(write_variance_html(baseline, out / "variance.html").name)
    summary["files"] += extra + ["plotly.min.js"]
    summary["readiness"] = {"baseline": readiness(baseline), "final": readiness(final)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    return summary


def cmd_compare(args: argparse.Namespace) -> int:
    from agentrft.errors import SpecError

    try:
        summary = run_compare(args.run_a, args.run_b, args.out, step_a=args.step_a,
                              step_b=args.step_b, title=args.title, top_k=args.top)
    except (FileNotFoundError, ValueError) as e:
        raise SpecError(str(e)) from None
    print(format_summary_table(summary))
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="compare two evals (Δreward vs Δtool calls, quadrants, "
                                       "tool use); writes PNG and HTML")
    c.add_argument("run_a", help="baseline: an eval output dir or a training run dir")
    c.add_argument("run_b", help="final: an eval output dir or a training run dir")
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("--step-a", type=int, help="eval step of RUN_A (default: its first)")
    c.add_argument("--step-b", type=int, help="eval step of RUN_B (default: its last)")
    c.add_argument("--title", default="agentrft compare")
    c.add_argument("--top", type=int, default=3, help="examples per quadrant")
    c.set_defaults(fn=cmd_compare)
