"""Embeddings per second with the bundled all-MiniLM-L6-v2, at batch sizes 1 and 32: the model
called directly (the baseline) and `POST /v1/embeddings` through the `openai` SDK over
loopback (the jobs server's app, in this process), so the figure shows what HTTP costs.

    .venv/bin/python bench/embeddings.py                 # 256 texts of ~25 words
    .venv/bin/python bench/embeddings.py -n 512 --batch 1 32 64 --threads 2

Texts are synthetic report sentences (deterministic, 20-35 words, ~40 tokens). Other load
on the machine slows everything; note it next to a figure you quote.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("revenue net income operating margin grew fell percent million fiscal year segment "
         "cash flow from operations capital expenditure dividend per share guidance quarter "
         "compared with the prior period driven by higher volumes pricing and lower costs").split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 35))) + "."
            for _ in range(n)]


def rate(fn, texts: list[str], batch: int) -> float:
    fn(texts[:batch])  # warm-up
    t0 = time.perf_counter()
    for start in range(0, len(texts), batch):
        fn(texts[start:start + batch])
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=256, help="texts per measurement")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args()

    import torch
    from openai import OpenAI

    from agentrft.jobs.store import JobStore
    from agentrft.loopback import LoopbackServer
    from agentrft.models.embedding import bundled_minilm
    from agentrft.server import create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = make_texts(args.n)
    encoder = bundled_minilm().load()
    with tempfile.TemporaryDirectory() as tmp:
        store = JobStore(tmp)
        with LoopbackServer(create_app(store), name="bench") as server:
            client = OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0)

            def via_api(batch: list[str]) -> None:
                client.embeddings.create(model="all-minilm-l6-v2", input=batch)

            print(f"all-MiniLM-L6-v2, {args.n} texts of 20-35 words, torch threads "
                  f"{torch.get_num_threads()}")
            for batch in args.batch:
                direct = rate(encoder.embed, texts, batch)
                api = rate(via_api, texts, batch)
                print(f"batch {batch:>3}: direct {direct:8.1f} texts/s   /v1/embeddings (SDK, "
                      f"base64) {api:8.1f} texts/s   ({api / direct:.2f}x of direct)")
        store.close()


if __name__ == "__main__":
    main()
