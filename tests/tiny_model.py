"""A tiny randomly initialised Llama for engine tests: real transformers code, no weights on disk.

Small enough that a forward pass over a short batch takes milliseconds on one CPU core,
with a tiny vocabulary so that a random model's greedy continuations revisit tokens (which
the stop-token tests rely on). The weights are scaled up from transformers' default init
so that the next-token distribution is far from uniform: sampling, top-p and greedy then
really differ.

    model = tiny_llama(seed=0)
    engine = TransformersEngine(model, pad_token_id=PAD_ID)
"""

from __future__ import annotations

import torch

VOCAB_SIZE = 96
PAD_ID = 0  # never in a test prompt, so padding mistakes cannot hide behind a real token


def tiny_llama(*, seed: int = 0, vocab_size: int = VOCAB_SIZE, hidden_size: int = 32,
               num_layers: int = 2, num_heads: int = 2, num_kv_heads: int | None = None):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads, max_position_embeddings=256,
        pad_token_id=PAD_ID, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # peakier logits than the default 0.02-std init gives
        model.lm_head.weight.mul_(20.0)
    return model.eval()


def full_forward_logprobs(model, sequence: list[int], start: int,
                          temperature: float = 1.0) -> list[float]:
    """log p(sequence[t] | sequence[:t]) for t >= start, from one unpadded forward pass."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([sequence])).logits[0].float()  # (T, V)
    if temperature > 0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, -1)
    return [logp[t - 1, sequence[t]].item() for t in range(start, len(sequence))]


# Different lengths (left padding), and rows 0/2 and 1/4 share a prompt (prefill dedup).
ENGINE_PROMPTS = [
    [5, 6, 7, 8, 9, 10, 11],
    [12, 13],
    [5, 6, 7, 8, 9, 10, 11],
    [20, 21, 22, 23],
    [12, 13],
]


def assert_logprobs_match_full_forward(model, prompts, outs, temperature, tol=1e-4):
    """Each completion's log-probs are those of one unpadded forward over prompt + sample."""
    import pytest

    assert len(outs) == len(prompts)
    for prompt, out in zip(prompts, outs):
        assert len(out.logprobs) == len(out.token_ids) > 0
        assert all(0 <= t < VOCAB_SIZE for t in out.token_ids)
        ref = full_forward_logprobs(model, prompt + out.token_ids, len(prompt), temperature)
        assert out.logprobs == pytest.approx(ref, abs=tol)
