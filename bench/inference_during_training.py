"""The latency of an inference request on `agentrft server` while a job trains on the same machine.

Starts a real `agentrft server` (its own data dir, loopback), then through the official SDK:

1. creates a short job on the base (the lookup task: 4 rows × 4 rollouts a step, LoRA,
   `--steps` steps, evals off but the baseline), which also makes a local base directory
   servable, and once it runs sends one warm-up request (it loads the model, not counted);
2. sends the same chat completion of the base model again and again while the job is
   `running`, until it finishes;
3. then, idle, `--requests` more.

Prints the median, p90 and max latency of both phases and their ratio. Training runs in the
worker process, inference in the API process: they share only the CPU (or GPU), so the
ratio is the cost of that sharing, not of a request waiting for a step to end (a step takes
tens of seconds on CPU; a request that waited for one would show it).

    .venv/bin/python bench/inference_during_training.py                  # bundled model, ~4 min on 2 cores
    .venv/bin/python bench/inference_during_training.py --model DIR --steps 4   # e.g. a tiny model
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openai import OpenAI  # noqa: E402

from examples.lookup import task  # noqa: E402
from tests.serving_fixtures import free_port, stop_process, wait_healthy  # noqa: E402

KEY = "sk-bench"
MESSAGES = [{"role": "user", "content": "Name three colours."}]


def timed_request(client: OpenAI, model: str, max_tokens: int) -> float:
    start = time.perf_counter()
    r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=max_tokens,
                                       temperature=0)
    assert r.usage.completion_tokens >= 1
    return time.perf_counter() - start


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]
    return f"n={len(xs)} median {statistics.median(xs):.2f} s, p90 {p90:.2f} s, max {xs[-1]:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--requests", type=int, default=8, help="idle requests (after one warm-up)")
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args()

    data = Path(tempfile.mkdtemp(prefix="agentrft-bench-"))
    port = free_port()
    log = open(data / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "agentrft.cli", "server", "--port", str(port),
                             "--data-dir", str(data / "store"), "--api-key", KEY],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        if not wait_healthy(port, proc, timeout_s=120):
            raise SystemExit(f"server did not start; see {data / 'server.log'}")
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0,
                        timeout=600)
        train, valid = task.make_rows()
        files = []
        for name, rows in (("train.jsonl", train), ("valid.jsonl", valid[:4])):
            (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
            files.append(client.files.create(file=open(data / name, "rb"), purpose="fine-tune").id)
        method = {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "python", "name": "lookup", "callable": "examples.lookup.task:grade"},
            "tools": [{"name": "lookup", "python": "examples.lookup.task:lookup"}],
            "max_episode_steps": 2,
            "hyperparameters": {"batch_size": 4, "eval_interval": 100, "eval_samples": 1,
                                "max_new_tokens": 40, "max_steps": args.steps}}}
        job = client.fine_tuning.jobs.create(model=args.model, training_file=files[0],
                                             validation_file=files[1], seed=1,
                                             extra_body={"method": method})
        while client.fine_tuning.jobs.retrieve(job.id).status in ("validating_files", "queued"):
            time.sleep(0.5)
        start = time.perf_counter()
        timed_request(client, args.model, args.max_tokens)
        print(f"first request (loads the model): {time.perf_counter() - start:.1f} s", flush=True)
        busy, started = [], time.perf_counter()
        while (status := client.fine_tuning.jobs.retrieve(job.id).status) == "running":
            busy.append(timed_request(client, args.model, args.max_tokens))
            print(f"  during training: {busy[-1]:.2f} s", flush=True)
        took = time.perf_counter() - started
        print(f"during training: {summary(busy)} ({took:.0f} s of training, job {status})")
        idle = [timed_request(client, args.model, args.max_tokens) for _ in range(args.requests)]
        print(f"idle (after):    {summary(idle)}", flush=True)
        if busy:
            ratio = statistics.median(busy) / statistics.median(idle)
            print(f"median during training / idle: {ratio:.2f}x")
    finally:
        stop_process(proc)
        log.close()


if __name__ == "__main__":
    main()
