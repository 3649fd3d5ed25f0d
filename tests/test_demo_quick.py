"""The main job end to end: `agentrft demo --quick` as a user runs it, on the real corpus, the
real tool server (search, list, cat over loopback) and the bundled model. It checks what the
run leaves behind, not whether 2 steps learned anything (that is test_learning.py's job):
every stage ran, the report has its files, and the verdict is the paired bootstrap's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.serving_fixtures import ROOT


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_demo_quick_end_to_end_writes_its_report_and_verdict(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "agentrft.cli", "demo", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1400)
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed[-4000:]
    for stage in range(1, 7):
        assert f"[{stage}/6]" in printed
    assert "rows compared:" in printed and "report:" in printed  # the summary table and its path

    baseline = json.loads((out / "baseline" / "summary.json").read_text())
    final = json.loads((out / "final" / "summary.json").read_text())
    for summary in (baseline, final):
        assert summary["rows"] == 8 and summary["samples_per_row"] == 2  # QUICK's 8 rows × 2
        assert all(len(r["rewards"]) == r["n"] for r in summary["per_row"])
        assert 0.0 <= summary["mean_reward"] <= summary["best_of_n_reward"] <= 1.0
    assert "checkpoints/step_000002" in final["model"]

    metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "train_reward_mean" in m] == [1, 2]

    report = out / "report"
    for name in ("variance.png", "reward_curves.png", "tool_calls.png", "delta_scatter.png",
                 "report.html", "summary.json"):
        assert (report / name).stat().st_size > 0, name
    assert (report / "variance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Δreward vs Δtool-calls" in (report / "report.html").read_text(encoding="utf-8")

    result = json.loads((out / "result.json").read_text())
    paired = result["paired_bootstrap"]
    assert paired["rows"] == 8 and paired["ci_low"] <= paired["gain"] <= paired["ci_high"]
    assert result["significant"] == (paired["ci_low"] > 1e-9)
    if paired["rows"] == baseline["rows"] == final["rows"]:  # no row lost all its rollouts
        assert result["gain"] == pytest.approx(final["mean_reward"] - baseline["mean_reward"])
    assert result["text"] in printed
    peaks = list(result["peak_rss_gib"].values())  # the process's peak so far, after each phase
    assert len(peaks) == 3 and 0.3 < peaks[0] <= peaks[1] <= peaks[2] < 24
