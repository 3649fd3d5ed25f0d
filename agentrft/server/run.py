"""`agentrft server`: the HTTP API and inference in this process, the training worker in another.

The worker is a child process (`python -m agentrft.jobs.worker`), restarted if it dies; a
job it left running resumes from its last checkpoint. Inference (`/v1/responses`,
`/v1/chat/completions`, `/v1/completions`) runs in this process over a pool of models loaded
on first use, so a training step never blocks a request: they only share the CPU or GPU.
Without an API key the server binds to loopback only, whatever --host says.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from agentrft.web import LOOPBACK

log = logging.getLogger("agentrft.server")


class WorkerSupervisor:
    """Keeps `count` worker processes running until stopped."""

    def __init__(self, data_dir: Path, *, device: str, count: int = 1, restart_delay_s: float = 1.0):
        self.data_dir, self.device, self.count = data_dir, device, count
        self.restart_delay_s = restart_delay_s
        self.procs: list[subprocess.Popen | None] = [None] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="worker-supervisor")

    def _spawn(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "agentrft.jobs.worker", "--data-dir", str(self.data_dir),
               "--device", self.device]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        log.info("worker started (pid %d)", proc.pid)
        return proc

    def _watch(self) -> None:
        while not self._stop.is_set():
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is not None:
                    if proc is not None:
                        log.warning("worker pid %d exited with %s; restarting", proc.pid,
                                    proc.returncode)
                        time.sleep(self.restart_delay_s)
                    if not self._stop.is_set():
                        self.procs[i] = self._spawn()
            self._stop.wait(0.5)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]


def serve(*, host: str, port: int, data_dir: Path, api_keys: list[str], device: str = "cpu",
          workers: int = 1, runs: Path | None = None,
          embedding_models: dict[str, str] | None = None, inference: bool = True,
          inference_memory_gb: float = 8.0) -> None:
    """`runs`: a folder of run dirs written by `agentrft train/eval/demo`, shown read-only
    on the dashboard beside the jobs. `embedding_models`: extra names for `/v1/embeddings`
    (NAME → a built-in embedding model or a directory). `inference`: also answer inference
    requests, with at most `inference_memory_gb` of model weights loaded."""
    import uvicorn

    from agentrft.jobs.store import JobStore
    from agentrft.server.app import create_app, model_pool
    from agentrft.serving.embeddings import EmbeddingModels
    from agentrft.serving.pool import GiB

    if not api_keys and host not in LOOPBACK:
        print(f"agentrft server: no API key given (--api-key or AGENTRFT_API_KEY): binding to "
              f"127.0.0.1 instead of {host}", file=sys.stderr)
        host = "127.0.0.1"
    elif not api_keys:
        print("agentrft server: no API key given; serving on loopback only, without auth",
              file=sys.stderr)
    from agentrft.sandbox.factory import isolation_summary as tool_isolation
    from agentrft.sandbox.process import isolation_summary as grader_isolation

    # which isolation is in force for untrusted code, said once where the operator looks
    for line in (grader_isolation(), tool_isolation()):
        print(f"agentrft server: {line}", file=sys.stderr, flush=True)
    embeddings = EmbeddingModels(embedding_models)  # a bad mapping fails before anything starts
    data_dir.mkdir(parents=True, exist_ok=True)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; under the default handler
    # that kills this process before `finally` stops the workers, orphaning them
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    store = JobStore(data_dir)
    pool = model_pool(store, device=device, memory_budget_bytes=int(inference_memory_gb * GiB)) \
        if inference else None
    supervisor = WorkerSupervisor(data_dir, device=device, count=workers)
    supervisor.start()
    print(f"agentrft server: http://{host}:{port}/v1 (data {data_dir}, {workers} worker(s) on "
          f"{device}, pid {os.getpid()}); dashboard: http://{host}:{port}/"
          + (" (sign in with an API key)" if api_keys else ""), file=sys.stderr, flush=True)
    try:
        uvicorn.run(create_app(store, api_keys=api_keys, run_root=runs,
                               embedding_models=embeddings, inference=pool),
                    host=host, port=port, log_level="warning")
    finally:
        supervisor.stop()
        store.close()
