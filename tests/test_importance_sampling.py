"""The loss's importance ratio is against the engine's sampling log-probs: per-token weights,
clipping and the TIS cap on a hand-built batch, on-policy equal to the plain loss, and the
update's metrics (see the formula in agentrft/train/loss.py)."""

import math

import pytest
import torch

from agentrft.spec.job import Hyperparameters
from agentrft.train.loss import TrainSequence, collate, policy_loss_sum, token_logprobs
from agentrft.train.policy import Policy
from tests.test_train_efficiency import tokenizer_sequences
from tests.tiny_model import PAD_ID

NAN = float("nan")
EPS, CAP = 0.2, 2.0


def hand_batch(behaviour_a, behaviour_b):
    """Two sequences; tokens 2..5 of the first and 2..4 of the second are model-written."""
    a = TrainSequence([1, 3, 4, 5, 6, 7], [0, 0, 1, 1, 1, 1], advantage=1.0,
                      behaviour_logprobs=behaviour_a)
    b = TrainSequence([1, 3, 8, 9, 2], [0, 0, 1, 1, 1], advantage=-1.0,
                      behaviour_logprobs=behaviour_b)
    return collate([a, b], pad_id=PAD_ID)


def test_collate_aligns_behaviour_logprobs_with_targets_and_keeps_nan():
    batch = hand_batch([0.0, 0.0, -1.0, -2.0, NAN, -4.0], None)
    assert batch.behaviour_logp_BT.shape == batch.targets_BT.shape
    row = batch.behaviour_logp_BT[0].tolist()
    assert row[:2] == [0.0, -1.0] and math.isnan(row[3]) and row[4] == -4.0
    assert all(math.isnan(x) for x in batch.behaviour_logp_BT[1].tolist())  # None: unknown
    with pytest.raises(ValueError, match="behaviour log-probs"):
        collate([TrainSequence([1, 2, 3], [0, 1, 1], 1.0, behaviour_logprobs=[0.0])], PAD_ID)


def test_weights_clipping_and_cap_per_token():
    # trainer log-prob 0 on every trained position, so r_t = exp(-behaviour)
    ln = math.log
    # seq a, A = +1:  r = 0.5 (weight 0.5), 1.1 (1.1), 3 (clipped: A > 0, r > 1.2), unknown (1)
    # seq b, A = -1:  r = 3 (capped at 2), 0.5 (clipped: A < 0, r < 0.8), 1.0 (1)
    batch = hand_batch([0, 0, -ln(0.5), -ln(1.1), -ln(3.0), NAN],
                       [0, 0, -ln(3.0), -ln(0.5), 0.0])
    logp = torch.zeros(batch.targets_BT.shape, requires_grad=True)
    loss, stats = policy_loss_sum(logp, batch.behaviour_logp_BT, batch, clip_epsilon=EPS, tis_cap=CAP)
    loss.backward()
    # dL/dlog π = −A · min(r, C) where unclipped, 0 where clipped, 0 off the mask
    want = torch.tensor([[0, -0.5, -1.1, 0, -1.0], [0, 2.0, 0, 1.0, 0]])
    assert torch.allclose(logp.grad, want, atol=1e-6), logp.grad
    assert stats["clip_fraction_sum"] == 2 and stats["is_capped_sum"] == 1
    assert stats["behaviour_n"] == 6  # the NaN token is not compared
    assert stats["is_ratio_sum"] == pytest.approx(0.5 + 1.1 + 3 + 3 + 0.5 + 1)
    assert stats["is_ratio_max"] == pytest.approx(3.0)
    assert stats["mismatch_sum"] == pytest.approx(2 * ln(2) + ln(1.1) + 2 * ln(3))
    # value: −min(r, C)·A unclipped, −clip(r)·A clipped
    assert float(loss.detach()) == pytest.approx(-(0.5 + 1.1 + 1.2 + 1.0) + (2.0 + 0.8 + 1.0), abs=1e-5)

    # without a cap the A < 0 token with r = 3 keeps its full weight
    logp.grad = None
    loss, stats = policy_loss_sum(logp, batch.behaviour_logp_BT, batch, clip_epsilon=EPS, tis_cap=None)
    loss.backward()
    assert logp.grad[1, 1] == pytest.approx(3.0) and stats["is_capped_sum"] == 0


