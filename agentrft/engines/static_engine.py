"""Rollout sampling from a static KV cache of slots: continuous batching, prefix reuse, CUDA graphs.

`TransformersEngine` runs one batch from prefill to the last row's stop token, and its cache
grows as it goes. For agent rollouts on a GPU that leaves most of the chip idle: a batch waits
for its longest turn while finished rollouts sit in tool calls, and each decode step is ~30
small kernels per layer launched from Python. Here instead:

- **Slots.** Keys and values live in fixed buffers, one row ("slot") per sequence and room for
  `max_len` tokens. A request takes a free slot, is prefilled, and decodes one token per
  step alongside whatever else is running; when it finishes its slot is free at once, and a
  request that arrived meanwhile is admitted at the next step (`submit` / `step`;
  `BatchingSampler` drives this from many concurrent rollouts).
- **Prefix reuse.** A free slot keeps its keys and values. A rollout's next turn starts with
  everything its last turn saw and wrote, so it takes that slot back and prefills only the
  tool's output. Within one admission, identical prompts (a group's rollouts) are prefilled
  once and copied, and a head that every new prompt shares (system prompt, tools) once.
- **Static shapes.** A decode step over slots [0, b) attends to positions [0, L); rows not
  decoding write to a scratch position. With CUDA graphs (b, L) is rounded up to a few
  buckets: every step of a bucket has the same shapes and addresses, so it is captured once
  as a CUDA graph and replayed, one launch per step instead of hundreds. Without graphs (CPU)
  the exact sizes run.
- **Own weights.** The engine samples from its own plain copy of the policy (LoRA folded in,
  bf16 on CUDA), refreshed in place by `sync_weights` after each update, which also forgets
  every cached prefix (its keys were computed with the old weights).

The numbers are those of the plain path: each token's log-probability is log_softmax(logits /
temperature) of the engine's own forward (masked by a request's grammar, if any: each request
carries its own `Guide`), and `sample_next` is shared with `TransformersEngine`.
The model must be built like transformers' Llama family (`model.embed_tokens`, `.rotary_emb`,
`.layers`, `.norm`, full attention: Llama, SmolLM, Qwen2/3, Mistral without a sliding window).
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass, field

import torch

from agentrft.engines.base import Completion, ContinuousEngine, SamplingParams
from agentrft.engines.constrained import Guide
from agentrft.engines.slot_kv import SLOT_ATTENTION, SlotKV, register_slot_attention
from agentrft.engines.transformers_engine import common_prefix_len, sample_next
from agentrft.engines.weights import load_weights_into, plain_copy
from agentrft.models.kv_cache import cache_kwarg

# A cached or shared prefix shorter than this is recomputed rather than copied.
MIN_REUSE = 16
# Decode shapes are rounded up to these (then multiples of the last) so few graphs are needed.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
LENGTH_BUCKETS = (128, 256, 512, 1024, 2048)


def bucket(n: int, sizes: tuple[int, ...], cap: int) -> int:
    """The smallest size >= n (beyond the table: a multiple of its last entry), at most cap."""
    for s in sizes:
        if s >= n:
            return min(s, cap)
    step = sizes[-1]
    return min(-(-n // step) * step, cap)


def reusable_len(cached: list[int], prompt: list[int]) -> int:
    """How many leading tokens of `prompt` a slot holding `cached` already has, leaving at
    least the prompt's last token to run (its logits start the completion)."""
    hi = min(len(cached), len(prompt) - 1)
    if hi <= 0 or cached[0] != prompt[0]:
        return 0
    if cached[:hi] == prompt[:hi]:
        return hi
    lo = 1  # cached[:lo] == prompt[:lo]; binary search on slice equality (C speed)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cached[:mid] == prompt[:mid] else (lo, mid)
    return lo


def _by_params(params: list[SamplingParams]) -> list[tuple[SamplingParams, list[int]]]:
    """Indices grouped by sampling parameters. Usually every row shares one object, checked
    by identity: hashing a frozen dataclass per row per step is a measurable share of a step."""
    first = params[0]
    if all(p is first for p in params):
        return [(first, list(range(len(params))))]
    groups: dict[SamplingParams, list[int]] = {}
    for k, p in enumerate(params):
        groups.setdefault(p, []).append(k)
    return list(groups.items())


