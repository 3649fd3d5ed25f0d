"""`ModelPool`: the models `agentrft server` answers inference requests for, loaded on first use.

    request.model ──resolve()──► a directory (bundled model, a job's base, ft: model or checkpoint)
        LoRA checkpoint ──► its base's ModelHost + the adapter on top (peft, several at once)
        anything else   ──► a ModelHost of its own
    a new host past the memory budget ──► the least recently used idle host is dropped

One base in memory serves every LoRA job trained on it: `ft:…` models and their
`:ckpt-step-N` checkpoints are adapters on that one base, selected per request as with
`agentrft serve`'s run-time adapters. At most `max_adapters` stay loaded per base (least
recently used unloaded first). The budget counts parameter bytes of the hosts (adapters are
small and not counted); a single model larger than the budget is still loaded, alone. A
host whose lock is held (a request is sampling on it) is never evicted; a request resolved
just before its host is evicted fails with a 503 and can be retried.

    pool = ModelPool(resolve=lambda name: Path(...) or None, device="cpu")
    serving = pool.serving_for("ft:base:suffix:ftjob-abc")   # a `Serving` (app.py)
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch

from agentrft.errors import AgentRFTError
from agentrft.models.loading import resolve_model_dir
from agentrft.web.errors import APIError
from agentrft.serving.host import ModelHost

GiB = 2**30


def host_bytes(host: ModelHost) -> int:
    return sum(p.numel() * p.element_size() for p in host.model.parameters())


class _Base:
    """One loaded base model and the adapters on it: model name → peft adapter name."""

    def __init__(self, host: ModelHost):
        self.host = host
        self.bytes = host_bytes(host)
        self.adapters: OrderedDict[str, str] = OrderedDict()  # least recently used first
        self.counter = 0


class ModelPool:
    def __init__(self, resolve: Callable[[str], Path | None], *, device: str = "cpu",
                 seed: int = 0, memory_budget_bytes: int = 8 * GiB, max_adapters: int = 8):
        self.resolve = resolve
        self.device, self.seed = device, seed
        self.budget = memory_budget_bytes
        self.max_adapters = max_adapters
        self.bases: OrderedDict[str, _Base] = OrderedDict()  # by base directory, LRU first
        self.lock = threading.Lock()

    # --- look-up -------------------------------------------------------------------------

    def serving_for(self, model: str):
        """The `Serving` that answers for `model`, loading what it needs (blocking: call it
        from a worker thread). 404 for a name that resolves to nothing."""
        from agentrft.serving.app import Serving

        with self.lock:
            base, adapter = self._load(model)
        return Serving(base.host, adapter_of=lambda name: self._adapter_of(base, name, adapter))

    def loaded(self) -> dict[str, list[str]]:
        """Base directory → the model names of the adapters loaded on it (for /health)."""
        with self.lock:
            return {key: list(b.adapters) for key, b in self.bases.items()}

    def _adapter_of(self, base: _Base, model: str, adapter: str | None) -> str | None:
        if adapter is not None and base.adapters.get(model) != adapter:
            raise APIError(503, f"the model {model!r} was unloaded to make room; retry",
                           param="model", code="model_unloaded")
        return adapter

    # --- loading and eviction ------------------------------------------------------------

    def _load(self, model: str) -> tuple[_Base, str | None]:
        path = self._path(model)
        meta = path / "agentrft_checkpoint.json"
        if (path / "adapter_config.json").is_file() and meta.is_file():
            base_ref = json.loads(meta.read_text())["base_model"]
            base = self._base(self._path(base_ref, of=model))
            if model not in base.adapters:
                self._add_adapter(base, model, path)
            base.adapters.move_to_end(model)
            return base, base.adapters[model]
        return self._base(path), None

    def _path(self, ref: str, *, of: str | None = None) -> Path:
        """The directory of `ref`. `of`: the checkpoint whose base `ref` is; its file was
        written by the trainer, so a base outside `resolve`'s names (a directory) is fine."""
        try:
            path = self.resolve(ref)
            if path is None and of is not None:
                path = resolve_model_dir(ref)
        except AgentRFTError as e:
            path, why = None, str(e)
        else:
            why = None
        if path is None or not Path(path).is_dir():
            what = f"the base {ref!r} of {of!r}" if of else f"the model {ref!r}"
            raise APIError(404, f"{what} does not exist" + (f" ({why})" if why else "") +
                           "; this server answers for bundled models, the base models of its "
                           "jobs, and ft: models with their checkpoints", param="model",
                           code="model_not_found")
        return Path(path).resolve()

    def _base(self, path: Path) -> _Base:
        key = str(path)
        if key not in self.bases:
            try:
                host = ModelHost.load(key, name=key, device=self.device, seed=self.seed)
            except (AgentRFTError, OSError, ValueError) as e:
                raise APIError(400, f"cannot load the model at {key}: {e}", param="model",
                               code="model_load_failed") from None
            self._make_room(host_bytes(host))
            self.bases[key] = _Base(host)
        self.bases.move_to_end(key)
        return self.bases[key]

    def _make_room(self, incoming: int) -> None:
        """Drop least recently used idle bases until `incoming` more bytes fit the budget."""
        for key in list(self.bases):
            if sum(b.bytes for b in self.bases.values()) + incoming <= self.budget:
                return
            if not self.bases[key].host.lock.locked():
                del self.bases[key]
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _add_adapter(self, base: _Base, model: str, path: Path) -> None:
        while len(base.adapters) >= self.max_adapters:
            victim = next(iter(base.adapters))
            base.host.unload_adapter(base.adapters.pop(victim))  # waits for a running request
        base.counter += 1
        name = f"adapter{base.counter}"  # peft names cannot hold the dots and colons of ft: names
        try:
            base.host.load_adapter(name, str(path))
        except AgentRFTError as e:
            raise APIError(400, f"cannot load {model!r}: {e}", param="model",
                           code="model_load_failed") from None
        base.adapters[model] = name
