"""`StaticEngine` on a GPU: CUDA-graph decoding gives the numbers of the eager path.

Skipped without CUDA (CI has none); run on the lent GPU machine with
`python -m pytest -q tests/test_static_engine_cuda.py`.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from agentrft.engines.base import SamplingParams
from agentrft.engines.static_engine import StaticEngine
from tests.tiny_model import PAD_ID, tiny_llama

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

HEAD = [3 + (i * 7) % 90 for i in range(40)]


def full_forward_logprobs(model, prompt, tokens):
    seq = torch.tensor([prompt + tokens], device="cuda")
    with torch.no_grad():
        logits = model(input_ids=seq).logits[0, len(prompt) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, seq[0, len(prompt):, None])[:, 0].cpu()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_replay_matches_the_full_forward(dtype):
    model = tiny_llama(seed=0).to("cuda", dtype)
    engine = StaticEngine(model, pad_token_id=PAD_ID, device="cuda", max_slots=8, max_len=160,
                          dtype=dtype)
    prompts = [HEAD + [40 + i] * (1 + i % 4) for i in range(11)]  # more rows than slots
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed capture would fall back with a warning
        outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=30))
    assert engine.use_graphs and engine._graphs and all(engine._graphs.values())
    diffs = torch.cat([(torch.tensor(out.logprobs) - full_forward_logprobs(model, p, out.token_ids)).abs()
                       for p, out in zip(prompts, outs)])
    if dtype == torch.float32:
        assert float(diffs.max()) < 1e-3
    else:  # different kernels round differently in bf16; the CPU bf16 test's criterion
        assert float(diffs.max()) < 0.25 and float(diffs.mean()) < 0.05, diffs


def test_greedy_with_and_without_graphs_agree():
    model = tiny_llama(seed=0).to("cuda")
    prompts = [HEAD + [40 + i] for i in range(6)]
    params = SamplingParams(temperature=0, max_new_tokens=20)
    eager = StaticEngine(model, pad_token_id=PAD_ID, device="cuda", max_slots=4, max_len=96,
                         dtype=torch.float32, cuda_graphs=False).generate(prompts, params)
    graphed = StaticEngine(model, pad_token_id=PAD_ID, device="cuda", max_slots=4, max_len=96,
                           dtype=torch.float32).generate(prompts, params)
    assert [o.token_ids for o in graphed] == [o.token_ids for o in eager]
