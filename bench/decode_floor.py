"""Where a CPU decode step's time goes, against what the machine can do.

At small batch a decode step multiplies a few activation rows by every weight matrix once.
This prints the machine's memory read rate, the output head's matmul (fp32, bf16 weights, and
in 16 column chunks), one bare model step (batch 8, a 31-token cache) with the rate at which it
gets through the weights, and one step of our engine (`TransformersEngine`, 8 rows × 32 new
tokens, prefill included), then the bare step's profile by operator.

    .venv/bin/python bench/decode_floor.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentrft.engines.base import SamplingParams  # noqa: E402
from agentrft.engines.transformers_engine import TransformersEngine  # noqa: E402
from agentrft.models.loading import load_model  # noqa: E402

BATCH, CACHE, NEW = 8, 31, 32


def ms(fn, n: int = 20) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    model = load_model("bundled:smollm2-135m-instruct").eval()
    weight_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    print(f"# {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{weight_mb:.0f} MiB of weights")

    big = torch.randn(128 * 2**20)  # 512 MiB, far past the caches
    read_gib_s = 0.5 / (ms(lambda: big.sum(), 5) / 1000)
    print(f"memory read (sum of 512 MiB): {read_gib_s:.1f} GiB/s")

    x, head = torch.randn(BATCH, model.config.hidden_size), model.lm_head.weight
    print(f"output head [{BATCH}, {head.shape[1]}] x [{head.shape[1]}, {head.shape[0]}] fp32: "
          f"{ms(lambda: torch.nn.functional.linear(x, head)):.1f} ms; bf16 weights: "
          f"{ms(lambda: torch.nn.functional.linear(x.bfloat16(), head.bfloat16())):.1f} ms; "
          f"16 chunks: {ms(lambda: [torch.nn.functional.linear(x, h) for h in head.chunk(16)]):.1f} ms")

    with torch.no_grad():
        out = model(input_ids=torch.ones(BATCH, CACHE, dtype=torch.long), use_cache=True)
        cache, one = out.past_key_values, torch.ones(BATCH, 1, dtype=torch.long)

        def bare_step() -> None:
            model(input_ids=one, past_key_values=cache, use_cache=True, logits_to_keep=1)
            for layer in cache.layers:  # back to CACHE tokens, so every step is the same
                layer.keys, layer.values = layer.keys[..., :CACHE, :], layer.values[..., :CACHE, :]

        bare = ms(bare_step)
        print(f"bare model step, batch {BATCH}: {bare:.0f} ms: the weights at "
              f"{weight_mb / 1024 / (bare / 1000):.1f} GiB/s (reading them once at the memory's "
              f"rate: {weight_mb / 1024 / read_gib_s * 1000:.0f} ms)")

        engine = TransformersEngine(model, pad_token_id=0)
        prompts = [[1] + list(range(100, 100 + CACHE - 1))] * BATCH
        params = SamplingParams(temperature=1.0, max_new_tokens=NEW, stop_token_ids=[])
        engine.generate(prompts, params)
        t0 = time.perf_counter()
        engine.generate(prompts, params)
        step = (time.perf_counter() - t0) / NEW * 1000
        print(f"engine step ({BATCH} x {NEW} tokens, prefill included): {step:.0f} ms "
              f"({step / bare:.2f}x the bare step)")

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                bare_step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
