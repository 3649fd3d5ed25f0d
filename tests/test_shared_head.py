"""The engine's shared-head attention (engines/shared_head.py): the head's keys and values are
held once for a batch, and attention over [head | a row's own] equals SDPA over the joined
sequence, with grouped-query heads, padding masks and plain causal prefill."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agentrft.engines.base import SamplingParams
from agentrft.engines.shared_head import causal_mask, split_attention
from agentrft.engines.transformers_engine import MIN_SHARED_PREFIX, HeadAndRowsLayer, \
    TransformersEngine
from tests.tiny_model import PAD_ID, assert_logprobs_match_full_forward, tiny_llama

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def joined_sdpa(q, head_k, head_v, own_k, own_v, mask):
    """The reference: the head copied into every row, keys repeated per query head, SDPA."""
    B, heads = q.shape[:2]
    g = heads // head_k.shape[1]
    k = torch.cat([head_k.expand(B, -1, -1, -1), own_k], -2).repeat_interleave(g, 1)
    v = torch.cat([head_v.expand(B, -1, -1, -1), own_v], -2).repeat_interleave(g, 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)


@pytest.mark.parametrize("kv_heads", [3, 1])  # grouped (9 query heads read 3) and multi-query
@pytest.mark.parametrize("Q", [1, 5])  # a decode step, a prefill
def test_split_attention_equals_sdpa_over_the_joined_sequence(kv_heads, Q):
    torch.manual_seed(0)
    B, heads, H, N, d = 4, 9, 11, 7, 8
    q = torch.randn(B, heads, Q, d)
    head_k, head_v = torch.randn(1, kv_heads, H, d), torch.randn(1, kv_heads, H, d)
    own_k, own_v = torch.randn(B, kv_heads, N, d), torch.randn(B, kv_heads, N, d)
    mask = causal_mask(Q, H, N, "cpu").expand(B, 1, Q, H + N).clone()
    mask[1, :, :, H:H + 2] = False  # row 1's two left pads
    want = joined_sdpa(q, head_k, head_v, own_k, own_v, mask)
    got = split_attention(q, head_k, head_v, own_k, own_v, mask, 0.3)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    assert torch.allclose(split_attention(q, head_k, head_v, own_k, own_v, additive, 0.3), want, atol=1e-5)
    # no mask: plain causal over the own positions
    plain = joined_sdpa(q, head_k, head_v, own_k, own_v, causal_mask(Q, H, N, "cpu"))
    assert torch.allclose(split_attention(q, head_k, head_v, own_k, own_v, None, 0.3), plain, atol=1e-5)


def test_rows_are_split_into_chunks_with_the_same_result(monkeypatch):
    torch.manual_seed(1)
    q, hk, hv = torch.randn(6, 4, 3, 8), torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8)
    ok, ov = torch.randn(6, 2, 5, 8), torch.randn(6, 2, 5, 8)
    whole = split_attention(q, hk, hv, ok, ov, None, 0.3)
    monkeypatch.setattr("agentrft.engines.shared_head.MAX_SCORES", 4 * 3 * 15 * 2)  # 2 rows a chunk
    assert torch.allclose(split_attention(q, hk, hv, ok, ov, None, 0.3), whole, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_engine_with_grouped_query_heads_matches_a_full_forward(temperature):
    model = tiny_llama(seed=3, num_heads=4, num_kv_heads=2)
    engine = TransformersEngine(model, pad_token_id=PAD_ID, seed=0)
    head = [3 + (i * 7) % 90 for i in range(MIN_SHARED_PREFIX + 9)]
    prompts = [head + [7, 8, 9], head + [10], head + [7, 8, 9], head + [11, 12, 13, 14, 15]]
    outs = engine.generate(prompts, SamplingParams(temperature=temperature, max_new_tokens=9))
    assert_logprobs_match_full_forward(model, prompts, outs, temperature)
    assert model.config._attn_implementation == "sdpa"  # switched back after the call


def test_a_batch_holds_the_head_once(monkeypatch):
    """What the decode loop sees: a head of batch 1 and rows holding only their own tokens."""
    model = tiny_llama(seed=3)
    engine = TransformersEngine(model, pad_token_id=PAD_ID, seed=0)
    head = list(range(20, 20 + MIN_SHARED_PREFIX + 10))
    prompts = [head + [5], head + [6, 7], head + [5]]
    seen = []
    decode = engine._decode

    def spy(cache, *args):
        seen.extend((type(layer), tuple(layer.head_keys.shape), tuple(layer.keys.shape),
                     layer.get_seq_length()) for layer in cache.layers)
        return decode(cache, *args)

    monkeypatch.setattr(engine, "_decode", spy)
    engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=4))
    assert len(seen) == len(model.model.layers)
    for kind, head_shape, own_shape, length in seen:
        assert kind is HeadAndRowsLayer
        assert head_shape[0] == 1 and head_shape[-2] == len(head)
        assert own_shape[0] == 3 and own_shape[-2] == 2  # own: the padded suffix
        assert length == len(head) + 2


def test_other_threads_keep_plain_attention_while_a_batch_decodes():
    """The switch is the model config's, but only the decoding thread has a current cache:
    a forward elsewhere at the same time (a trainer's) gets SDPA."""
    import threading

    from agentrft.engines.shared_head import attending_with

    model = tiny_llama(seed=3)
    ids = torch.tensor([[5, 6, 7, 8]])
    want = model(input_ids=ids).logits
    got = {}
    with attending_with(model, cache=None):
        t = threading.Thread(target=lambda: got.setdefault("logits", model(input_ids=ids).logits))
        t.start()
        t.join()
    assert torch.allclose(got["logits"], want, atol=1e-6)
