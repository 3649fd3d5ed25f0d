"""Packed micro-batches: a micro-batch's sequences run as one row with no padding, each
attending only to what it would have seen alone, and a span several of them start with is in
the row once.

    sequences (a group's rollouts share their prompt, ordered by their tokens):
        A: p p p p a a a
        B: p p p p b b
        C: p p p p b c c c
    the row (N = 11 tokens, not 22):   p p p p a a a | b b | c c c
    C's tokens attend to:              p p p p         b     c c c   (causally)
    positions:                         0 1 2 3 4 5 6   4 5   5 6 7

Each sequence shares what it has in common with the one before it: its first h tokens are read
from where that one's are (`shared_spans`), its own tokens follow in the row at positions
h, h + 1, … So every token sees the same keys and values at the same positions as in a row of
its own, the shared tokens' hidden states are computed once, and their gradient is the sum of
what each sequence's loss sends back through them, as separate rows would have summed it:
exact, not an approximation. `Policy` orders a step's sequences by their tokens, which puts a
group's rollouts next to each other, and for sorted sequences the longest common prefix with
any earlier one is the one with the previous.

The head every sequence of a step shares (system prompt, tools, demonstrations) is a
`SharedPrefix` in front of the row, as a cache; this sharing is the one beneath it: a row's
prompt tail in its group, and the turns a group's rollouts have in common before they diverge.

The mask is dense (N × (prefix + N)), so a row pays attention over all pairs of its tokens
where padded rows do not; `packing_pays` compares the two costs per micro-batch.
"""

from __future__ import annotations

import torch

from agentrft.engines.transformers_engine import common_prefix_len
from agentrft.models.kv_cache import cache_kwarg

# Decoders whose forward hands a 4D mask to attention as given and whose attention is all full
# (no sliding window), so a packed row with our own mask computes what separate rows would.
PACKABLE_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


def can_pack(backbone) -> bool:
    config = getattr(backbone, "config", None)
    if getattr(config, "model_type", None) not in PACKABLE_MODEL_TYPES:
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False  # flash-attention kernels take no 4D mask
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(t == "full_attention" for t in layer_types)
    return getattr(config, "sliding_window", None) is None


def shared_spans(token_ids: list[list[int]]) -> list[int]:
    """How many leading tokens each sequence shares with the one before it (0 for the first)."""
    return [0] + [common_prefix_len(pair) for pair in zip(token_ids, token_ids[1:])]


def packing_pays(lengths: list[int], prefix_len: int, config, *, shared_tokens: int = 0) -> bool:
    """Whether one packed row costs fewer FLOPs than the padded batch. The mask of a packed row
    is dense, so its attention covers every pair of its N tokens (N × (P + N) scores) where
    padded rows cover B × T × (P + T), but its linear layers see N tokens instead of B × T, and
    N leaves out the `shared_tokens` the row holds once. Sorted sequences of similar length
    that share nothing pad little, and then packing only adds attention (measured on CPU,
    4 × 256 tokens: 6.0 s packed, 4.4 s padded)."""
    if len(lengths) < 2:
        return False
    d = config.hidden_size
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
    # per token and layer: q/o projections, k/v projections, the gated MLP (multiply-adds × 2)
    linear = 2 * (2 * d * d + 2 * d * kv * head_dim + 3 * d * config.intermediate_size)
    attention = 4 * config.num_attention_heads * head_dim  # per key: QK^T and AV
    n, b, t = sum(lengths) - shared_tokens, len(lengths), max(lengths)
    packed = n * (linear + attention * (prefix_len + n))
    padded = b * t * (linear + attention * (prefix_len + t))
    return packed < padded


def packing_pays_for(token_ids: list[list[int]], prefix_len: int, config) -> bool:
    """`packing_pays` for these sequences in this order, counting the spans they share."""
    return packing_pays([len(t) for t in token_ids], prefix_len, config,
                        shared_tokens=sum(shared_spans(token_ids)))


def packed_hidden(backbone, input_ids_BT: torch.Tensor, lengths_B: list[int],
                  prefix=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states (N, D) of the row, and where each sequence's position t is in it:
    `index_BT[b, t]` (0 past a sequence's end). With `prefix` (a `SharedPrefix`) the row attends
    to it as well, and positions start after it."""
    device = input_ids_BT.device
    rows = [input_ids_BT[b, :n].tolist() for b, n in enumerate(lengths_B)]
    spans = shared_spans(rows)
    index: list[list[int]] = []
    own_ids: list[int] = []
    own_pos: list[int] = []
    for ids, h in zip(rows, spans):
        start = len(own_ids)
        index.append((index[-1][:h] if h else []) + list(range(start, start + len(ids) - h)))
        own_ids += ids[h:]
        own_pos += range(h, len(ids))
    N = len(own_ids)
    allowed_NN = torch.zeros((N, N), dtype=torch.bool, device=device)
    for ids, h, idx in zip(rows, spans, index):
        L = len(ids)
        if L == h:
            continue  # all of it is the previous sequence's
        cols = torch.tensor(idx, device=device)
        causal = torch.arange(h, L, device=device)[:, None] >= torch.arange(L, device=device)[None, :]
        allowed_NN[cols[h:, None], cols[None, :]] = causal
    P = 0 if prefix is None else prefix.length
    if P:
        allowed_NN = torch.cat([allowed_NN.new_ones((N, P)), allowed_NN], 1)  # (N, P + N)
    mask = allowed_NN[None, None]
    if backbone.config._attn_implementation == "eager":  # eager adds the mask to the scores
        dtype = backbone.get_input_embeddings().weight.dtype
        mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, torch.finfo(dtype).min)
    ids_N = torch.tensor(own_ids, device=device)
    pos_N = torch.tensor(own_pos, device=device)
    hidden = backbone(input_ids=ids_N[None], attention_mask=mask, position_ids=(pos_N + P)[None],
                      use_cache=prefix is not None,
                      **cache_kwarg(None if prefix is None else prefix.cache_for(1))).last_hidden_state
    index_BT = torch.zeros(input_ids_BT.shape, dtype=torch.long)
    for b, idx in enumerate(index):
        index_BT[b, :len(idx)] = torch.tensor(idx)
    return hidden[0], index_BT.to(device)
