"""Analysis of runs: baseline variance, best-of-N, baseline-vs-final comparison, the report.

    from agentrft.analysis import load_eval, compare, write_report, format_summary_table

    summary = write_report("report/", "evals/baseline", "evals/final", run_dir="runs/demo")
    print(format_summary_table(summary))

matplotlib is imported only when a figure is drawn.
"""

from agentrft.analysis.compare import (QUADRANTS, Comparison, EvalRun, RolloutView, RowDelta,
                                       RowEval, compare, eval_steps, load_eval, quadrant,
                                       read_metrics)
from agentrft.analysis.report import build_summary, format_summary_table, write_report

__all__ = [
    "QUADRANTS", "Comparison", "EvalRun", "RolloutView", "RowDelta", "RowEval", "build_summary",
    "compare", "eval_steps", "format_summary_table", "load_eval", "quadrant", "read_metrics",
    "write_report",
]
