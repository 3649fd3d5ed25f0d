"""Trainer efficiency that must not change what is learned: bf16 autocast with fp32 master
weights, activation checkpointing and packed micro-batches, on the tiny model and the CPU."""

from contextlib import nullcontext

import pytest
import torch

from agentrft.errors import SpecError
from agentrft.spec.job import Hyperparameters
from agentrft.train.checkpointing import checkpointed_layers, decoder_layers
from agentrft.train.loss import TrainSequence, backbone_and_head, collate, token_logprobs
from agentrft.train.packing import can_pack
from agentrft.train.policy import Policy, micro_batches, precision_for
from agentrft.train.shared_prefix import SharedPrefix, shared_head_len
from tests.test_shared_prefix import saved_for_backward, sequences as prefix_sequences
from tests.tiny_model import PAD_ID, tiny_llama


def tokenizer_sequences(n: int = 4) -> list[TrainSequence]:
    """Rollout-shaped sequences: a shared head, a short prompt tail, model-written tokens."""
    head = [(37 * i) % 400 + 10 for i in range(80)]
    out = []
    for i in range(n):
        prompt = [500 + i, 501 + 2 * i]
        written = [(60 + 13 * i + 7 * j) % 700 + 20 for j in range(3 + 2 * i)]
        out.append(TrainSequence(head + prompt + written, [0] * (len(head) + len(prompt)) + [1] * len(written),
                                 advantage=[1.0, -0.5, 0.25, -0.75][i % 4]))
    return out


def test_precision_auto_is_bf16_on_cuda_and_fp32_on_cpu():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert precision_for("auto", "full", cuda).autocast_dtype == torch.bfloat16
    assert precision_for("auto", "full", cuda).load_dtype == torch.float32  # fp32 master weights
    assert precision_for("auto", "lora", cuda).load_dtype == torch.bfloat16  # frozen base
    assert precision_for("auto", "lora", cpu).autocast_dtype is None
    assert precision_for("bf16", "full", cpu).autocast_dtype == torch.bfloat16


def test_a_bad_precision_is_a_spec_error_naming_the_field(tmp_path):
    from tests.test_spec import job_yaml
    from agentrft.spec import load_job

    with pytest.raises(SpecError) as e:
        load_job(job_yaml(tmp_path, extra_hp="\n      precision: fp16"))
    assert e.value.field == "method.reinforcement.hyperparameters.precision"
    assert "'bf16'" in str(e.value)


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_bf16_update_trains_fp32_master_weights(tiny_model_dir, finetune):
    policy = Policy(str(tiny_model_dir), Hyperparameters(finetune=finetune, precision="bf16"))
    trainable = {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())
    if finetune == "lora":
        frozen = [p for p in policy.model.parameters() if not p.requires_grad]
        assert all(p.dtype == torch.bfloat16 for p in frozen)

    stats = policy.update(tokenizer_sequences())
    assert stats["grad_norm"] > 0
    after = dict(policy.model.named_parameters())
    assert any(not torch.equal(after[n], before) for n, before in trainable.items())
    assert all(after[n].dtype == torch.float32 for n in trainable)
    state = [t for s in policy.optimizer.state.values() for t in s.values() if t.dim() > 0]
    assert state and all(t.dtype == torch.float32 for t in state)


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_bf16_logprobs_are_fp32_and_close_to_fp32_ones(tiny_model_dir, finetune):
    seqs = tokenizer_sequences()
    got = {}
    for precision in ("fp32", "bf16"):
        policy = Policy(str(tiny_model_dir), Hyperparameters(finetune=finetune, precision=precision))
        batch = collate(seqs, policy.pad_id)
        with torch.no_grad(), policy.precision.autocast(policy.device):
            got[precision] = token_logprobs(policy.model, batch)
    mask = batch.loss_mask_BT.bool()
    assert got["bf16"].dtype == torch.float32
    diff = (got["bf16"] - got["fp32"])[mask].abs()
    assert 0 < diff.max() < 0.05, diff.max()  # bf16 really ran (0.02 measured), only rounding differs


