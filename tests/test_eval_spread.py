"""An eval's run-to-run spread: the std of its passes' mean rewards, by hand."""

import pytest

from agentrft.rollout.types import Rollout
from agentrft.train.evaluate import pass_spread


def rollout(row: int, reward: float | None, status: str = "completed") -> Rollout:
    r = Rollout(trace_id=f"trace_{row}", row_index=row, item={})
    r.reward, r.status = reward, status
    return r


def test_pass_means_and_their_sample_std():
    # 2 rows × 3 passes, in the order evaluate runs them: pass 0 = rollouts 0-1, …
    rewards = [1.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    got = pass_spread([rollout(i % 2, x) for i, x in enumerate(rewards)], n_rows=2, samples=3)
    assert got["pass_mean_rewards"] == [0.5, 0.5, 1.0]
    # mean 2/3; deviations -1/6, -1/6, 1/3 → (1/36 + 1/36 + 1/9) / 2 = 1/12
    assert got["run_to_run_std"] == pytest.approx((1 / 12) ** 0.5)


def test_discarded_rollouts_leave_their_pass_mean_and_one_pass_has_no_spread():
    rs = [rollout(0, 1.0), rollout(1, None, status="discarded"), rollout(0, 0.0), rollout(1, 0.0)]
    got = pass_spread(rs, n_rows=2, samples=2)
    assert got["pass_mean_rewards"] == [1.0, 0.0]
    assert pass_spread(rs[:2], n_rows=2, samples=1) == {"pass_mean_rewards": [1.0]}
