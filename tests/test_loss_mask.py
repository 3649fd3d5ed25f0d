"""The loss sees exactly the sampled ids and only the tokens the model wrote (hand-built trajectory)."""

import pytest
import torch

from agentrft.rollout.types import Rollout
from agentrft.train.loss import TrainSequence, collate, policy_loss_sum, token_logprobs
from tests.tiny_model import PAD_ID, tiny_llama

# A two-turn trajectory, by hand: prompt, model call, tool result, model answer.
PROMPT, CALL, TOOL, ANSWER = [5, 6, 7, 8], [20, 21, 22, 2], [9, 10, 11], [30, 31, 2]


def hand_built_rollout() -> Rollout:
    r = Rollout(trace_id="trace_test", row_index=0, item={})
    r.append(PROMPT, model_written=False)
    r.append(CALL, model_written=True, logprobs=[-1.0] * len(CALL))
    r.append(TOOL, model_written=False)
    r.append(ANSWER, model_written=True, logprobs=[-1.0] * len(ANSWER))
    return r


def test_mask_is_one_exactly_on_model_written_tokens():
    r = hand_built_rollout()
    assert r.token_ids == PROMPT + CALL + TOOL + ANSWER
    assert r.mask == [0] * 4 + [1] * 4 + [0] * 3 + [1] * 3
    assert r.completion_tokens == len(CALL) + len(ANSWER)


def test_collate_keeps_sampled_ids_and_shifts_mask_onto_targets():
    r = hand_built_rollout()
    short = TrainSequence([5, 6, 40, 2], [0, 0, 1, 1], advantage=-1.0)
    batch = collate([TrainSequence(r.token_ids, r.mask, 1.0), short], pad_id=PAD_ID)
    assert batch.input_ids_BT[0].tolist() == r.token_ids  # never re-tokenised
    assert batch.input_ids_BT[1].tolist() == [5, 6, 40, 2] + [PAD_ID] * (len(r.token_ids) - 4)
    # position t predicts token t+1: loss where the *target* is model-written
    targets = batch.targets_BT[0].tolist()
    carried = [t for t, m in zip(targets, batch.loss_mask_BT[0].tolist()) if m == 1.0]
    assert carried == CALL + ANSWER
    assert batch.loss_mask_BT[1].tolist()[:3] == [0.0, 1.0, 1.0]
    assert batch.loss_mask_BT[1].sum() == 2  # padding carries no loss
    assert batch.attention_BT[1].tolist()[:5] == [1, 1, 1, 1, 0]


def test_gradient_flows_only_from_model_written_positions():
    torch.manual_seed(0)
    model = tiny_llama(seed=0)
    r = hand_built_rollout()
    batch = collate([TrainSequence(r.token_ids, r.mask, 1.0)], pad_id=PAD_ID)
    logits = model(input_ids=batch.input_ids_BT).logits[:, :-1].detach().requires_grad_(True)

    class Fixed(torch.nn.Module):  # feeds the captured logits through the real loss code
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": torch.cat([logits, logits[:, -1:]], 1)})()

    logp = token_logprobs(Fixed(), batch)
    loss, _ = policy_loss_sum(logp, logp.detach(), batch, clip_epsilon=0.2)
    loss.backward()
    touched = (logits.grad[0].abs().sum(-1) > 0).tolist()
    assert touched == [m == 1.0 for m in batch.loss_mask_BT[0].tolist()]


def test_clipping_stops_gradient_beyond_the_trust_region():
    batch = collate([TrainSequence([1, 3, 4], [0, 1, 1], advantage=1.0)], pad_id=PAD_ID)
    old = torch.zeros(1, 2)
    logp = torch.tensor([[0.5, 0.0]], requires_grad=True)  # ratio e^0.5 > 1.2 on the first token
    loss, stats = policy_loss_sum(logp, old, batch, clip_epsilon=0.2)
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1] != 0
    assert stats["clip_fraction_sum"] == 1.0


def _two_sequence_batch():
    r = hand_built_rollout()
    short = TrainSequence([5, 6, 20, 21, 2], [0, 0, 1, 1, 1], -0.5)
    return collate([TrainSequence(r.token_ids, r.mask, 1.0), short], pad_id=PAD_ID)


def _full_logits_reference(model, batch, temperature):
    logits = model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT).logits[:, :-1]
    logp = torch.log_softmax(logits.float() / temperature, -1)
    return logp.gather(-1, batch.targets_BT[..., None])[..., 0] * batch.loss_mask_BT


@pytest.mark.parametrize("wrap_lora", [False, True])
def test_chunked_head_logprobs_and_gradients_equal_the_full_logits_path(monkeypatch, wrap_lora):
    """Training computes the output projection only where there is loss, in chunks recomputed
    in backward; values and gradients must be those of the plain full-logits computation."""
    import agentrft.train.loss as loss_mod

    monkeypatch.setattr(loss_mod, "LOGIT_CHUNK", 3)  # several chunks, one of them partial
    model = tiny_llama(seed=1).train()
    if wrap_lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    assert loss_mod.backbone_and_head(model) is not None
    batch = _two_sequence_batch()
    weights = [p for p in model.parameters() if p.requires_grad]

    ours = token_logprobs(model, batch, temperature=0.7)
    (ours * batch.loss_mask_BT).sum().backward()
    ours_grads = [p.grad.clone() for p in weights]
    model.zero_grad()
    ref = _full_logits_reference(model, batch, 0.7)
    (ref * batch.loss_mask_BT).sum().backward()

    assert torch.allclose(ours, ref, atol=1e-5)
    assert (ours[batch.loss_mask_BT == 0] == 0).all()
    for a, b in zip(ours_grads, (p.grad for p in weights)):
        # fp32 rounding of sums taken in another order: relative to the tensor's scale (the
        # head's gradient reaches ~200 here; an element-wise 1e-5 failed on some CPUs by 3e-5)
        scale = float(b.abs().max())
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * scale), ((a - b).abs().max(), scale)


def test_micro_batches_respect_both_the_sequence_and_the_token_caps():
    from agentrft.train.policy import micro_batches

    seqs = [TrainSequence([1] * n, [0] * n, 0.0) for n in (10, 10, 20, 30, 100, 500)]
    groups = micro_batches(seqs, max_seqs=2, max_tokens=64)
    assert [[len(s.token_ids) for s in g] for g in groups] == [[10, 10], [20, 30], [100], [500]]
    assert sum(len(g) for g in groups) == len(seqs)
    assert [len(g) for g in micro_batches(seqs, max_seqs=8, max_tokens=2_000)] == [5, 1]
