"""Training on a shared head once (`SharedPrefix`) gives the gradients of training on each
full sequence: same log-probs, same weight gradients, for LoRA and full fine-tuning."""

import pytest
import torch

from agentrft.train.loss import TrainSequence, backbone_and_head, collate, token_logprobs
from agentrft.train.shared_prefix import MIN_SHARED_TOKENS, SharedPrefix, shared_head_len
from tests.tiny_model import PAD_ID, tiny_llama

HEAD = [(7 * i) % 90 + 5 for i in range(MIN_SHARED_TOKENS + 6)]


def sequences() -> list[TrainSequence]:
    tails = [([11, 12, 13], [21, 22, 2]), ([11, 14], [23, 2]), ([15], [24, 25, 26, 27, 2])]
    out = []
    for i, (prompt, written) in enumerate(tails):
        ids = HEAD + prompt + written
        mask = [0] * (len(HEAD) + len(prompt)) + [1] * len(written)
        out.append(TrainSequence(ids, mask, advantage=[1.0, -0.5, 0.25][i]))
    return out


def test_shared_head_len_stops_before_trained_tokens():
    assert shared_head_len([[1, 2, 3, 4], [1, 2, 3, 5]], [[0, 0, 0, 0], [0, 0, 0, 0]]) == 3
    # row 1 writes token 2: position 1 predicts it, so the head is token 0 only
    assert shared_head_len([[1, 2, 3, 4], [1, 2, 3, 5]], [[0, 0, 0, 1], [0, 0, 1, 1]]) == 1
    assert shared_head_len([[1, 2], [3, 4]], [[0, 1], [0, 1]]) == 0


def weighted_loss(logp, batch, seqs):
    return (logp * batch.loss_mask_BT * batch.advantages_B[:, None]).sum()


@pytest.mark.parametrize("recompute", [True, False])
@pytest.mark.parametrize("lora", [False, True])
def test_gradients_through_a_shared_prefix_equal_per_sequence_gradients(lora, recompute):
    model = tiny_llama(seed=2).train()
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    weights = [p for p in model.parameters() if p.requires_grad]
    seqs = sequences()

    full = collate(seqs, PAD_ID)
    ref_logp = token_logprobs(model, full)
    weighted_loss(ref_logp, full, seqs).backward()
    ref_grads = [p.grad.clone() for p in weights]
    model.zero_grad()

    n = shared_head_len([s.token_ids for s in seqs], [s.mask for s in seqs])
    assert n == len(HEAD)
    prefix = SharedPrefix(backbone_and_head(model)[0], HEAD, "cpu", recompute=recompute)
    tails = [TrainSequence(s.token_ids[n:], s.mask[n:], s.advantage) for s in seqs]
    got = []
    for chunk in (tails[:2], tails[2:]):  # two micro-batches accumulate onto one head
        batch = collate(chunk, PAD_ID)
        logp = token_logprobs(model, batch, prefix=prefix)
        weighted_loss(logp, batch, chunk).backward()
        got.extend(logp[b][batch.loss_mask_BT[b].bool()] for b in range(len(chunk)))
    prefix.backward()

    want = [ref_logp[b][full.loss_mask_BT[b].bool()] for b in range(len(seqs))]
    for a, b in zip(got, want):
        assert torch.allclose(a, b.detach(), atol=1e-5)
    for g, r in zip((p.grad for p in weights), ref_grads):
        assert torch.allclose(g, r, atol=1e-5), (g - r).abs().max()


def saved_for_backward(run) -> int:
    """Bytes of the tensors autograd saves for backward while `run()` runs."""
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return saved


def test_the_heads_recomputation_is_checkpointed_layer_by_layer():
    """Its graph holds each layer's input and keys/values, not every layer's activations: the
    bytes saved for backward while `backward()` recomputes the head shrink, same gradients."""
    model = tiny_llama(seed=2).train()
    weights = [p for p in model.parameters() if p.requires_grad]
    tails = [TrainSequence(s.token_ids[len(HEAD):], s.mask[len(HEAD):], s.advantage)
             for s in sequences()]

    def head_backward(checkpoint: bool) -> tuple[int, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        prefix = SharedPrefix(backbone_and_head(model)[0], HEAD, "cpu", checkpoint=checkpoint)
        batch = collate(tails, PAD_ID)
        weighted_loss(token_logprobs(model, batch, prefix=prefix), batch, tails).backward()
        return saved_for_backward(prefix.backward), [p.grad.clone() for p in weights]

    whole, want = head_backward(checkpoint=False)
    per_layer, got = head_backward(checkpoint=True)
    print(f"saved for the head's backward: {whole} -> {per_layer} bytes")
    assert per_layer < 0.5 * whole
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-6), (g - w).abs().max()
