"""The engine's shared head held once (engines/shared_head.py) against a copy in every row.

Baseline, measured in the same run: `CopiedHead`, the engine as it was before, defined here:
the shared head is prefilled once, then its keys and values are copied into every row of the
batch, and batches are sized by each row's whole length (prompt + new tokens, 16,384 a batch).
Ours holds the head once and sizes batches by what follows it.

Workload: FinQA-lite's real first turns (the bundled model's chat template, a ~1,000-token
head), `--rows` × `--group` rollouts as in the demo's eval (20 × 3), `--turns` turns of
`--new` tokens each with a short tool result between them (bench/cpu_rollout.py's). Sampling
at temperature 1 with no stop token, so both write the same number of tokens.

Each variant runs in a fresh process (peak RSS is per process), one after the other:

    .venv/bin/python bench/shared_head.py                     # 20 rows × 3, 2 turns of 48
    .venv/bin/python bench/shared_head.py --rows 6 --group 4  # a training step's rollouts

Prints wall seconds, generated tokens/s and peak RSS (VmHWM) for each, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from agentrft.engines.base import SamplingParams  # noqa: E402
from agentrft.engines.transformers_engine import MIN_SHARED_PREFIX, TransformersEngine, \
    common_prefix_len, token_batches  # noqa: E402
from agentrft.malloc import release_free_memory  # noqa: E402
from agentrft.models.kv_cache import cache_kwarg, cache_of  # noqa: E402


class CopiedHead(TransformersEngine):
    """The baseline: the head's cache copied into every row, batches sized by whole rows."""

    def generate(self, prompts, params):
        out = []
        try:
            for rows in token_batches([len(p) + params.max_new_tokens for p in prompts],
                                      self.max_batch_size, self.max_batch_tokens):
                out.extend(self._generate_batch(prompts[rows], params))
        finally:
            release_free_memory()
        return out

    def _prefill(self, prompts):
        shared = min(common_prefix_len(prompts), min(len(p) for p in prompts) - 1)
        if shared < MIN_SHARED_PREFIX or (len(prompts) < 2 and not self.prefix_cache):
            return super()._prefill(prompts)
        cache = self._head_cache(prompts[0][:shared])
        cache.batch_select_indices(torch.zeros(len(prompts), dtype=torch.long, device=self.device))
        ids, tail_attn = self._left_pad([p[shared:] for p in prompts])
        attn = torch.cat([torch.ones((len(prompts), shared), dtype=tail_attn.dtype), tail_attn], 1)
        positions = shared + (tail_attn.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=positions,
                         use_cache=True, logits_to_keep=1, **cache_kwarg(cache))
        return cache_of(out), out.logits[:, -1], attn, positions


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def run_variant(variant: str, args) -> dict:
    from cpu_rollout import MODEL, finqa_prompts, next_turns

    from agentrft.models.chat import ChatRenderer
    from agentrft.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(MODEL)
    model = load_model(MODEL).eval()
    prompts = finqa_prompts(ChatRenderer(tokenizer), args.rows, args.group)
    cls = CopiedHead if variant == "copied" else TransformersEngine
    engine = cls(model, pad_token_id=tokenizer.pad_token_id, seed=0)
    engine.generate(prompts[:2], SamplingParams(temperature=1.0, max_new_tokens=2))  # warm-up
    loaded = peak_rss_mb()
    elapsed, generated = 0.0, 0
    for _ in range(args.turns):
        t0 = time.perf_counter()
        outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=args.new))
        elapsed += time.perf_counter() - t0
        generated += sum(len(o.token_ids) for o in outs)
        prompts = next_turns(tokenizer, prompts, [o.token_ids for o in outs])
    return {"variant": variant, "wall_s": elapsed, "tok_s": generated / elapsed,
            "peak_rss_mb": peak_rss_mb(), "rss_after_load_mb": loaded,
            "shared": common_prefix_len(prompts), "longest": max(len(p) for p in prompts)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--group", type=int, default=3)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--variant", choices=["copied", "shared"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:  # the child process
        print(json.dumps(run_variant(args.variant, args)))
        return
    print(f"# shared_head: {args.rows} FinQA-lite rows × {args.group}, {args.turns} turn(s) of "
          f"{args.new} new tokens; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    got = {}
    for variant in ("copied", "shared"):
        cmd = [sys.executable, __file__, "--variant", variant, "--rows", str(args.rows),
               "--group", str(args.group), "--new", str(args.new), "--turns", str(args.turns)]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        got[variant] = json.loads(line)
        r = got[variant]
        print(f"{variant:>7}: {r['wall_s']:6.1f} s  {r['tok_s']:6.1f} tok/s  peak RSS "
              f"{r['peak_rss_mb']:6.0f} MB (after load {r['rss_after_load_mb']:.0f})  "
              f"head {r['shared']} tokens, longest prompt {r['longest']}")
    c, s = got["copied"], got["shared"]
    print(f"shared / copied: {c['wall_s'] / s['wall_s']:.2f}x faster, peak RSS over the loaded "
          f"model {c['peak_rss_mb'] - c['rss_after_load_mb']:.0f} -> "
          f"{s['peak_rss_mb'] - s['rss_after_load_mb']:.0f} MB")


if __name__ == "__main__":
    main()