def test_a_token_the_engine_called_impossible_gives_a_finite_capped_gradient():
    batch = hand_batch([0, 0, -9999.0, float("-inf"), -1.0, -1.0], None)
    batch.advantages_B[0] = -1.0
    logp = torch.zeros(batch.targets_BT.shape, requires_grad=True)
    loss, _ = policy_loss_sum(logp, batch.behaviour_logp_BT, batch, clip_epsilon=EPS, tis_cap=CAP)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    assert logp.grad[0, 1:3].tolist() == [CAP, CAP]


def _plain_loss(logp, batch, clip_epsilon):
    """The loss before behaviour log-probs: ratio against this forward's own, detached."""
    adv = batch.advantages_B[:, None]
    ratio = torch.exp(logp - logp.detach())
    loss = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * adv)
    return (loss * batch.loss_mask_BT).sum()


@pytest.mark.parametrize("cap", [CAP, None])
def test_on_policy_reproduces_the_plain_loss_exactly(cap):
    torch.manual_seed(0)
    base = hand_batch(None, None)
    values = torch.randn(base.targets_BT.shape) - 2
    for behaviour in (values.clone(), torch.full_like(values, NAN)):  # equal to ours, or unknown
        batch = hand_batch(None, None)
        batch.behaviour_logp_BT = behaviour
        got_logp = values.clone().requires_grad_(True)
        want_logp = values.clone().requires_grad_(True)
        got, stats = policy_loss_sum(got_logp, batch.behaviour_logp_BT, batch, clip_epsilon=EPS,
                                     tis_cap=cap)
        want = _plain_loss(want_logp, batch, EPS)
        got.backward()
        want.backward()
        assert float(got.detach()) == float(want.detach())
        assert torch.equal(got_logp.grad, want_logp.grad)
        assert stats["clip_fraction_sum"] == 0 and stats["is_capped_sum"] == 0


def test_update_reports_ratio_metrics_against_the_engines_logprobs(tiny_model_dir):
    seqs = tokenizer_sequences()
    hp = Hyperparameters(finetune="full", tis_cap=CAP)
    probe = Policy(str(tiny_model_dir), hp)
    with torch.no_grad():
        logp = token_logprobs(probe.model, collate(seqs, probe.pad_id))
    # an engine that found every written token e^0.5 times less likely than the trainer does
    shifted = []
    for b, s in enumerate(seqs):
        beh = [0.0] + [float(v) - 0.5 for v in logp[b, :len(s.token_ids) - 1]]
        shifted.append(TrainSequence(s.token_ids, s.mask, s.advantage, beh))

    stats = Policy(str(tiny_model_dir), hp).update(shifted)
    assert stats["is_ratio_mean"] == pytest.approx(math.exp(0.5), rel=1e-4)
    assert stats["is_ratio_max"] == pytest.approx(math.exp(0.5), rel=1e-4)
    assert stats["logprob_mismatch_mean"] == pytest.approx(0.5, rel=1e-4)
    # r = 1.65 > 1 + ε: clipped where A > 0, weight 1.65 (under the cap) where A < 0
    positive = sum(sum(s.mask[1:]) for s in seqs if s.advantage > 0)
    assert stats["clip_fraction"] == pytest.approx(positive / stats["trained_tokens"])
    assert 0 < stats["clip_fraction"] < 1
    assert stats["is_capped_share"] == 0 and stats["behaviour_logprob_missing_share"] == 0

    # engine log-probs unknown: on-policy, and no ratio metric pretends to compare anything
    stats = Policy(str(tiny_model_dir), hp).update(seqs)
    assert stats["behaviour_logprob_missing_share"] == 1.0 and stats["clip_fraction"] == 0
    for key in ("logprob_mismatch_mean", "is_ratio_mean", "is_ratio_max"):
        assert key not in stats
