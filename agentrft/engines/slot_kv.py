"""The static engine's keys and values: fixed slots the model sees as its KV cache,
and the attention it decodes with (`agentrft.engines.static_engine`)."""

from __future__ import annotations

import torch


class SlotKV:
    """Keys and values of `slots` sequences of up to `max_len` tokens, in one tensor (layer,
    key/value, slot, head, position, dim) so that copying a slot's prefix is one operation,
    plus a scratch position (index `max_len`) for rows that have nothing to write.

    The attention modules call `update(keys, values, layer)` with the new tokens' states; what
    is written where, and what is returned to attend to, is set before each forward by
    `for_decode` or `for_prefill` (an object the model sees as its KV cache)."""

    def __init__(self, config, slots: int, max_len: int, dtype: torch.dtype, device: torch.device):
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.buf = torch.zeros((config.num_hidden_layers, 2, slots, kv_heads, max_len + 1, head_dim),
                               dtype=dtype, device=device)
        self.keys = list(self.buf[:, 0].unbind(0))  # per-layer views
        self.values = list(self.buf[:, 1].unbind(0))
        self.scratch = max_len
        self._all_rows = torch.arange(slots, device=device)
        self._rows: torch.Tensor | None = None
        self._write_pos: torch.Tensor | None = None
        self._length = 0

    def for_decode(self, write_pos_B: torch.Tensor, length: int) -> "SlotKV":
        """Slots [0, B) each write one token at write_pos_B[b] and attend to [0, length)."""
        self._rows, self._write_pos, self._length = None, write_pos_B, length
        return self

    def for_prefill(self, rows_K: torch.Tensor, write_pos_KQ: torch.Tensor, length: int) -> "SlotKV":
        """Slots rows_K write their Q new tokens at write_pos_KQ and attend to [0, length)."""
        self._rows, self._write_pos, self._length = rows_K, write_pos_KQ, length
        return self

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values, n = self.keys[layer_idx], self.values[layer_idx], self._length
        if self._rows is None:  # decode: slices, so the step's addresses never change
            b = key_states.shape[0]
            rows = self._all_rows[:b]
            keys[rows, :, self._write_pos] = key_states[:, :, 0]
            values[rows, :, self._write_pos] = value_states[:, :, 0]
            return keys[:b, :, :n], values[:b, :, :n]
        rows = self._rows[:, None]
        keys[rows, :, self._write_pos] = key_states.transpose(1, 2)
        values[rows, :, self._write_pos] = value_states.transpose(1, 2)
        return keys[self._rows, :, :n], values[self._rows, :, :n]

    def copy_prefix(self, src: int, dsts: list[int], n: int) -> None:
        """Positions [0, n) of slot `src` into each slot of `dsts`, every layer at once."""
        if not dsts or n <= 0:
            return
        idx = torch.tensor(dsts, device=self.buf.device)
        self.buf[:, :, idx, :, :n] = self.buf[:, :, src, None, :, :n]


SLOT_ATTENTION = "agentrft_slots"


def slot_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                   scaling: float | None = None, **kwargs):
    """transformers' SDPA attention, except for one query token with grouped key/value heads:
    there the query heads that share a key/value head become that head's query rows, so keys
    and values are read once. transformers repeats them per query head whenever a mask is given
    (3× the bytes for SmolLM2's 9 query / 3 key-value heads, at 256 × 2,048 cached tokens most
    of a decode step's memory traffic)."""
    B, H, Q, D = query.shape
    KV = key.shape[1]
    if Q != 1 or H == KV:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    grouped = query.reshape(B, KV, H // KV, D)  # query head g·(H/KV) + r uses key/value head g
    out = torch.nn.functional.scaled_dot_product_attention(grouped, key, value,
                                                           attn_mask=attention_mask, scale=scaling)
    return out.reshape(B, H, 1, D).transpose(1, 2), None


def register_slot_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(SLOT_ATTENTION, slot_attention)
