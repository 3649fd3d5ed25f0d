"""Sampling with a transformers causal LM: left-padded batches and a KV cache.

Our own decode loop rather than `generate`, so that each step yields the sampled token's
log-probability without keeping every step's full-vocabulary logits, and so that a
per-row stop set, temperature and top-p are applied exactly as documented in `Completion`.

With `prefix_cache=True` (the training engine) the engine keeps the keys and values of the
last head its prompts shared, and the next call reuses its longest common part:

    call 1   [system, tools, demonstrations][row 4, turn 2 ........]   head computed, kept
    call 2   [system, tools, demonstrations][row 1, turn 3 ....]       kept head cut to the
                                                                       common part, reused
An agent's turns reach the engine a few at a time, often one prompt alone, and each starts
with the same ~1,000-token task prompt; without the kept head every call ran it again.
The kept keys and values belong to the weights they were computed with: `sync_weights`
(which the trainer calls after every update) drops them.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from agentrft.engines.base import Completion, Engine, SamplingParams
from agentrft.engines.shared_head import SharedHeadLayer, attending_with
from agentrft.models.kv_cache import cache_kwarg, cache_of
from agentrft.malloc import release_free_memory
from agentrft.engines.constrained import Guide, advance, guides_for, mask_logits


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None,
                guides: list[Guide | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, V) -> (token ids (B,), their log-probs (B,)) under logits / temperature.

    `guides` (one per row, from `params.constraint`): each row's grammar masks its logits
    first, and then consumes the sampled token. The recorded log-prob is then that of the
    masked distribution, the one the token was really drawn from: the trainer's importance
    ratio (policy / behaviour) needs the behaviour policy's probability, and the unmasked one
    would call a forced token (probability 1 here) an on-policy sample of probability p."""
    logits = logits.float()
    if guides is not None:
        logits = mask_logits(logits, guides)
        tokens, logp = sample_next(logits, params, generator)
        advance(guides, tokens.tolist())
        return tokens, logp
    if params.temperature <= 0:
        tokens = logits.argmax(-1)
        logp = torch.log_softmax(logits, -1)
        return tokens, logp.gather(-1, tokens[:, None])[:, 0]
    logp = torch.log_softmax(logits / params.temperature, -1)  # (B, V)
    probs = logp.exp()
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > params.top_p  # keep the smallest nucleus
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    tokens = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return tokens, logp.gather(-1, tokens[:, None])[:, 0]


