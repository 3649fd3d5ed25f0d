"""The paired before/after bootstrap that decides whether training helped (the demo's verdict)."""

import numpy as np
import pytest

from agentrft.analysis.significance import paired_bootstrap
from examples.finqa_lite.demo import verdict


def null_run(rng, rows=20, samples=3):
    """Before and after drawn from the same per-row success rates: nothing was learned."""
    p = rng.uniform(0.05, 0.95, size=rows)
    draw = lambda: {r: list(map(float, rng.random(samples) < p[r])) for r in range(rows)}  # noqa: E731
    return draw(), draw()


def test_a_clear_uplift_on_every_row_is_significant():
    before = {r: [0.2, 0.3, 0.1] for r in range(10)}
    after = {r: [0.7, 0.8, 0.6] for r in range(10)}
    result = paired_bootstrap(before, after)
    assert result.gain == pytest.approx(0.5)
    assert result.significant and 0.4 < result.ci_low <= result.ci_high < 0.6
    assert result.p_not_better == 0.0


def test_noise_around_no_change_is_not_significant():
    before = {0: [0.0, 1.0, 0.0], 1: [1.0, 1.0, 0.0], 2: [0.5, 0.0, 0.5], 3: [1.0, 1.0, 1.0]}
    after = {0: [1.0, 0.0, 0.0], 1: [1.0, 0.0, 1.0], 2: [0.0, 0.5, 1.0], 3: [1.0, 0.5, 1.0]}
    result = paired_bootstrap(before, after)
    assert result.ci_low < 0 < result.ci_high and not result.significant
    assert 0.2 < result.p_not_better < 0.8


def test_learning_nothing_passes_about_as_often_as_a_95_percent_interval_allows():
    rng = np.random.default_rng(1)
    bootstrap_hits = spread_hits = 0
    for _ in range(200):
        before, after = null_run(rng)
        bootstrap_hits += paired_bootstrap(before, after, resamples=1000, seed=int(rng.integers(1 << 30))).significant
        # the old verdict: gain > std of the baseline's 3 pass means
        passes = np.array([[before[r][k] for r in before] for k in range(3)]).mean(axis=1)
        gain = np.mean([np.mean(after[r]) - np.mean(before[r]) for r in before])
        spread_hits += gain > passes.std(ddof=1)
    assert bootstrap_hits / 200 <= 0.06      # one-sided 2.5%, plus slack for 200 runs
    assert spread_hits / 200 > 2 * bootstrap_hits / 200  # the old test is clearly looser


def test_rows_scored_on_one_side_only_are_left_out_and_none_in_common_is_an_error():
    result = paired_bootstrap({0: [0.0], 1: [0.5], 2: []}, {0: [1.0], 2: [1.0], 3: [1.0]})
    assert result.rows == 1 and result.gain == 1.0
    with pytest.raises(ValueError, match="no validation row"):
        paired_bootstrap({0: [0.1]}, {1: [0.2]})


def test_same_seed_same_interval():
    before = {r: [0.1 * r, 0.2] for r in range(6)}
    after = {r: [0.1 * r + 0.1, 0.1] for r in range(6)}
    assert paired_bootstrap(before, after, seed=7) == paired_bootstrap(before, after, seed=7)


def summary(rows: dict[int, list[float]], pass_means=None, std=None) -> dict:
    per_row = [{"row_index": r, "rewards": v, "mean": sum(v) / len(v)} for r, v in rows.items()]
    return {"mean_reward": sum(x["mean"] for x in per_row) / len(per_row), "per_row": per_row,
            "pass_mean_rewards": pass_means, "run_to_run_std": std}


def test_demo_verdict_uses_the_paired_interval_and_reports_the_spread():
    before = summary({r: [0.2, 0.3, 0.1] for r in range(10)}, [0.19, 0.2, 0.21], 0.01)
    helped = verdict(before, summary({r: [0.7, 0.8, 0.6] for r in range(10)}))
    assert helped["significant"] is True and "training helped" in helped["text"]
    assert helped["gain_over_spread"] == pytest.approx(50.0)
    same = verdict(before, summary({r: [0.1, 0.3, 0.2 + 0.1 * (r % 3 - 1)] for r in range(10)}))
    assert same["significant"] is False and "NOT significant" in same["text"]
    assert "spread 0.010" in same["text"]
