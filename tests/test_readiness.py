"""The readiness numbers and advice, and the stall watch (their use in the training loop is
tested in test_train_tiny.py and, on the bundled model, test_learning.py)."""

import pytest

from agentrft.train.readiness import Readiness, StallWatch


def test_shares_best_of_n_and_mean_over_groups():
    r = Readiness.of([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    assert (r.groups, r.zero_variance_share, r.never_solved_share, r.always_solved_share) == \
        (4, 0.75, 0.25, 0.25)
    assert r.best_of_n == pytest.approx((0 + 1 + 1 + 0.5) / 4)
    assert r.mean_reward == pytest.approx((0 + 0.5 + 1 + 0.5) / 4)
    assert r.can_teach and "75% zero variance" in r.line()


@pytest.mark.parametrize("groups, hint", [
    ([[0.0, 0.0], [0.0, 0.0]], "never earns any reward"),
    ([[1.0, 1.0], [1.0, 1.0]], "already gets every row right"),
    ([[0.3, 0.3], [0.0, 0.0]], "score the same"),
])
def test_flat_groups_cannot_teach_and_the_advice_says_why(groups, hint):
    r = Readiness.of(groups)
    assert not r.can_teach
    assert hint in r.advice() and "readiness_gate: false" in r.advice()


def test_no_scored_group_cannot_teach():
    assert not Readiness.of([[], []]).can_teach


def test_stall_watch_says_so_once_per_stall():
    watch = StallWatch(2)
    said = [watch.observe(step, n) for step, n in enumerate([4, 0, 0, 0, 3, 0, 0], start=1)]
    assert [s is not None for s in said] == [False, False, True, False, False, False, True]
    assert "2 steps in a row (through step 3)" in said[2]
    assert StallWatch(0).observe(1, 0) is None  # 0 turns it off