class RoomyLayer(DynamicLayer):
    """A KV-cache layer whose keys and values are views into buffers with room to grow.

    `DynamicLayer` appends with `torch.cat`, copying the whole cache at every decode step:
    O(length) per token, which on CPU at batch 72 × 1,100 tokens was a fifth of decode time.
    Here a step writes its token in place; when the room runs out the buffers double."""

    @classmethod
    def taking_over(cls, layer: DynamicLayer, room: int,
                    rows: torch.Tensor | None = None) -> "RoomyLayer":
        """The layer's states (or those of batch `rows`, fanning a prefill out) with `room`."""
        new = cls()
        new.lazy_initialization(layer.keys, layer.values)
        n = layer.keys.shape[-2]
        new._kbuf = _with_room(layer.keys, n + room, rows)
        new._vbuf = _with_room(layer.values, n + room, rows)
        new._set_length(n)
        return new

    def _set_length(self, n: int) -> None:
        self._length = n
        self.keys, self.values = self._kbuf[..., :n, :], self._vbuf[..., :n, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n, add = self._length, key_states.shape[-2]
        if n + add > self._kbuf.shape[-2]:
            self._kbuf = _with_room(self.keys, 2 * (n + add))
            self._vbuf = _with_room(self.values, 2 * (n + add))
        self._kbuf[..., n:n + add, :] = key_states
        self._vbuf[..., n:n + add, :] = value_states
        self._set_length(n + add)
        return self.keys, self.values


def _with_room(t: torch.Tensor, capacity: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    batch = t.shape[0] if rows is None else len(rows)
    buf = t.new_empty((batch, *t.shape[1:-2], capacity, t.shape[-1]))
    buf[..., :t.shape[-2], :] = t if rows is None else t[rows]
    return buf


class HeadAndRowsLayer(SharedHeadLayer, RoomyLayer):
    """A batch's cache layer: one copy of the shared head beside each row's own states, which
    grow in place (engines/shared_head.py draws it)."""

    @classmethod
    def over(cls, head_keys: torch.Tensor, head_values: torch.Tensor, rows: int,
             room: int) -> "HeadAndRowsLayer":
        """The head (batch 1) and `rows` empty rows with `room` positions each."""
        new = cls()
        new.lazy_initialization(head_keys, head_values)
        shape = (rows, *head_keys.shape[1:-2], room, head_keys.shape[-1])
        new._kbuf, new._vbuf = head_keys.new_empty(shape), head_values.new_empty(shape)
        new._set_length(0)
        new.head_keys, new.head_values = head_keys, head_values
        return new

    @classmethod
    def taking_over(cls, layer, room: int, rows: torch.Tensor | None = None) -> "HeadAndRowsLayer":
        new = super().taking_over(layer, room, rows)
        if isinstance(layer, SharedHeadLayer):
            new.head_keys, new.head_values = layer.head_keys, layer.head_values
        return new


# Below this many shared tokens a separate prefix pass costs more than it saves.
MIN_SHARED_PREFIX = 16

# Tokens of the rows decoded together, counting only what each row holds: its prompt past
# the head all the call's prompts share (held once, engines/shared_head.py) and its new
# tokens. Each such token costs 46 KB of cache in fp32 for SmolLM2-135M, so this caps a
# batch's own cache at ~0.75 GB there and its prefill activations with it. When every row held
# a copy of the ~1,000-token head, 60 FinQA-lite rollouts held 5.5 GB and the demo's first
# eval batch peaked at 4.7 GB of RSS (at 32,768).
MAX_BATCH_TOKENS = 16_384


def token_batches(costs: list[int], max_rows: int, max_tokens: int) -> list[slice]:
    """Consecutive runs of rows, each at most `max_rows` rows and `max_tokens` summed cost (a
    row costing more than that is alone). Rows stay in order, so a group's rollouts, which
    share their prompt and are adjacent, stay together where they fit."""
    out: list[slice] = []
    start, total = 0, 0
    for i, cost in enumerate(costs):
        if i > start and (i - start >= max_rows or total + cost > max_tokens):
            out.append(slice(start, i))
            start, total = i, 0
        total += cost
    if costs:
        out.append(slice(start, len(costs)))
    return out


def common_prefix_len(prompts: list[list[int]]) -> int:
    first = prompts[0]
    n = min(len(p) for p in prompts)
    for p in prompts[1:]:
        n = next((i for i in range(n) if p[i] != first[i]), n)
    return n


class KeptHead:
    """The keys and values (batch 1) of a token head, per layer, kept between calls."""

    def __init__(self, tokens: list[int], cache) -> None:
        self.tokens = tokens
        self.layers = [(layer.keys, layer.values) for layer in cache.layers]

    def cache(self, n: int) -> DynamicCache:
        """A fresh cache holding the first `n` tokens (views: the kept tensors never change)."""
        return DynamicCache(ddp_cache_data=[(k[..., :n, :], v[..., :n, :]) for k, v in self.layers])


class TransformersEngine(Engine):
    def __init__(self, model, *, pad_token_id: int, device: str | torch.device = "cpu",
                 max_batch_size: int = 64, max_batch_tokens: int = MAX_BATCH_TOKENS, seed: int = 0,
                 prefix_cache: bool = False):
        self.model = model
        self.prefix_cache = prefix_cache
        self._kept: KeptHead | None = None
        self.prefill_tokens_run = 0  # counters: prompt positions run through the model (pads
        self.prefill_tokens_reused = 0  # included), and those taken from the kept head
        self.pad_token_id = pad_token_id
        self.device = torch.device(device)
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        if self.device.type == "cuda":
            # With a padding mask, cuDNN's attention re-plans on every call: on an H100 it cost
            # ~2.3 ms of CPU per layer per decode step (97 ms/step at batch 16; 32 ms without it).
            torch.backends.cuda.enable_cudnn_sdp(False)

    def sync_weights(self, model) -> None:
        self._kept = None  # computed with the old weights

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        out: list[Completion] = []
        try:
            # what a row holds: its tokens past the head the batch holds once
            shared = self._shared_len(prompts) if prompts else 0
            for rows in token_batches([len(p) - shared + params.max_new_tokens for p in prompts],
                                      self.max_batch_size, self.max_batch_tokens):
                out.extend(self._generate_batch(prompts[rows], params))
        finally:
            release_free_memory()  # the batch's cache and activations, back to the OS
        return out

    def _left_pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        B, L = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((B, L), self.pad_token_id, dtype=torch.long)
        attn = torch.zeros((B, L), dtype=torch.long)
        for b, p in enumerate(prompts):  # left padding: every row's next token is at L
            ids[b, L - len(p):] = torch.tensor(p)
            attn[b, L - len(p):] = 1
        return ids.to(self.device), attn.to(self.device)

    def _prefill(self, prompts: list[list[int]]):
        """Run the prompts through the model: (KV cache, last logits (U, V), attention mask,
        position ids). When they share a long prefix (system prompt, tool list and
        demonstrations are the same for every row of a task), that prefix is run once and
        held once (a `HeadAndRowsLayer` cache: engines/shared_head.py); each row's own suffix
        is then left-padded *after* it: [prefix][pad…][suffix]. The mask hides the pads and
        the position ids skip them, so each row sees exactly its own unpadded sequence."""
        shared = self._shared_len(prompts)
        if not shared:
            ids, attn = self._left_pad(prompts)
            self.prefill_tokens_run += ids.numel()
            positions = (attn.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=ids, attention_mask=attn, position_ids=positions,
                             use_cache=True, logits_to_keep=1)
            return cache_of(out), out.logits[:, -1], attn, positions
        head = self._head_cache(prompts[0][:shared])
        ids, tail_attn = self._left_pad([p[shared:] for p in prompts])
        self.prefill_tokens_run += ids.numel()
        cache = Cache(layers=[HeadAndRowsLayer.over(layer.keys, layer.values, len(prompts), ids.shape[1])
                              for layer in head.layers])
        attn = torch.cat([torch.ones((len(prompts), shared), dtype=tail_attn.dtype,
                                     device=self.device), tail_attn], 1)
        positions = shared + (tail_attn.cumsum(-1) - 1).clamp(min=0)
        with attending_with(self.model, cache):
            out = self.model(input_ids=ids, attention_mask=attn, position_ids=positions,
                             use_cache=True, logits_to_keep=1, **cache_kwarg(cache))
        return cache_of(out), out.logits[:, -1], attn, positions

    def _shared_len(self, prompts: list[list[int]]) -> int:
        """How many leading tokens the prompts share and the engine runs (and holds) once; 0
        when too few to pay for a separate pass. Each prompt keeps at least one token of its
        own, whose logits start the decode."""
        shared = min(common_prefix_len(prompts), min(len(p) for p in prompts) - 1)
        if shared < MIN_SHARED_PREFIX or (len(prompts) < 2 and not self.prefix_cache):
            return 0
        return shared

    def _head_cache(self, head: list[int]):
        """The KV cache (batch 1) of `head`: run through the model, or with `prefix_cache` the
        kept head's longest common part reused and only the rest run; `head` is kept then."""
        reuse = 0
        if self._kept is not None:
            reuse = common_prefix_len([self._kept.tokens, head])
            reuse = reuse if reuse >= MIN_SHARED_PREFIX else 0
        cache = self._kept.cache(reuse) if reuse else None
        if reuse < len(head):
            ids = torch.tensor([head[reuse:]], device=self.device)
            positions = torch.arange(reuse, len(head), device=self.device)[None]
            out = self.model(input_ids=ids, position_ids=positions, use_cache=True,
                             logits_to_keep=1, **(cache_kwarg(cache) if cache is not None else {}))
            cache = cache_of(out)
        self.prefill_tokens_reused += reuse
        self.prefill_tokens_run += len(head) - reuse
        if self.prefix_cache:
            self._kept = KeptHead(head, cache)
        return cache

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        B = len(prompts)
        # The G rollouts of a row start from the same prompt: prefill each distinct prompt once
        # and fan its KV cache out to the rows that share it.
        unique: dict[tuple[int, ...], int] = {}
        row_to_unique = [unique.setdefault(tuple(p), len(unique)) for p in prompts]

        was_training = self.model.training
        self.model.eval()
        try:
            cache, logits, attn, positions = self._prefill([list(p) for p in unique])
            fan = None
            if len(unique) < B:
                fan = torch.tensor(row_to_unique, device=self.device)
                logits, attn, positions = logits[fan], attn[fan], positions[fan]
            for i, layer in enumerate(cache.layers):  # one layer at a time: one extra copy at most
                grows = type(layer) if isinstance(layer, RoomyLayer) else RoomyLayer
                cache.layers[i] = grows.taking_over(layer, params.max_new_tokens, rows=fan)
            next_pos = positions[:, -1:] + 1
            guides = guides_for(params, B)
            shares_head = isinstance(cache.layers[0], SharedHeadLayer)
            with attending_with(self.model, cache) if shares_head else nullcontext():
                tokens_T, logps_T = self._decode(cache, logits, attn, next_pos, params, guides)
        finally:
            self.model.train(was_training)

        tokens = torch.stack(tokens_T, 1).tolist()  # (B, T)
        logps = torch.stack(logps_T, 1).tolist()
        stop_set = set(params.stop_token_ids)
        completions = []
        for b in range(B):
            row, n = tokens[b], len(tokens[b])
            end = next((t + 1 for t, x in enumerate(row) if x in stop_set), None)
            completions.append(Completion(
                token_ids=row[:end or n], logprobs=logps[b][:end or n],
                finish_reason="stop" if end else "length"))
        return completions

    def _decode(self, cache, logits, attn, next_pos, params: SamplingParams, guides
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sample a token for every row, feed it back, until every row stopped or wrote
        `max_new_tokens`: per step the tokens (B,) and their log-probs (B,)."""
        B = logits.shape[0]
        stop = torch.tensor(params.stop_token_ids or [-1], device=self.device)
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        tokens_T, logps_T = [], []
        for _ in range(params.max_new_tokens):
            tok, logp = sample_next(logits, params, self.generator, guides)
            tok = torch.where(done, torch.full_like(tok, self.pad_token_id), tok)
            tokens_T.append(tok)
            logps_T.append(logp)
            done |= torch.isin(tok, stop)
            if bool(done.all()):
                break
            attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=self.device)], 1)
            out = self.model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos,
                             use_cache=True, logits_to_keep=1, **cache_kwarg(cache))
            cache, logits = cache_of(out), out.logits[:, -1]
            next_pos = next_pos + 1
        return tokens_T, logps_T
