"""`agentrft compare` and the eval analysis on the fixed, hand-made pair of evals of
test_analysis_report.py (4 rows, 2 samples per row, one discarded rollout); every expected
number is worked out by hand in the comments."""

from __future__ import annotations

import json

import pytest

from agentrft.analysis import compare, load_eval
from agentrft.analysis.commands import eval_analysis, readiness, run_compare
from agentrft.analysis.interactive import delta_scatter_figure, variance_figure
from agentrft.cli import main
from tests.test_analysis_report import PNG_MAGIC, evals, run_dir  # noqa: F401 - fixtures

OFFLINE = ("cdn.plot.ly", "https://cdn", "<script src=\"http")


def test_readiness_by_hand(evals):  # noqa: F811
    # baseline rows: 0 → [0, 0.5] (spread, best 0.5 > mean 0.25), 1 → [1, 1] (always solved),
    # 2 → [0, 0] (never solved), 3 → [0.5, 0.5]; rows 1-3 have zero variance
    assert readiness(load_eval(evals[0])) == {
        "rows": 4, "samples_per_row": 2, "zero_variance_share": 0.75, "headroom_share": 0.25,
        "never_solved_share": 0.25, "always_solved_share": 0.25}
    # final rows: 0 → [1, 0.5], 1 → [1, 0], 2 → [0, 0], 3 → [1, 0.5] (+ a discarded one)
    assert readiness(load_eval(evals[1])) == {
        "rows": 4, "samples_per_row": 3, "zero_variance_share": 0.25, "headroom_share": 0.75,
        "never_solved_share": 0.25, "always_solved_share": 0.0}


def test_compare_command_writes_png_and_html(evals, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cmp"
    assert main(["compare", str(evals[0]), str(evals[1]), "--out", str(out), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert "better+same-or-fewer 2" in printed and "report.html" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert summary["quadrants"] == {"better_fewer": 2, "better_more": 0, "worse_fewer": 0,
                                    "worse_more": 1, "unchanged": 1}
    b, f = summary["baseline"], summary["final"]
    # per-tool calls per rollout: baseline 8 search, 3 cat over 8; final 10 and 2 over 9
    assert (b["tool_calls_per_rollout.search"], b["tool_calls_per_rollout.cat"]) == (1.0, 0.375)
    assert f["tool_calls_per_rollout.search"] == pytest.approx(10 / 9)
    # repeat bigrams: baseline search→search ×2 (one rollout), cat→cat ×1; final search ×3
    assert (b["repeat_bigrams.search"], b["repeat_bigrams.cat"], f["repeat_bigrams.search"]) == (2, 1, 3)
    # latency 0.5 s → 0.25 s; completion tokens 150/8 → 145/9
    assert (b["tool_latency_mean"], f["tool_latency_mean"]) == (0.5, 0.25)
    assert summary["delta"]["completion_tokens_mean"] == pytest.approx(145 / 9 - 150 / 8)
    assert [e["row_index"] for e in summary["top_examples"]["better_fewer"]] == [0, 3]
    assert summary["readiness"]["baseline"]["zero_variance_share"] == 0.75

    for name in ("variance.png", "tool_calls.png", "delta_scatter.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    for name in ("report.html", "delta_scatter.html", "tool_calls.html", "variance.html"):
        page = (out / name).read_text()
        assert not any(s in page for s in OFFLINE), name
    assert 'src="plotly.min.js"' in (out / "delta_scatter.html").read_text()
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert set(summary["files"]) <= {p.name for p in out.iterdir()}


def test_delta_scatter_points_by_hand(evals):  # noqa: F811
    fig = delta_scatter_figure(compare(load_eval(evals[0]), load_eval(evals[1])))
    points = {t.name.split(":")[0]: list(zip(t.x, t.y)) for t in fig.data}
    # (Δcalls, Δreward) per row: 0 → (−1, +0.5), 1 → (+2, −0.5), 2 → (−1, 0), 3 → (0, +0.25)
    assert points == {"better + fewer": [(-1.0, 0.5), (0.0, 0.25)], "better + more": [],
                      "worse + fewer": [], "worse + more": [(2.0, -0.5)],
                      "unchanged": [(-1.0, 0.0)]}


def test_eval_analysis_adds_variance_plot_and_readiness(evals):  # noqa: F811
    summary = eval_analysis(evals[0])
    assert summary["model"] == "baseline" and summary["wall_s"] == 12.5  # kept
    assert summary["readiness"]["zero_variance_share"] == 0.75
    assert (evals[0] / "variance.png").read_bytes()[:8] == PNG_MAGIC
    assert "plotly.min.js" in (evals[0] / "variance.html").read_text()
    assert json.loads((evals[0] / "summary.json").read_text()) == summary
    samples, means, bests = variance_figure(load_eval(evals[0])).data
    # rows sorted by mean: 2 (0), 0 (0.25), 3 (0.5), 1 (1); 8 scored samples
    assert list(means.x) == ["row 2", "row 0", "row 3", "row 1"]
    assert list(means.y) == [0.0, 0.25, 0.5, 1.0] and list(bests.y) == [0.0, 0.5, 0.5, 1.0]
    assert len(samples.y) == 8


def test_compare_a_training_run_with_itself_is_baseline_vs_final(run_dir, tmp_path):  # noqa: F811
    summary = run_compare(run_dir, run_dir, tmp_path / "r")
    assert (summary["baseline"]["step"], summary["final"]["step"]) == (0, 2)
    assert "reward_curves.png" in summary["files"]
    picked = run_compare(run_dir, run_dir, tmp_path / "r2", step_a=0, step_b=0)
    assert picked["quadrants"]["unchanged"] == 4


def test_compare_errors_name_the_problem(evals, tmp_path, capsys):  # noqa: F811
    assert main(["compare", str(tmp_path / "nope"), str(evals[1]), "--out", str(tmp_path / "o")]) == 2
    assert "no such run" in capsys.readouterr().err
    assert main(["compare", str(evals[0]), str(evals[1]), "--out", str(tmp_path / "o"),
                 "--step-a", "7"]) == 2
    assert "no eval rollouts at step 7" in capsys.readouterr().err


def test_eval_command_with_samples_writes_readiness_and_variance_plot(tmp_path, tiny_model_dir,
                                                                       capsys):
    from tests.test_train_tiny import make_job

    make_job(tmp_path, tiny_model_dir, max_steps=1)  # writes job.yaml and the lookup data
    out = tmp_path / "eval"
    assert main(["eval", str(tmp_path / "job.yaml"), "--samples", "2", "--out", str(out)]) == 0
    assert "readiness:" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["per_row"]
    assert summary["samples_per_row"] == 2 and rows
    for r in rows:  # per row: best, mean, std of its 2 samples
        assert r["best"] >= r["mean"] and r["std"] >= 0
    # the readiness share agrees with the per-row numbers evaluate wrote
    zero = sum(r["std"] == 0 for r in rows) / len(rows)
    assert summary["readiness"]["zero_variance_share"] == pytest.approx(zero)
    assert summary["zero_variance_share"] == pytest.approx(zero)
    assert summary["best_of_n_reward"] == pytest.approx(sum(r["best"] for r in rows) / len(rows))
    assert (out / "variance.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "variance.html").is_file() and (out / "plotly.min.js").is_file()
