import pytest

from agentrft.rollout.types import Rollout
from agentrft.spec.job import Hyperparameters
from agentrft.train.advantages import group_advantages
from agentrft.train.loop import shape_rewards, training_sequences


def test_grpo_normalises_by_group_std():
    adv = group_advantages([1.0, 0.0, 0.0, 1.0])
    assert adv == pytest.approx([1.0, -1.0, -1.0, 1.0], abs=1e-4)


def test_unnormalized_keeps_reward_scale():
    assert group_advantages([0.5, 0.0], "unnormalized") == pytest.approx([0.25, -0.25])


def test_zero_variance_and_singleton_groups_teach_nothing():
    assert group_advantages([0.3, 0.3, 0.3]) is None
    assert group_advantages([1.0]) is None


def _rollout(row, reward, status="completed", reasoning=0):
    r = Rollout(trace_id="t", row_index=row, item={}, token_ids=[1, 2], mask=[0, 1],
                logprobs=[0.0, -1.0], status=status, reasoning_tokens=reasoning)
    r.reward = None if status == "discarded" else reward
    return r


class _Job:  # the two attributes shape_rewards/training_sequences read
    def __init__(self, **hp):
        self.hp = Hyperparameters(**hp)


def test_discarded_rollouts_and_flat_groups_leave_the_loss():
    rollouts = [_rollout(0, 1.0), _rollout(0, 0.0), _rollout(0, None, "discarded"),
                _rollout(1, 0.5), _rollout(1, 0.5), _rollout(2, 1.0), _rollout(2, None, "discarded")]
    job = _Job()
    shape_rewards(rollouts, job)
    seqs, zero_variance = training_sequences(rollouts, job)
    assert len(seqs) == 2  # only row 0's two scored rollouts
    assert zero_variance == 2  # row 1 flat, row 2 left with one scored rollout
    assert sorted(s.advantage for s in seqs) == pytest.approx([-1.0, 1.0], abs=1e-4)


def test_penalties_shape_the_reward_not_the_reported_reward():
    rollouts = [_rollout(0, 1.0, reasoning=100), _rollout(0, 1.0, "budget_exceeded")]
    shape_rewards(rollouts, _Job(reasoning_token_penalty=0.001, budget_exceeded_penalty=0.5))
    assert [r.shaped_reward for r in rollouts] == pytest.approx([0.9, 0.5])
    assert [r.reward for r in rollouts] == [1.0, 1.0]
