"""What one `Policy.update` of a FinQA-lite-shaped step holds for backward, and its peak RSS.

    python bench/update_memory.py                          # no gradient checkpointing
    python bench/update_memory.py --gradient-checkpointing

The step is synthetic with the CPU demo's shapes: 6 groups × 4 sequences behind a head they
all share (`--head`, the system prompt, tools and demonstrations), a tail each group shares
(`--tail`, its question), and each rollout's own tokens (`--own`, cycled), two thirds of them
model-written. Per micro-batch it prints the bytes saved for backward (each storage counted
once, via `saved_tensors_hooks`) and the largest shapes; frozen weights appear there too,
as references, not copies. RSS is sampled every 5 ms as in bench/memory_profile.py.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # memory_profile

import torch  # noqa: E402

import agentrft.train.policy as policy_module  # noqa: E402
from agentrft.spec.job import Hyperparameters  # noqa: E402
from agentrft.train.loss import TrainSequence  # noqa: E402
from memory_profile import RssSampler, rss_bytes  # noqa: E402

GIB = 2 ** 30


def demo_shaped_step(head: int, tail: int, own: list[int], groups: int = 6, group_size: int = 4,
                     seed: int = 0) -> list[TrainSequence]:
    rng = random.Random(seed)
    tokens = lambda n: [rng.randrange(100, 40000) for _ in range(n)]  # noqa: E731
    shared = tokens(head)
    seqs = []
    for g in range(groups):
        prompt = shared + tokens(tail)
        for k in range(group_size):
            n = own[(g * group_size + k) % len(own)]
            # model-written: a call, the tool's output (not trained), an answer
            mask = [0] * len(prompt) + [0 if n // 3 <= i < 2 * n // 3 else 1 for i in range(n)]
            seqs.append(TrainSequence(prompt + tokens(n), mask, rng.choice([-1.0, 1.0])))
    return seqs


def saved_per_micro_batch(token_logprobs):
    """`token_logprobs` that prints what each call saves for backward."""
    def traced(*args, **kwargs):
        saved, seen = collections.Counter(), set()

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                saved[(tuple(t.shape), str(t.dtype).removeprefix("torch."))] += storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = token_logprobs(*args, **kwargs)
        top = ", ".join(f"{s} {d}: {b / 2**20:.0f} MB" for (s, d), b in saved.most_common(4))
        print(f"  micro-batch saves {sum(saved.values()) / 2**20:.0f} MB (rss {rss_bytes() / GIB:.2f} GiB);"
              f" largest: {top}", flush=True)
        return out
    return traced


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--head", type=int, default=950)
    p.add_argument("--tail", type=int, default=350)
    p.add_argument("--own", default="100,200,300,400")
    p.add_argument("--micro-batch-tokens", type=int, default=512)
    p.add_argument("--gradient-checkpointing", action="store_true")
    args = p.parse_args()
    hp = Hyperparameters(micro_batch_tokens=args.micro_batch_tokens, learning_rate_multiplier=2,
                         gradient_checkpointing=args.gradient_checkpointing)
    policy = policy_module.Policy("bundled:smollm2-135m-instruct", hp)
    seqs = demo_shaped_step(args.head, args.tail, [int(x) for x in args.own.split(",")])
    policy_module.token_logprobs = saved_per_micro_batch(policy_module.token_logprobs)
    sampler = RssSampler()
    loaded = rss_bytes()
    print(f"loaded: {loaded / GIB:.2f} GiB", flush=True)
    start = time.perf_counter()
    with sampler.phase("update"):
        policy.update(seqs)
    peak_gib = sampler.rows[-1][2]
    print(f"update: {time.perf_counter() - start:.0f} s, peak {peak_gib:.2f} GiB "
          f"(+{peak_gib - loaded / GIB:.2f} over the loaded model)", flush=True)


if __name__ == "__main__":
    main()
