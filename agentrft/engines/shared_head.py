"""Decoding many rows that share a prompt head, with the head's keys and values held once.

An agent task's prompts share a long head (system prompt, tools, demonstrations: ~1,000
tokens in FinQA-lite). The engine used to copy the head's cache into every row, so a batch of
B rows held B copies and every decode step read all of them. Here the head stays one copy and
each row holds only what follows it:

    head (batch 1)    K_head, V_head  [H tokens]            held once, read once a step
    row b             K_b,    V_b     [its suffix, then what it writes]

    attention of row b's query q:   s = [q·K_head | q·K_b] × scale, masked
                                    p = softmax(s)                (one softmax over both)
                                    out = p[:H]·V_head + p[H:]·V_b

One softmax over the concatenated scores makes this the attention over the whole sequence,
exact rather than approximate. The head's scores for all rows are one matrix product per KV
head ([rows × query heads, d] × [d, H]), so its keys and values are read once per step
whatever the batch size.

How it plugs into transformers: the cache's layers (`SharedHeadLayer`) store the rows' own
states with room to grow (the engine's `RoomyLayer`) and keep the head beside them; the
attention function registered as `ATTENTION` finds the head through the cache made current by
`attending_with(model, cache)`, and is plain SDPA for every other call. The mask is SDPA's,
over head + own positions: a layer's sequence length counts both.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

ATTENTION = "agentrft_shared_head"

# Scores computed at once (rows × query heads × queries × keys): a prefill's scores, and each
# temporary made from them, stay at ~16 MB in fp32; a decode step (one query a row) is far
# below it. At 32 M a FinQA-lite eval's prefill (60 rows × ~200 own tokens) peaked 0.5 GB higher.
MAX_SCORES = 4 * 1024 * 1024

_current: contextvars.ContextVar[Cache | None] = contextvars.ContextVar("shared_head_cache",
                                                                         default=None)


class SharedHeadLayer:
    """Mixed into the engine's RoomyLayer (transformers_engine.py): the rows' own states
    (`keys`, `values`) plus one copy of the head's (`head_keys`, `head_values`, batch 1)."""

    head_keys: torch.Tensor
    head_values: torch.Tensor

    def get_seq_length(self) -> int:
        own = self.keys.shape[-2] if self.is_initialized else 0
        return self.head_keys.shape[-2] + own


@contextmanager
def attending_with(model, cache: Cache) -> Iterator[None]:
    """Within the block, `model`'s attention reads the head of `cache`'s shared-head layers.
    Other threads keep plain SDPA: the cache is current only in this one's context."""
    config = model.config
    before = config._attn_implementation
    token = _current.set(cache)
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before
        _current.reset(token)


def shared_head_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs):
    """transformers' attention signature: query (B, heads, Q, d), key/value (B, kv heads, N, d)
    as the cache returned them, mask (B, 1, Q, H + N) or None; returns ((B, Q, heads, d), None)."""
    cache = _current.get()
    layer = cache.layers[module.layer_idx] if cache is not None else None
    if not isinstance(layer, SharedHeadLayer):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = split_attention(query, layer.head_keys, layer.head_values, key, value, attention_mask, scale)
    return out.transpose(1, 2).contiguous(), None


def split_attention(q: torch.Tensor, head_k: torch.Tensor, head_v: torch.Tensor,
                    own_k: torch.Tensor, own_v: torch.Tensor, mask: torch.Tensor | None,
                    scale: float) -> torch.Tensor:
    """Attention over [head | own] without joining them: (B, heads, Q, d).

    q (B, heads, Q, d); head_k/v (1, kv heads, H, d); own_k/v (B, kv heads, N, d); mask bool
    (True: attend) or additive float, (B or 1, 1, Q, H + N), or None for plain causal (the
    last Q own positions are the queries')."""
    B, heads, Q, d = q.shape
    kv_heads, H, N = head_k.shape[1], head_k.shape[-2], own_k.shape[-2]
    g = heads // kv_heads  # query heads per KV head (grouped-query attention)
    qg = q.reshape(B, kv_heads, g * Q, d)  # heads kv*g … kv*g+g-1 read KV head kv
    if mask is None:
        mask = causal_mask(Q, H, N, q.device)
    out = q.new_empty(B, kv_heads, g * Q, d)
    step = max(1, MAX_SCORES // (heads * Q * (H + N)))
    for lo in range(0, B, step):
        rows = slice(lo, min(B, lo + step))
        qc = qg[rows]
        b = qc.shape[0]
        # head: one product per KV head for all rows' queries at once
        per_kv = qc.transpose(0, 1).reshape(kv_heads, b * g * Q, d)
        s_head = torch.bmm(per_kv, head_k[0].transpose(1, 2))  # (kv, b·g·Q, H)
        s_head = s_head.view(kv_heads, b, g * Q, H).transpose(0, 1)
        s_own = torch.matmul(qc, own_k[rows].transpose(-1, -2))  # (b, kv, g·Q, N)
        scores = torch.cat([s_head, s_own], -1).float().mul_(scale).view(b, kv_heads, g, Q, H + N)
        m = (mask[rows] if mask.shape[0] > 1 else mask).unsqueeze(2)  # (b|1, 1, 1, Q, H + N)
        scores = scores.masked_fill_(~m, float("-inf")) if m.dtype == torch.bool else scores.add_(m)
        p = torch.softmax(scores.view(b, kv_heads, g * Q, H + N), -1).to(q.dtype)
        p_head = p[..., :H].transpose(0, 1).reshape(kv_heads, b * g * Q, H)
        o_head = torch.bmm(p_head, head_v[0]).view(kv_heads, b, g * Q, d).transpose(0, 1)
        out[rows] = o_head + torch.matmul(p[..., H:], own_v[rows])
    return out.view(B, heads, Q, d)


def causal_mask(Q: int, H: int, N: int, device) -> torch.Tensor:
    """(1, 1, Q, H + N): every query sees the head and the own positions up to its own."""
    own = torch.arange(N, device=device)[None, :] <= torch.arange(N - Q, N, device=device)[:, None]
    head = torch.ones(Q, H, dtype=torch.bool, device=device)
    return torch.cat([head, own], -1)[None, None]


AttentionInterface.register(ATTENTION, shared_head_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