@dataclass
class _Request:
    rid: int
    prompt: list[int]
    params: SamplingParams
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    guide: Guide | None = None  # its grammar's state when params.constraint is set


@dataclass
class _Slot:
    cached: list[int] = field(default_factory=list)  # tokens whose keys/values are at [0, len)
    request: _Request | None = None
    pos: int = 0  # where the next fed token's keys/values go (= how many are valid)
    next_token: int = 0  # the last sampled token, fed at the next decode step


class StaticEngine(ContinuousEngine):
    def __init__(self, model, *, pad_token_id: int, device: str | torch.device = "cpu",
                 max_slots: int = 64, max_len: int = 2048, seed: int = 0,
                 dtype: torch.dtype | None = None, cuda_graphs: bool = True,
                 prefill_tokens: int = 16384):
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.model = plain_copy(model, device=self.device, dtype=self.dtype)
        backbone = self.model.model
        self._embed, self._rotary = backbone.embed_tokens, backbone.rotary_emb
        self._layers, self._norm = backbone.layers, backbone.norm
        self._head = self.model.get_output_embeddings()
        if getattr(self.model.config, "_attn_implementation", None) == "sdpa":
            register_slot_attention()
            self.model.config._attn_implementation = SLOT_ATTENTION
        if getattr(self.model.config, "sliding_window", None) and getattr(
                self.model.config, "use_sliding_window", True):
            warnings.warn("StaticEngine attends to the whole sequence; this model's sliding window "
                          "is ignored", stacklevel=2)
        self.pad_token_id, self.max_slots, self.max_len = pad_token_id, max_slots, max_len
        self.prefill_tokens = prefill_tokens
        self.kv = SlotKV(self.model.config, max_slots, max_len, self.dtype, self.device)
        self.slots = [_Slot() for _ in range(max_slots)]
        self.waiting: deque[_Request] = deque()
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._next_rid = 0
        self._neg = torch.finfo(self.dtype).min
        self._positions = torch.arange(max_len + 1, device=self.device)
        # Decode inputs live in fixed tensors so a captured graph reads them where it was recorded.
        self._tok = torch.full((max_slots, 1), pad_token_id, dtype=torch.long, device=self.device)
        self._pos = torch.full((max_slots,), max_len, dtype=torch.long, device=self.device)
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor] | None] = {}
        self._graph_pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        if self.device.type == "cuda":
            torch.backends.cuda.enable_cudnn_sdp(False)  # see TransformersEngine
        # For benches and tests: prompt tokens run, requests admitted while others were
        # decoding, times running rows were moved down.
        self.prefilled_tokens = self.joined_running = self.compactions = 0

    # --- Engine ------------------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        rids = [self.submit(p, params) for p in prompts]
        done: dict[int, Completion] = {}
        while len(done) < len(rids):
            done.update(self.step())
        return [done[r] for r in rids]

    def sync_weights(self, model) -> None:
        load_weights_into(self.model, model)
        for slot in self.slots:  # keys and values of the old weights
            slot.cached = []

    # --- continuous batching -----------------------------------------------------------------

    def submit(self, prompt: list[int], params: SamplingParams) -> int:
        """Queue one request; its completion comes out of a later `step()` under the returned id."""
        if not prompt:
            raise ValueError("cannot sample from an empty prompt")
        if len(prompt) >= self.max_len:
            raise ValueError(f"prompt of {len(prompt)} tokens does not fit the engine's "
                             f"max_len of {self.max_len}")
        self._next_rid += 1
        guide = params.constraint.guide() if params.constraint is not None else None
        self.waiting.append(_Request(self._next_rid, list(prompt), params, guide=guide))
        return self._next_rid

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or any(s.request for s in self.slots)

    def reset(self) -> None:
        """Drop every queued and running request (after an error mid-step)."""
        self.waiting.clear()
        for slot in self.slots:
            if slot.request is not None:
                slot.request, slot.cached = None, []

    @torch.no_grad()
    def step(self, max_decode_steps: int = 8) -> list[tuple[int, Completion]]:
        """Admit waiting requests into free slots, then decode until one finishes (or for
        `max_decode_steps`): the (id, completion) pairs that finished."""
        finished = self._admit()
        for _ in range(max_decode_steps):
            if finished or not any(s.request for s in self.slots):
                break
            finished += self._decode_once()
        return finished

    # --- admission and prefill ---------------------------------------------------------------

    def _admit(self) -> list[tuple[int, Completion]]:
        free = [i for i, s in enumerate(self.slots) if s.request is None]
        running = len(self.slots) - len(free)
        admitted: list[tuple[int, int]] = []  # (slot, tokens already there)
        while self.waiting and free:
            req = self.waiting.popleft()
            j, reuse = self._pick_slot(free, req.prompt)
            slot = free.pop(j)
            self.slots[slot].request = req
            admitted.append((slot, reuse if reuse >= MIN_REUSE else 0))
        if not admitted:
            return []
        if running:
            self.joined_running += len(admitted)
        logits = self._prefill_admitted(admitted)
        finished = []
        for params, ks in _by_params([self.slots[slot].request.params for slot, _ in admitted]):
            slots = [admitted[k][0] for k in ks]
            for k, t, lp in zip(ks, *self._sample(logits, ks, params, slots)):
                slot = admitted[k][0]
                self.slots[slot].pos = len(self.slots[slot].request.prompt)
                finished += self._take(slot, t, lp)
        return finished

    def _pick_slot(self, free: list[int], prompt: list[int]) -> tuple[int, int]:
        """(index into `free`, tokens it already holds) for a new request. A next turn extends
        what its last turn left in a slot exactly: the longest such slot wins, found with a
        cheap test per slot (last cached token, then the whole prefix). Otherwise the lowest free
        slot, reusing whatever prefix it shares (usually the task's system prompt and tools)."""
        best, best_len = -1, 0
        for j, i in enumerate(free):
            cached = self.slots[i].cached
            n = len(cached)
            if best_len < n < len(prompt) and cached[-1] == prompt[n - 1] and cached == prompt[:n]:
                best, best_len = j, n
        if best >= 0 and best_len >= MIN_REUSE:
            return best, best_len
        return 0, reusable_len(self.slots[free[0]].cached, prompt)

    def _prefill_admitted(self, admitted: list[tuple[int, int]]) -> torch.Tensor:
        """Fill each admitted slot's keys and values for its prompt: (K, V) last-token logits."""
        # Identical prompts (a group's rollouts) run once, in their first slot.
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, (slot, _) in enumerate(admitted):
            groups.setdefault(tuple(self.slots[slot].request.prompt), []).append(k)
        firsts = [ks[0] for ks in groups.values()]
        starts = {k: admitted[k][1] for k in firsts}
        prompts = {k: self.slots[admitted[k][0]].request.prompt for k in firsts}

        # A head all new prompts share (beyond what their slots hold) runs once, then is copied.
        todo = [k for k in firsts if starts[k] < len(prompts[k]) - 1]
        if len(todo) > 1:
            head = min(common_prefix_len([prompts[k] for k in todo]),
                       min(len(prompts[k]) for k in todo) - 1)
            needing = [k for k in todo if starts[k] < head]
            if head >= MIN_REUSE and len(needing) > 1:
                donor = min(needing, key=lambda k: starts[k])
                d_slot = admitted[donor][0]
                self._prefill([(d_slot, prompts[donor][starts[donor]:head], starts[donor])])
                self.kv.copy_prefix(d_slot, [admitted[k][0] for k in needing if k != donor], head)
                for k in needing:
                    starts[k] = head

        # Each distinct prompt's remainder, in chunks of at most `prefill_tokens` padded tokens.
        jobs = sorted(firsts, key=lambda k: len(prompts[k]) - starts[k])
        last_logits: dict[int, torch.Tensor] = {}
        chunk: list[int] = []
        for k in jobs + [None]:
            width = 0 if k is None else len(prompts[k]) - starts[k]
            if chunk and (k is None or (len(chunk) + 1) * width > self.prefill_tokens):
                out = self._prefill([(admitted[c][0], prompts[c][starts[c]:], starts[c]) for c in chunk])
                last_logits.update(zip(chunk, out))
                chunk = []
            if k is not None:
                chunk.append(k)

        # The rest of each group copies its first's keys and values and shares its logits.
        out = torch.empty((len(admitted), self._head.out_features), device=self.device,
                          dtype=torch.float32)
        for ks in groups.values():
            self.kv.copy_prefix(admitted[ks[0]][0], [admitted[k][0] for k in ks[1:]],
                                len(prompts[ks[0]]))
            for k in ks:
                self.slots[admitted[k][0]].cached = list(prompts[ks[0]])
            out[ks] = last_logits[ks[0]].float()
        return out

    def _prefill(self, rows: list[tuple[int, list[int], int]]) -> torch.Tensor:
        """Run (slot, new tokens, position of the first) through the model, writing their keys
        and values: the logits after each row's last token, (K, V)."""
        K, Q = len(rows), max(len(toks) for _, toks, _ in rows)
        self.prefilled_tokens += sum(len(toks) for _, toks, _ in rows)
        ids = torch.full((K, Q), self.pad_token_id, dtype=torch.long)
        positions = torch.zeros((K, Q), dtype=torch.long)
        write = torch.full((K, Q), self.kv.scratch, dtype=torch.long)
        for r, (_, toks, start) in enumerate(rows):
            n = len(toks)
            ids[r, :n] = torch.tensor(toks)
            positions[r] = torch.arange(start, start + Q)
            write[r, :n] = positions[r, :n]
        ids, positions, write = ids.to(self.device), positions.to(self.device), write.to(self.device)
        length = max(start + len(toks) for _, toks, start in rows)
        visible = positions[:, :, None] >= self._positions[:length][None, None, :]  # (K, Q, L)
        mask = torch.where(visible, 0.0, self._neg).to(self.dtype)[:, None]
        rows_t = torch.tensor([slot for slot, _, _ in rows], device=self.device)
        hidden = self._forward(ids, positions, mask, self.kv.for_prefill(rows_t, write, length))
        last = torch.tensor([len(toks) - 1 for _, toks, _ in rows], device=self.device)
        return self._head(hidden[torch.arange(K, device=self.device), last])

    def _forward(self, ids_BQ, positions_BQ, mask_B1QL, kv: SlotKV) -> torch.Tensor:
        hidden = self._embed(ids_BQ)
        rope = self._rotary(hidden, positions_BQ)
        for layer in self._layers:
            hidden = layer(hidden, attention_mask=mask_B1QL, position_ids=positions_BQ,
                           use_cache=True, position_embeddings=rope, **cache_kwarg(kv))
            if isinstance(hidden, tuple):  # older transformers return (hidden, …)
                hidden = hidden[0]
        return self._norm(hidden)

    # --- decoding ----------------------------------------------------------------------------

    def _compact(self, active: list[int]) -> list[int]:
        """Move running rows from the top down into free slots when that shrinks the decode
        batch's bucket: a step spans slots [0, highest running + 1), so one straggler left
        high (a next turn takes back its old slot) would keep every step at full width."""
        fits = bucket(len(active), BATCH_BUCKETS, self.max_slots)
        if active[-1] < fits:
            return active
        free = [i for i in range(fits) if self.slots[i].request is None]
        for src in [i for i in reversed(active) if i >= fits][:len(free)]:
            dst = free.pop(0)
            a, b = self.slots[src], self.slots[dst]
            self.kv.copy_prefix(src, [dst], a.pos)
            b.request, b.pos, b.next_token, b.cached = a.request, a.pos, a.next_token, []
            a.request, a.cached = None, []
        self.compactions += 1
        return [i for i, s in enumerate(self.slots) if s.request is not None]

    def _decode_once(self) -> list[tuple[int, Completion]]:
        active = self._compact([i for i, s in enumerate(self.slots) if s.request is not None])
        b, length = active[-1] + 1, max(self.slots[i].pos for i in active) + 1
        if self.use_graphs:  # few shapes, so few graphs; eager runs the exact sizes
            b = bucket(b, BATCH_BUCKETS, self.max_slots)
            length = bucket(length, LENGTH_BUCKETS, self.max_len)
        toks = [self.pad_token_id] * b
        pos = [self.kv.scratch] * b
        for i in active:
            toks[i], pos[i] = self.slots[i].next_token, self.slots[i].pos
        self._tok[:b, 0].copy_(torch.tensor(toks))
        self._pos[:b].copy_(torch.tensor(pos))
        logits = self._run_decode(b, length)
        finished = []
        for params, ks in _by_params([self.slots[i].request.params for i in active]):
            rows = [active[k] for k in ks]
            for i, t, lp in zip(rows, *self._sample(logits, rows, params, rows)):
                self.slots[i].pos += 1  # the fed token's keys/values are now in place
                finished += self._take(i, t, lp)
        return finished

    def _sample(self, logits: torch.Tensor, rows: list[int], params: SamplingParams,
                slots: list[int]):
        """(tokens, log-probs) as lists for logits[rows], sampled for `slots`' requests (their
        grammars, if constrained): one device-to-host copy."""
        guides = None
        if params.constraint is not None:
            guides = [self.slots[i].request.guide for i in slots]
        if rows != list(range(len(logits))):  # usually every row of the bucket decodes
            logits = logits[torch.tensor(rows, device=logits.device)]
        tok, logp = sample_next(logits, params, self.generator, guides)
        # Token ids are exact in float64; one transfer instead of two.
        both = torch.stack([tok.double(), logp.double()]).tolist()
        return [int(t) for t in both[0]], both[1]

    def _decode_step(self, b: int, length: int) -> torch.Tensor:
        """One token for slots [0, b) attending to [0, length): logits (b, V). Shapes and
        addresses depend only on (b, length), so this is what a CUDA graph records."""
        pos = self._pos[:b]
        visible = self._positions[:length][None, :] <= pos[:, None]
        mask = torch.where(visible, 0.0, self._neg).to(self.dtype)[:, None, None, :]
        hidden = self._forward(self._tok[:b], pos[:, None], mask, self.kv.for_decode(pos, length))
        return self._head(hidden[:, -1])

    def _run_decode(self, b: int, length: int) -> torch.Tensor:
        if not self.use_graphs:
            return self._decode_step(b, length)
        key = (b, length)
        if key not in self._graphs:
            self._graphs[key] = self._capture(b, length)
        captured = self._graphs[key]
        if captured is None:  # capture failed once: this shape runs eagerly
            return self._decode_step(b, length)
        graph, logits = captured
        graph.replay()
        return logits

    def _capture(self, b: int, length: int):
        """Record the decode step for (b, length). Warm-up runs write the same keys/values the
        replay will (same tokens, same positions), so they change nothing."""
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._decode_step(b, length)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # thread_local: rollouts' threads may touch CUDA while the sampler thread captures
            with torch.cuda.graph(graph, pool=self._graph_pool, capture_error_mode="thread_local"):
                logits = self._decode_step(b, length)
            return graph, logits
        except Exception as e:  # noqa: BLE001 - fall back to eager for this shape, loudly
            warnings.warn(f"CUDA graph capture failed for batch {b} × length {length} "
                          f"({type(e).__name__}: {e}); running it eagerly", stacklevel=2)
            torch.cuda.synchronize()
            return None

    def _take(self, slot: int, token: int, logprob: float) -> list[tuple[int, Completion]]:
        """Record a sampled token; free the slot when the request is done."""
        s = self.slots[slot]
        req = s.request
        req.tokens.append(token)
        req.logprobs.append(logprob)
        s.next_token = token
        stopped = token in req.params.stop_token_ids
        if not stopped and len(req.tokens) < req.params.max_new_tokens and s.pos < self.max_len:
            return []
        s.cached = req.prompt + req.tokens[:-1]  # the last token was never fed
        s.request = None
        return [(req.rid, Completion(token_ids=req.tokens, logprobs=req.logprobs,
                                     finish_reason="stop" if stopped else "length"))]
