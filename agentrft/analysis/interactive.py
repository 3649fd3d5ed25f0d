"""The report's figures again, as interactive Plotly pages (hover a point to see its row).

Each page is written with `include_plotlyjs="directory"`: plotly.min.js is copied once next
to the pages from the installed `plotly` package, so they open without any network.
Definitions (row reward, quadrants) are `agentrft.analysis.compare`'s; the PNGs in `plots.py`
draw the same numbers.

    write_variance_html(run, out / "variance.html")
    write_comparison_html(comparison, out)   # delta_scatter.html, tool_calls.html
"""

from __future__ import annotations

from pathlib import Path

from agentrft.analysis.compare import QUADRANTS, Comparison, EvalRun
from agentrft.analysis.plots import BASELINE_COLOR, FINAL_COLOR, QUADRANT_COLORS


def _write(fig, path: Path) -> Path:
    fig.write_html(str(path), include_plotlyjs="directory", full_html=True,
                   config={"displaylogo": False})
    return path


def variance_figure(run: EvalRun):
    """Per validation row (sorted by mean): every sample's reward, the mean and the best."""
    import plotly.graph_objects as go

    rows = sorted((r for r in run.rows.values() if r.n), key=lambda r: (r.mean, r.row_index))
    labels = [f"row {r.row_index}" for r in rows]
    xs, ys, text = [], [], []
    for label, row in zip(labels, rows):
        for k, reward in enumerate(row.rewards):
            xs.append(label)
            ys.append(reward)
            text.append(f"{label}, sample {k}: {reward:.3f}")
    stats = run.stats()
    fig = go.Figure([
        go.Scatter(x=xs, y=ys, mode="markers", name="sample reward", text=text,
                   hoverinfo="text", marker={"color": BASELINE_COLOR, "opacity": 0.6}),
        go.Scatter(x=labels, y=[r.mean for r in rows], mode="markers", name="row mean",
                   marker={"symbol": "line-ew-open", "size": 18, "color": "#c0392b",
                           "line": {"width": 3}}),
        go.Scatter(x=labels, y=[r.best for r in rows], mode="markers", name="row best",
                   marker={"symbol": "circle-open", "size": 12, "color": "#27ae60"}),
    ])
    zero = stats["zero_variance_share"]
    fig.update_layout(
        title=(f"Per-row variance, {stats['samples_per_row']} samples per row: mean "
               f"{_f(stats['mean_reward'])}, best-of-N {_f(stats['best_of_n_reward'])}, "
               f"zero-variance rows {_f(zero)}"),
        xaxis_title="validation row (sorted by mean reward)", yaxis_title="reward",
        yaxis_range=[-0.05, 1.05], template="plotly_white")
    return fig


def delta_scatter_figure(c: Comparison):
    """Δreward vs Δtool-calls, one point per compared row, coloured by quadrant."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for q in QUADRANTS:
        rows = [d for d in c.rows if d.quadrant == q]
        fig.add_trace(go.Scatter(
            x=[d.d_calls for d in rows], y=[d.d_reward for d in rows], mode="markers",
            name=f"{q.replace('_', ' + ')}: {c.quadrants[q]}",
            marker={"color": QUADRANT_COLORS[q], "size": 10, "opacity": 0.8},
            text=[f"row {d.row_index}: reward {d.baseline_mean:.3f} → {d.final_mean:.3f}, "
                  f"calls {d.baseline_calls:.2f} → {d.final_calls:.2f}" for d in rows],
            hoverinfo="text"))
    fig.add_hline(y=0, line_width=1)
    fig.add_vline(x=0, line_width=1)
    fig.update_layout(title=f"Δreward vs Δtool calls per row ({len(c.rows)} rows)",
                      xaxis_title="Δ tool calls per rollout (final − baseline)",
                      yaxis_title="Δ mean reward (final − baseline)", template="plotly_white")
    return fig


def tool_calls_figure(c: Comparison):
    """Tool calls per rollout and repeat bigrams per tool, baseline vs final."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = ["all tools", *c.tools]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("tool calls per rollout",
                                                        "repeat bigrams (same tool twice in a row)"))
    for name, stats, color in (("baseline", c.baseline_stats, BASELINE_COLOR),
                               ("final", c.final_stats, FINAL_COLOR)):
        calls = [stats["tool_calls_per_rollout"], *(stats[f"tool_calls_per_rollout.{t}"] for t in c.tools)]
        repeats = [stats["repeat_bigrams"], *(stats[f"repeat_bigrams.{t}"] for t in c.tools)]
        fig.add_trace(go.Bar(x=labels, y=calls, name=name, marker_color=color), row=1, col=1)
        fig.add_trace(go.Bar(x=labels, y=repeats, name=name, marker_color=color,
                             showlegend=False), row=1, col=2)
    fig.update_layout(barmode="group", template="plotly_white",
                      title="Tool use, baseline vs final")
    return fig


def write_variance_html(run: EvalRun, path: str | Path) -> Path:
    return _write(variance_figure(run), Path(path))


def write_comparison_html(c: Comparison, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    return [_write(delta_scatter_figure(c), out / "delta_scatter.html"),
            _write(tool_calls_figure(c), out / "tool_calls.html")]


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