# --- activation checkpointing -------------------------------------------------------------------

def tiny(lora: bool):
    model = tiny_llama(seed=2).train()
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    return model


def logprobs_and_grads(model, seqs, *, shared_prefix: bool, checkpointing: bool, packed: bool = False):
    """Trained log-probs of `seqs` and every trainable weight's gradient, over two micro-batches
    (and a shared head when asked), as `Policy.update` computes them."""
    model.zero_grad(set_to_none=True)
    got = []
    with checkpointed_layers(model) if checkpointing else nullcontext():
        n = shared_head_len([s.token_ids for s in seqs], [s.mask for s in seqs]) if shared_prefix else 0
        prefix = SharedPrefix(backbone_and_head(model)[0], seqs[0].token_ids[:n], "cpu") if n else None
        tails = [TrainSequence(s.token_ids[n:], s.mask[n:], s.advantage) for s in seqs]
        for chunk in (tails[:2], tails[2:]):
            batch = collate(chunk, PAD_ID)
            logp = token_logprobs(model, batch, prefix=prefix, packed=packed)
            (logp * batch.advantages_B[:, None]).sum().backward()
            got.extend(logp[b][batch.loss_mask_BT[b].bool()].detach() for b in range(len(chunk)))
        if prefix is not None:
            prefix.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return torch.cat(got), grads


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("shared_prefix", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_checkpointing_gives_the_same_logprobs_and_gradients(lora, shared_prefix, packed):
    model = tiny(lora)
    want_logp, want_grads = logprobs_and_grads(model, prefix_sequences(), shared_prefix=shared_prefix,
                                               checkpointing=False, packed=packed)
    got_logp, got_grads = logprobs_and_grads(model, prefix_sequences(), shared_prefix=shared_prefix,
                                             checkpointing=True, packed=packed)
    assert torch.allclose(got_logp, want_logp, rtol=1e-5, atol=1e-6)
    assert len(got_grads) == len(want_grads) and all(g.abs().sum() > 0 for g in got_grads)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-6), (g - w).abs().max()
    assert all("forward" not in vars(layer) for layer in decoder_layers(model))  # unwrapped again


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_checkpointing_saves_less_for_backward(shared_prefix):
    model = tiny(lora=False)

    def saved_bytes(checkpointing: bool) -> int:
        return saved_for_backward(lambda: logprobs_and_grads(
            model, prefix_sequences(), shared_prefix=shared_prefix, checkpointing=checkpointing))

    without, with_ = saved_bytes(False), saved_bytes(True)
    print(f"saved for backward: {without} -> {with_} bytes")
    assert with_ < 0.5 * without


