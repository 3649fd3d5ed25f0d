"""Shared by the export, serving and remote-engine tests: a real trained tiny checkpoint,
a real `agentrft serve` subprocess on loopback, and a free port."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, *, timeout_s: float) -> bool:
    """Poll `GET /health` on loopback until it answers 200 (True), or `proc` exits or the
    time runs out (False)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.2)
    return False


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def train_tiny(tmp_path: Path, model_dir: Path, *, finetune: str = "lora", max_steps: int = 1,
               lr_multiplier: float = 50.0) -> Path:
    """Train the tiny model for `max_steps` on the lookup task; returns the last checkpoint.
    A large learning rate so that the trained weights differ clearly from the base."""
    from agentrft.train.loop import Trainer
    from tests.test_train_tiny import make_job

    job = make_job(tmp_path, model_dir, max_steps=max_steps, finetune=finetune)
    job.hp.learning_rate_multiplier = lr_multiplier
    run = tmp_path / "run"
    asyncio.run(Trainer(job, run, evaluate=False).run_async())
    return run / "checkpoints" / f"step_{max_steps:06d}"


class ServeProcess:
    """`agentrft serve MODEL` in a child process, on a free loopback port."""

    def __init__(self, model: str, log_dir: Path, *extra: str):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log_dir / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentrft.cli", "serve", model, "--port", str(self.port), *extra],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"))
        if wait_healthy(self.port, self.proc, timeout_s=90):
            return
        if self.proc.poll() is not None:
            raise RuntimeError(f"agentrft serve exited: {self.log.read_text()[-2000:]}")
        self.stop()
        raise RuntimeError(f"agentrft serve did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self.proc)


def overfit(base_dir: Path, out_dir: Path, examples: list[tuple[list[int], list[int]]], *,
            max_steps: int = 300) -> Path:
    """Full fine-tune the tiny model until greedy decoding writes each example's answer ids
    after its prompt ids; saved as the trainer saves a full checkpoint. A real model that
    calls tools, in ~70 steps (seconds)."""
    import json

    import torch

    from agentrft.models.loading import load_model, load_tokenizer

    tok = load_tokenizer(str(base_dir))
    model = load_model(str(base_dir)).train()
    model.model.embed_tokens.requires_grad_(False)  # its dense gradient is most of a step's cost
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-2,
                           foreach=True)
    torch.manual_seed(0)
    for _ in range(max_steps):
        loss = 0.0
        for prompt, answer in examples:
            ids = torch.tensor([prompt + answer])
            hidden = model.model(input_ids=ids).last_hidden_state[0, len(prompt) - 1:-1]
            logits = model.lm_head(hidden)  # only where the answer is predicted
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(answer))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if float(loss.detach()) < 2e-2:  # greedy decoding is exact long before this
            break
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    (out_dir / "agentrft_checkpoint.json").write_text(json.dumps(
        {"base_model": str(base_dir), "finetune": "full", "step": 1}))
    return out_dir
