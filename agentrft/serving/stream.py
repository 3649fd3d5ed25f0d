"""Token-by-token decoding for streamed responses, and what each streamed row has sent.

The non-streamed path samples through `TransformersEngine`, which returns whole completions.
A stream needs each token as it is sampled, so this is the same loop in a generator: one
prompt, fanned out to `n` rows, a KV cache, and `sample_next` (the engine's own sampling
function, so temperature, top-p and the reported log-probs mean the same thing).
"""

from __future__ import annotations

from typing import Iterator

import torch

from agentrft.engines.base import SamplingParams
from agentrft.engines.constrained import guides_for
from agentrft.engines.transformers_engine import sample_next
from agentrft.models.kv_cache import cache_kwarg, cache_of
from agentrft.models.toolcalls import OPEN


def top_logprobs(logits: torch.Tensor, temperature: float, k: int) -> list[list[tuple[int, float]]]:
    """Per row of `logits` (rows, vocab): the k most likely (token, log-prob) pairs under
    logits / temperature, as the engine samples (raw logits when greedy)."""
    scaled = logits.float() / temperature if temperature > 0 else logits.float()
    values, indices = torch.log_softmax(scaled, -1).topk(k, -1)
    return [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]


@torch.no_grad()
def stream_tokens(model, prompt: list[int], n: int, params: SamplingParams, *,
                  generator: torch.Generator | None, pad_token_id: int, top_k: int = 0
                  ) -> Iterator[tuple[list[int], list[float], list[list[tuple[int, float]]]]]:
    """Yield per step: the n sampled tokens, their log-probs and the top-k (token, log-prob)
    pairs per row. A row ends at its first stop token; later steps give it padding, which
    the caller ignores. Ends when every row has stopped or after max_new_tokens steps."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    was_training = model.training
    model.eval()
    try:
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache, logits = cache_of(out), out.logits[:, -1]
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.expand(n, -1)
        stop = torch.tensor(params.stop_token_ids or [-1], device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        position = len(prompt)
        guides = guides_for(params, n)
        for _ in range(params.max_new_tokens):
            tok, logp = sample_next(logits, params, generator, guides)
            tok = torch.where(done, torch.full_like(tok, pad_token_id), tok)
            top = top_logprobs(logits, params.temperature, top_k) if top_k else [[] for _ in range(n)]
            done |= torch.isin(tok, stop)
            yield tok.tolist(), logp.tolist(), top
            if bool(done.all()):
                return
            pos = torch.full((n, 1), position, device=device)
            out = model(input_ids=tok[:, None], position_ids=pos, use_cache=True,
                        logits_to_keep=1, **cache_kwarg(cache))
            cache, logits = cache_of(out), out.logits[:, -1]
            position += 1
    finally:
        model.train(was_training)


class StreamedRows:
    """The n rows of one streamed request so far: token ids, text sent, which rows stopped."""

    def __init__(self, n: int):
        self.n = n
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.sent = [""] * n
        self.stopped = [False] * n

    @property
    def generated(self) -> int:
        return sum(len(x) for x in self.ids)


def visible(text: str, tools: bool) -> str:
    """What of a row's text may be streamed now: never half a UTF-8 character, and with tools
    on, nothing from `<tool_call>` on nor a tail that might be its start."""
    text = text.rstrip("\ufffd")
    if tools:
        at = text.find(OPEN)
        if at >= 0:
            return text[:at]
        for cut in range(min(len(OPEN) - 1, len(text)), 0, -1):
            if OPEN.startswith(text[-cut:]):
                return text[:-cut]
    return text


def unsent(text: str, sent: str) -> str:
    """What of `text` follows what was already streamed (nothing if the text took it back)."""
    return text[len(sent):] if text.startswith(sent) else ""