def test_policy_update_with_checkpointing_and_bf16(tiny_model_dir):
    hp = Hyperparameters(finetune="full", precision="bf16", gradient_checkpointing=True,
                         micro_batch_size=2)
    policy = Policy(str(tiny_model_dir), hp)
    before = [p.detach().clone() for p in policy.model.parameters()]
    stats = policy.update(tokenizer_sequences())
    assert stats["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(policy.model.parameters(), before))


# --- packed micro-batches -----------------------------------------------------------------------

@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("shared_prefix", [False, True])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_micro_batches_give_the_padded_logprobs_and_gradients(lora, shared_prefix, attention):
    model = tiny(lora)
    backbone = backbone_and_head(model)[0]
    backbone.config._attn_implementation = attention
    assert can_pack(backbone)
    want_logp, want_grads = logprobs_and_grads(model, prefix_sequences(), shared_prefix=shared_prefix,
                                               checkpointing=False)
    got_logp, got_grads = logprobs_and_grads(model, prefix_sequences(), shared_prefix=shared_prefix,
                                             checkpointing=False, packed=True)
    assert torch.allclose(got_logp, want_logp, rtol=1e-5, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5), (g - w).abs().max()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_row_holding_shared_spans_once_gives_the_padded_logprobs_and_gradients(attention):
    """A group sharing a prompt, one rollout sharing a turn with the one before it beyond the
    prompt, a duplicate, and a sequence sharing nothing, in one packed row (packing.py)."""
    from agentrft.train.packing import shared_spans

    model = tiny(lora=False)
    backbone_and_head(model)[0].config._attn_implementation = attention
    prompt = [(17 * i) % 60 + 5 for i in range(12)]
    ids = [prompt + [81, 82, 83], prompt + [84, 85], prompt + [84, 86, 87, 88],
           prompt + [84, 86, 87, 88], [7, 8, 9, 10]]
    seqs = [TrainSequence(t, [0] * min(len(t) - 1, 12) + [1] * max(1, len(t) - 12),
                          advantage=a) for t, a in zip(ids, [1.0, -0.5, 0.25, 0.75, -1.0])]
    assert shared_spans(ids) == [0, 12, 13, 16, 0]

    def run(packed: bool):
        model.zero_grad(set_to_none=True)
        batch = collate(seqs, PAD_ID)
        logp = token_logprobs(model, batch, packed=packed)
        (logp * batch.advantages_B[:, None]).sum().backward()
        return logp.detach(), [p.grad.clone() for p in model.parameters()]

    (want_logp, want_grads), (got_logp, got_grads) = run(False), run(True)
    assert torch.allclose(got_logp, want_logp, rtol=1e-5, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5), (g - w).abs().max()


def test_packed_rows_cap_real_tokens_not_padded_ones():
    seqs = [TrainSequence([n] * n, [0] * n, 0.0) for n in (10, 20, 30, 40)]  # nothing shared
    padded = micro_batches(seqs, max_seqs=8, max_tokens=70)
    packed = micro_batches(seqs, max_seqs=8, max_tokens=70, packed=True)
    assert [len(c) for c in padded] == [2, 1, 1]  # 2 × 20 padded; 3 × 30 would be 90
    assert [len(c) for c in packed] == [3, 1]  # 10 + 20 + 30 real tokens


def test_a_packed_row_counts_a_shared_prompt_once():
    prompt = list(range(100, 130))
    group = [TrainSequence(prompt + [i] * 10, [0] * 30 + [1] * 10, 0.0) for i in range(4)]
    # 30 + 4 × 10 = 70 tokens in one row; padded or unshared it would be 160
    assert [len(c) for c in micro_batches(group, max_seqs=8, max_tokens=70, packed=True)] == [4]
    assert [len(c) for c in micro_batches(group, max_seqs=8, max_tokens=69, packed=True)] == [3, 1]


def test_a_packed_update_equals_a_padded_one(tiny_model_dir):
    stats = {}
    for pack in (False, True):
        hp = Hyperparameters(finetune="full", micro_batch_size=3, micro_batch_tokens=200,
                             pack_sequences=pack)
        policy = Policy(str(tiny_model_dir), hp)
        assert policy.packed == pack
        stats[pack] = policy.update(tokenizer_sequences())
    assert stats[True]["loss"] == pytest.approx(stats[False]["loss"], rel=1e-5)
    assert stats[True]["grad_norm"] == pytest.approx(stats[False]["grad_norm"], rel=1e-5)


def test_packing_is_chosen_only_where_it_saves_compute():
    from transformers import LlamaConfig

    from agentrft.train.packing import packing_pays

    smollm = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                         num_key_value_heads=3, num_hidden_layers=30)
    assert not packing_pays([256] * 4, 0, smollm)  # equal lengths: nothing to save
    assert packing_pays([50, 300, 310, 320], 0, smollm)  # one short row: its padding costs more
    assert packing_pays([100, 400], 950, smollm)
    assert not packing_pays([380, 400, 410, 420], 950, smollm)
    assert not packing_pays([700], 0, smollm)
