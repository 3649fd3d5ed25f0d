"""Did a trained model beat its baseline, or is the gain what re-running would give anyway?

A paired comparison over validation rows: each row was evaluated k times (passes) before and
k times after training. Row i's delta d_i = (mean of its k rewards after) − (mean before); the
gain is the mean of the deltas, and a bootstrap over rows gives its interval:

    for b in 1..B:
        rows_b = R rows drawn with replacement
        gain_b = mean of d_i over rows_b

The 95% interval is the 2.5th and 97.5th percentiles of gain_b; the gain is *significant*
when the whole interval is above zero. `p_not_better` is the share of gain_b ≤ 0.

Both sources of noise are in it: which questions were asked (the rows drawn), and what the
passes happened to sample (each d_i carries its own rows' sampling noise, so the spread of
the d_i includes it). Resampling rollouts inside each row as well would count that noise a
second time: measured on simulated runs that learned nothing (20 rows × 3 passes, per-row
success rates uniform in 0.05–0.95), the two-level version called 0 of 200 significant, this
one 2.75% of 400 (nominal 2.5%). Pairing by row cancels the row-to-row difference in
difficulty, the largest source of variance in these evals; the demo's old test (gain > std of
the 3 pass means) called 15.5% of those same null runs a success.

    result = paired_bootstrap({0: [0.2, 0.4], 1: [0.0, 0.0]}, {0: [0.8, 0.6], 1: [0.2, 0.0]})
    result.significant, result.ci_low, result.ci_high
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PairedGain:
    gain: float            # mean over rows of (after − before)
    ci_low: float          # 95% bootstrap interval of the gain
    ci_high: float
    p_not_better: float    # share of bootstrap gains ≤ 0
    rows: int              # rows scored both before and after
    resamples: int

    @property
    def significant(self) -> bool:
        return self.ci_low > 1e-9  # above zero by more than float rounding of equal means

    def to_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def paired_bootstrap(before: dict[int, list[float]], after: dict[int, list[float]], *,
                     resamples: int = 10_000, seed: int = 0) -> PairedGain:
    """`before`/`after`: each row's rewards, by row index; rows missing on either side (every
    rollout discarded) are left out. Deterministic for a given seed."""
    rows = sorted(r for r in before.keys() & after.keys() if before[r] and after[r])
    if not rows:
        raise ValueError("no validation row was scored both before and after training")
    rng = np.random.default_rng(seed)
    deltas_R = np.array([np.mean(after[r]) - np.mean(before[r]) for r in rows])
    picks_BR = rng.integers(0, len(rows), size=(resamples, len(rows)))
    gains_B = deltas_R[picks_BR].mean(axis=1)
    low, high = np.percentile(gains_B, [2.5, 97.5])
    return PairedGain(gain=float(deltas_R.mean()), ci_low=float(low), ci_high=float(high),
                      p_not_better=float(np.mean(gains_B <= 0)), rows=len(rows),
                      resamples=resamples)
