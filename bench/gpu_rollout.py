"""Generation throughput on a GPU: our `StaticEngine` against transformers' `generate`.

Workload (the issue's): SmolLM2-135M in bf16, B prompts of 120 random tokens, each sampling
exactly 256 new tokens at temperature 1 (no stop token, so every engine does the same work).
Rows, all measured in the same run on the same model object:

- `generate` (baseline): transformers' loop with its dynamic KV cache;
- `generate, static cache`: `cache_implementation="static"` (transformers compiles the
  forward for it);
- `StaticEngine, eager`: our slots without CUDA graphs (`cuda_graphs=False`);
- `StaticEngine`: our slots, each decode shape replayed as a CUDA graph.

cuDNN's attention is off for all rows (as `StaticEngine` and `TransformersEngine` set it on
CUDA). Each row gets one warm-up call at the same batch size (graph capture and compilation are not
in the timed run; their one-off cost is printed separately). After the timed runs a check
recomputes the log-probabilities of some of our samples with one plain forward pass in bf16
and prints the largest and mean difference: the graphs must not change the numbers.

    # on the GPU machine (the GGUF carried in parts, see /work/.library/device/README.md):
    python bench/gpu_rollout.py                          # batch 64 and 256
    python bench/gpu_rollout.py --batch 256 --skip-static-generate
    # CPU smoke run of the code path (not a result):
    .venv/bin/python bench/gpu_rollout.py --device cpu --batch 4 --new 8 --prompt 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _gpu_common import MODEL, device_line, synchronize as sync  # noqa: E402
from agentrft.engines.base import SamplingParams  # noqa: E402
from agentrft.engines.static_engine import StaticEngine  # noqa: E402
from agentrft.models.loading import load_model, load_tokenizer  # noqa: E402

def random_prompts(batch: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    # Stay clear of the special tokens at the start of SmolLM2's vocabulary.
    return torch.randint(1000, vocab, (batch, length), generator=g).tolist()


def time_generate(model, prompts, new: int, pad: int, device, **kwargs) -> float:
    ids = torch.tensor(prompts, device=device)
    attn = torch.ones_like(ids)
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=attn, do_sample=True, temperature=1.0,
                             top_p=1.0, top_k=0, max_new_tokens=new, min_new_tokens=new,
                             pad_token_id=pad, **kwargs)
    sync(device)
    assert out.shape[1] - ids.shape[1] == new
    return time.perf_counter() - t0


def time_engine(engine: StaticEngine, prompts, new: int, device) -> tuple[float, list]:
    engine.sync_weights(engine.model)  # forget cached prefixes: every run prefills in full
    params = SamplingParams(temperature=1.0, max_new_tokens=new)
    sync(device)
    t0 = time.perf_counter()
    outs = engine.generate(prompts, params)
    sync(device)
    assert all(len(o.token_ids) == new for o in outs)
    return time.perf_counter() - t0, outs


def logprob_check(model, prompts, outs, rows: int, device) -> tuple[float, float]:
    """Largest and mean |engine − plain forward| log-prob over `rows` samples."""
    diffs = []
    for prompt, out in list(zip(prompts, outs))[:rows]:
        seq = torch.tensor([prompt + out.token_ids], device=device)
        with torch.no_grad():
            logits = model(input_ids=seq).logits[0, len(prompt) - 1:-1].float()
        ref = torch.log_softmax(logits, -1).gather(-1, seq[0, len(prompt):, None])[:, 0]
        diffs.append((ref - torch.tensor(out.logprobs, device=device)).abs())
    d = torch.cat(diffs)
    return float(d.max()), float(d.mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--prompt", type=int, default=120, help="prompt tokens")
    ap.add_argument("--new", type=int, default=256, help="new tokens per row")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip-static-generate", action="store_true",
                    help="leave out transformers' static-cache generate (it compiles for minutes)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        # Process-wide, and StaticEngine turns it off when built: off for every row from the
        # start, so the baselines are not timed under one setting at batch 64, another at 256.
        torch.backends.cuda.enable_cudnn_sdp(False)

    tokenizer = load_tokenizer(MODEL)
    model = load_model(MODEL, device=str(device), dtype=dtype).eval()
    pad = tokenizer.pad_token_id
    print(f"# gpu_rollout: {MODEL} {str(dtype).removeprefix('torch.')}; prompts of {args.prompt} "
          f"random tokens, {args.new} new tokens each, temperature 1, no stop token")
    print(f"# {device_line(device)}")
    max_len = args.prompt + args.new + 8
    results = []
    for batch in args.batch:
        prompts = random_prompts(batch, args.prompt, len(tokenizer), seed=batch)
        generated = batch * args.new
        rows = []
        time_generate(model, prompts[:batch], 4, pad, device)  # warm-up
        rows.append(("generate (baseline)", time_generate(model, prompts, args.new, pad, device)))
        if not args.skip_static_generate:
            t0 = time.perf_counter()
            time_generate(model, prompts, args.new, pad, device, cache_implementation="static")
            print(f"# batch {batch}: static-cache generate warm-up (compile) "
                  f"{time.perf_counter() - t0:.1f} s")
            rows.append(("generate, static cache",
                         time_generate(model, prompts, args.new, pad, device,
                                       cache_implementation="static")))
        for label, graphs in (("StaticEngine, eager", False), ("StaticEngine", True)):
            engine = StaticEngine(model, pad_token_id=pad, device=device, max_slots=batch,
                                  max_len=max_len, dtype=dtype, cuda_graphs=graphs)
            t0 = time.perf_counter()
            time_engine(engine, prompts, args.new, device)  # warm-up: captures every shape
            if graphs and engine.use_graphs:
                captured = sum(g is not None for g in engine._graphs.values())
                print(f"# batch {batch}: {captured} decode graphs captured, warm-up "
                      f"{time.perf_counter() - t0:.1f} s")
            wall, outs = time_engine(engine, prompts, args.new, device)
            rows.append((label, wall))
            if graphs:
                worst, mean = logprob_check(model, prompts, outs, rows=min(8, batch), device=device)
                print(f"# batch {batch}: our log-probs vs one plain bf16 forward: max |diff| "
                      f"{worst:.4f}, mean {mean:.5f}")
            del engine
            if device.type == "cuda":
                torch.cuda.empty_cache()
        base = rows[0][1]
        for label, wall in rows:
            results.append((batch, label, wall, generated / wall, base / wall))

    print(f"{'batch':>5}  {'engine':<26}{'wall s':>8}{'gen tok/s':>12}{'× baseline':>12}")
    for batch, label, wall, tps, ratio in results:
        print(f"{batch:>5}  {label:<26}{wall:>8.2f}{tps:>12,.0f}{ratio:>11.2f}x")
    if device.type == "cuda":
        print(f"# peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
