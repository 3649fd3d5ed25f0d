"""Constrained decoding: a grammar decides, per sequence and per step, which tokens may come next.

    Grammar text (lark, llguidance's dialect; `agentrft.models.structured` writes it)
        │ Constraint.compile(grammar, tokenizer, stop_token_ids)   checked once, 400-able error
        ▼
    Constraint  (shared by every row that samples under it; hashable by identity, so it can
        │        sit in the frozen `SamplingParams` that engines group rows by)
        │ .guide()  one per sequence
        ▼
    Guide  (where one row is in the grammar)
        │
    engine step:  logits (B, V) ── mask_logits(logits, guides) ──► -inf on every token a row's
                  guide forbids (rows without a guide untouched) ──► sample ──► advance(guides,
                  tokens): each guide consumes its row's token; once it has taken a stop token
                  it is finished and masks nothing (the engine pads that row from then on).

Engine: llguidance (see bench/grammar_engines.py for the comparison with xgrammar and
outlines-core on this CPU): a dependency-free wheel, masks in a few hundred µs per row at
vocabulary 49,152, and a lark front end in which a JSON schema is one `%json {...}` rule, so
"a final answer in this schema, or tool calls whose arguments follow their tools' schemas" is
a three-line grammar. Its view of a tokenizer takes seconds to build, so it is made once per
(tokenizer, vocabulary size, stop set) and cached.

A grammar's end is reached by a stop token: a guide's mask allows the stop tokens exactly when
the text so far is complete, so a constrained completion ends with one (or runs out of
`max_new_tokens`, `finish_reason: "length"`, incomplete).

Covers: per-row masks in `TransformersEngine`, `StaticEngine` and the serving stream.
Does not cover: engines that sample elsewhere (remote, vLLM) - they refuse a constraint.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from agentrft.errors import AgentRFTError

_BITS = 1 << torch.arange(32, dtype=torch.int32)  # bit k of a packed mask word


class GrammarError(AgentRFTError):
    """A grammar (or a JSON schema inside it) that the engine cannot compile."""


_tokenizers: dict[tuple[int, int, tuple[int, ...]], object] = {}
_tokenizers_lock = threading.Lock()


def _ll_tokenizer(tokenizer, vocab_size: int, stop_token_ids: tuple[int, ...]):
    """llguidance's view of `tokenizer`, built once per process for each stop set."""
    import llguidance.hf

    key = (id(tokenizer), vocab_size, stop_token_ids)
    with _tokenizers_lock:
        if key not in _tokenizers:
            _tokenizers[key] = (tokenizer, llguidance.hf.from_tokenizer(
                tokenizer, n_vocab=vocab_size, eos_token=list(stop_token_ids)))
        return _tokenizers[key][1]  # the tokenizer is kept alive so its id is not reused


@dataclass(frozen=True, eq=False)
class Constraint:
    """A compiled grammar for one tokenizer. `eq=False`: hashed and compared by identity."""

    grammar: str  # the lark text, kept for error messages and caching
    vocab_size: int
    stop_token_ids: tuple[int, ...]
    _ll_grammar: str = field(repr=False)
    _ll_tokenizer: object = field(repr=False)

    @classmethod
    def compile(cls, grammar: str, tokenizer, stop_token_ids, *,
                vocab_size: int | None = None) -> "Constraint":
        """Check and compile `grammar` (llguidance lark) for `tokenizer`; the grammar's end is
        written as one of `stop_token_ids`. Raises `GrammarError` naming what is wrong."""
        from llguidance import LLMatcher

        stops = tuple(sorted(set(stop_token_ids)))
        if not stops:
            raise GrammarError("a constraint needs at least one stop token to end on")
        vocab_size = vocab_size or len(tokenizer)
        ll_tok = _ll_tokenizer(tokenizer, vocab_size, stops)
        try:
            ll_grammar = LLMatcher.grammar_from_lark(grammar)
        except Exception as e:  # noqa: BLE001 - llguidance raises plain ValueErrors
            raise GrammarError(f"cannot read the grammar: {e}") from None
        probe = LLMatcher(ll_tok, ll_grammar)
        if probe.is_error():
            raise GrammarError(_first_line(probe.get_error()))
        return cls(grammar, vocab_size, stops, ll_grammar, ll_tok)

    def guide(self) -> "Guide":
        from llguidance import LLMatcher

        return Guide(LLMatcher(self._ll_tokenizer, self._ll_grammar), self.vocab_size,
                     self.stop_token_ids)


class Guide:
    """One sequence's place in its grammar."""

    def __init__(self, matcher, vocab_size: int, stop_token_ids: tuple[int, ...]):
        self.matcher = matcher
        self.words = (vocab_size + 31) // 32  # packed mask width
        self.stop_token_ids = stop_token_ids
        self.finished = False  # took a stop token: masks nothing from now on

    def fill(self, bitmask_row: torch.Tensor) -> None:
        """Write the allowed tokens into a packed int32 row of `self.words` words."""
        if self.matcher.is_stopped():
            # The grammar is complete and nothing may follow: only a stop token ends it.
            # (llguidance stops by itself there, and would then mask nothing.)
            bitmask_row.zero_()
            for t in self.stop_token_ids:
                bitmask_row[t // 32] |= int(_BITS[t % 32])
            return
        self.matcher.unsafe_compute_mask_ptr(bitmask_row.data_ptr(),
                                             bitmask_row.numel() * bitmask_row.element_size())

    def accept(self, token: int) -> None:
        if self.finished:
            return
        if token in self.stop_token_ids:
            self.finished = True
            return
        if not self.matcher.consume_token(token) or self.matcher.is_error():
            # Only reachable when the mask was not applied (a bug): say so, loudly.
            raise GrammarError(f"token {token} broke the grammar: "
                               f"{_first_line(self.matcher.get_error())}")


def mask_logits(logits: torch.Tensor, guides: list[Guide | None]) -> torch.Tensor:
    """logits (B, V) with -inf on every token a row's guide forbids (a new tensor; rows whose
    guide is None or finished keep theirs). Columns past the grammar's vocabulary (a model
    whose embedding matrix is padded) are never allowed on a guided row."""
    B, V = logits.shape
    active = [(b, g) for b, g in enumerate(guides) if g is not None and not g.finished]
    if not active:
        return logits
    words = max(g.words for _, g in active)
    bitmask = torch.zeros((len(active), max(words, (V + 31) // 32)), dtype=torch.int32)
    for k, (_, g) in enumerate(active):
        g.fill(bitmask[k, :g.words])  # words past the grammar's vocabulary stay 0: forbidden
    # Bit k of word w is token 32w + k; little-endian bytes keep that order when unpacked.
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")[:, :V]
    forbidden = torch.from_numpy(bits == 0).to(logits.device)  # (K, V)
    out = logits.clone()
    if len(active) == B:
        return out.masked_fill_(forbidden, float("-inf"))
    rows = torch.tensor([b for b, _ in active], device=logits.device)
    out[rows] = out[rows].masked_fill(forbidden, float("-inf"))
    return out


def advance(guides: list[Guide | None], tokens: list[int]) -> None:
    for g, t in zip(guides, tokens):
        if g is not None:
            g.accept(t)


def guides_for(params, n: int) -> list[Guide] | None:
    """n fresh guides when `params` carries a constraint, else None (the unconstrained path)."""
    c = getattr(params, "constraint", None)
    return None if c is None else [c.guide() for _ in range(n)]


def _first_line(text: str) -> str:
    return (text or "unknown error").strip().splitlines()[0]
