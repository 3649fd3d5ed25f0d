"""Generation throughput on a GPU: our `StaticEngine` against transformers' `generate` and vLLM.

Workload (the issue's): SmolLM2-135M in bf16, B prompts of 120 random tokens, each sampling
exactly 256 new tokens at temperature 1 (no stop token, so every engine does the same work).
Rows, all measured in the same run on the same model object:

- `generate` (baseline): transformers' loop with its dynamic KV cache;
- `generate, static cache`: `cache_implementation="static"` (transformers compiles the
  forward for it);
- `StaticEngine, eager`: our slots without CUDA graphs (`cuda_graphs=False`);
- `StaticEngine`: our slots, each decode shape replayed as a CUDA graph.
- `vLLM (RemoteEngine, HTTP)`: a vLLM server (bf16) that `VLLMProcess` starts on the same
  model after our rows, sampling the same prompts through `RemoteEngine` (HTTP included,
  `ignore_eos` so it too writes exactly the tokens asked for). Measured when a Python with
  vLLM is found (`--vllm-python`, else where `engine: {type: vllm}` looks: `.venv-vllm`, or
  this one after `pip install "agentrft[vllm]"`); otherwise the bench says "vLLM row: not
  measured" and why. Its start-up (weights, CUDA graph capture) is printed, not timed; it
  gets `--vllm-gpu-memory` of the GPU.

cuDNN's attention is off for all rows (as `StaticEngine` and `TransformersEngine` set it on
CUDA). Each row gets one warm-up call at the same batch size (graph capture and compilation are not
in the timed run; their one-off cost is printed separately; vLLM's warm-up uses other prompts, so
its prefix cache holds none of the timed ones). After the timed runs a check recomputes the
log-probabilities of some of our samples (and of vLLM's) with one plain forward pass in bf16
and prints the largest and mean difference: the graphs must not change the numbers, and
vLLM's differ by what its kernels do differently (the importance ratio sees that gap).

    # on the GPU machine (the GGUF carried in parts, see /work/.library/device/README.md):
    python bench/gpu_rollout.py                          # batch 64 and 256
    python bench/gpu_rollout.py --batch 256 --skip-static-generate
    python bench/gpu_rollout.py --no-vllm                # our rows only
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
from _vllm_common import vllm_engine, vllm_python  # noqa: E402
from agentrft.engines.base import SamplingParams  # noqa: E402
from agentrft.engines.static_engine import StaticEngine  # noqa: E402
from agentrft.errors import EngineError  # noqa: E402
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


def time_engine(engine, prompts, new: int, device) -> tuple[float, list]:
    if isinstance(engine, StaticEngine):
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


def vllm_rows(python: str, model, tokenizer, args, device, dtype, max_len: int,
              baselines: dict[int, float]) -> list[tuple]:
    """The vLLM row at every batch size, from one server started after our rows."""
    if device.type == "cuda":
        torch.cuda.empty_cache()  # our engines' memory back to the GPU for vLLM's share
    rows = []
    with vllm_engine(python, MODEL, gpu=device.type == "cuda",
                     dtype=str(dtype).removeprefix("torch."), max_len=max_len,
                     gpu_memory_utilization=args.vllm_gpu_memory if device.type == "cuda" else None
                     ) as engine:
        for batch in args.batch:
            prompts = random_prompts(batch, args.prompt, len(tokenizer), seed=batch)
            warm = random_prompts(batch, args.prompt, len(tokenizer), seed=batch + 10_000)
            time_engine(engine, warm, 4, device)  # warm-up on prompts it will not see again
            wall, outs = time_engine(engine, prompts, args.new, device)
            worst, mean = logprob_check(model, prompts, outs, rows=min(8, batch), device=device)
            print(f"# batch {batch}: vLLM's log-probs vs one plain {str(dtype).removeprefix('torch.')} "
                  f"forward: max |diff| {worst:.4f}, mean {mean:.5f}")
            rows.append((batch, "vLLM (RemoteEngine, HTTP)", wall, batch * args.new / wall,
                         baselines[batch] / wall))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--prompt", type=int, default=120, help="prompt tokens")
    ap.add_argument("--new", type=int, default=256, help="new tokens per row")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip-static-generate", action="store_true",
                    help="leave out transformers' static-cache generate (it compiles for minutes)")
    ap.add_argument("--no-vllm", action="store_true", help="leave out the vLLM row")
    ap.add_argument("--vllm-python", default=None,
                    help="vLLM's interpreter (default: as engine: {type: vllm} finds it)")
    ap.add_argument("--vllm-gpu-memory", type=float, default=0.4,
                    help="vLLM's --gpu-memory-utilization (this process keeps its model there)")
    args = ap.parse_args(argv)
    if not 0 < args.vllm_gpu_memory <= 1:
        ap.error("--vllm-gpu-memory must be in (0, 1]")
    python = None if args.no_vllm else vllm_python(args.vllm_python)
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
    results, baselines = [], {}
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
        baselines[batch] = base = rows[0][1]
        for label, wall in rows:
            results.append((batch, label, wall, generated / wall, base / wall))

    if args.no_vllm:
        print("vLLM row: not measured (--no-vllm)")
    elif python is None:
        print('vLLM row: not measured (vllm not installed: pip install "agentrft[vllm]" here, '
              "or pass --vllm-python)")
    else:
        try:
            results += vllm_rows(python, model, tokenizer, args, device, dtype, max_len, baselines)
        except EngineError as e:  # our rows are measured: print them, say why this one is not
            print(f"vLLM row: not measured (the server failed: {e})")

    print(f"{'batch':>5}  {'engine':<26}{'wall s':>8}{'gen tok/s':>12}{'× baseline':>12}")
    for batch, label, wall, tps, ratio in sorted(results, key=lambda r: r[0]):  # by batch
        print(f"{batch:>5}  {label:<26}{wall:>8.2f}{tps:>12,.0f}{ratio:>11.2f}x")
    if device.type == "cuda":
        print(f"# peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
