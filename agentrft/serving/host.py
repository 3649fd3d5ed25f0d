"""`ModelHost`: one loaded model, its tokenizer and chat renderer, the LoRA adapters loaded at
run time, and the lock that lets one request at a time use them.

The served model is the reference given to `agentrft serve` with any LoRA checkpoint merged
into its base, so a request for it runs plain weights. Adapters loaded later through
`/v1/load_lora_adapter` sit on top of those weights (peft, several at once); a request names
one by its `model` field, as with vLLM. Sampling for non-streamed requests goes through the
same `TransformersEngine` the trainer samples with, so a remote engine pointed at this
server samples exactly what the in-process engine would for the same weights and seed.

    host = ModelHost.load("runs/x/checkpoints/step_000003", name="lookup-v1")
    host.load_adapter("step-4", "/tmp/adapters/step-4")
    out = host.generate([[1, 2, 3]], SamplingParams(max_new_tokens=8), model="step-4", seed=0)
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from agentrft.engines.base import Completion, SamplingParams
from agentrft.engines.transformers_engine import TransformersEngine
from agentrft.errors import AgentRFTError
from agentrft.models.chat import ChatRenderer
from agentrft.models.export import merged_model
from agentrft.models.loading import load_tokenizer, resolve_model_dir
from agentrft.serving.stream import stream_tokens, top_logprobs


class UnknownModel(AgentRFTError):
    """A request names a model this server does not serve (404)."""


class AdapterError(AgentRFTError):
    """An adapter cannot be loaded or unloaded (400; 404 for `missing`)."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


class ModelHost:
    def __init__(self, model, tokenizer, *, name: str, device: str = "cpu", seed: int = 0,
                 max_batch_size: int = 64, max_model_len: int | None = None):
        self.name = name
        self.tokenizer = tokenizer
        self.renderer = ChatRenderer(tokenizer)
        self.device = torch.device(device)
        self.engine = TransformersEngine(model.to(self.device).eval(),
                                         pad_token_id=tokenizer.pad_token_id, device=self.device,
                                         max_batch_size=max_batch_size, seed=seed)
        self.adapters: dict[str, str] = {}  # name -> the path it was loaded from
        self.lock = threading.Lock()
        config = model.config
        self.max_context = max_model_len or int(getattr(config, "max_position_embeddings", 0) or 2048)
        # the logits' width (a padded embedding matrix may exceed the tokenizer), for grammars
        self.vocab_size = max(len(tokenizer), int(getattr(config, "vocab_size", 0) or 0))

    @classmethod
    def load(cls, ref: str, *, name: str | None = None, device: str = "cpu", seed: int = 0,
             max_batch_size: int = 64, max_model_len: int | None = None) -> "ModelHost":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        path = str(resolve_model_dir(ref))  # once: model and tokenizer load from the same folder
        return cls(merged_model(path, dtype=dtype), load_tokenizer(path), name=name or ref,
                   device=device, seed=seed, max_batch_size=max_batch_size,
                   max_model_len=max_model_len)

    @property
    def model(self):
        return self.engine.model

    def model_ids(self) -> list[str]:
        return [self.name, *self.adapters]

    def check_model(self, model: str) -> str | None:
        """The adapter a request's `model` selects (None: the served model itself)."""
        if model == self.name:
            return None
        if model in self.adapters:
            return model
        raise UnknownModel(f"the model {model!r} does not exist; this server serves "
                           f"{', '.join(repr(m) for m in self.model_ids())}")

    # --- adapters ----------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel

        if name == self.name or name in self.adapters:
            raise AdapterError(f"an adapter or model named {name!r} is already loaded")
        folder = Path(path)
        if not (folder / "adapter_config.json").is_file():
            raise AdapterError(f"no LoRA adapter at {path!r} (adapter_config.json not found)")
        with self.lock:
            try:
                if self.adapters:  # already a PeftModel
                    self.model.load_adapter(str(folder), adapter_name=name)
                else:
                    self.engine.model = PeftModel.from_pretrained(self.model, str(folder),
                                                                  adapter_name=name)
            except Exception as e:  # noqa: BLE001 - a bad adapter is the caller's input
                raise AdapterError(f"cannot load adapter {name!r} from {path!r}: "
                                   f"{type(e).__name__}: {e}") from None
            self.engine.model.to(self.device).eval()
            self.adapters[name] = str(folder)

    def unload_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise AdapterError(f"no adapter named {name!r} is loaded", missing=True)
        with self.lock:
            del self.adapters[name]
            if self.adapters:
                self.model.delete_adapter(name)
            else:  # peft cannot delete its last adapter: take the LoRA layers out instead
                self.engine.model = self.model.unload()

    @contextmanager
    def _using(self, adapter: str | None) -> Iterator[None]:
        """Route the forward passes inside through `adapter` (None: the served weights).
        The caller holds the lock."""
        model = self.model
        if not self.adapters:  # the plain served model: no peft wrapper to route through
            yield
        elif adapter is None:
            with model.disable_adapter():
                yield
        else:
            model.set_adapter(adapter)
            yield

    # --- sampling ----------------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], params: SamplingParams, *, adapter: str | None,
                 seed: int | None) -> list[Completion]:
        with self.lock, self._using(adapter):
            if seed is not None:
                self.engine.reseed(seed)
            return self.engine.generate(prompts, params)

    def stream(self, prompt: list[int], n: int, params: SamplingParams, *, adapter: str | None,
               seed: int | None, top_k: int = 0):
        """Yield each decode step's (tokens (n,), logprobs (n,), top (n × k)) while holding
        the model; closing the generator (a client that went away) releases it."""
        with self.lock, self._using(adapter):
            if seed is not None:
                self.engine.reseed(seed)
            # streaming decodes here, not in the engine, from the engine's own random stream
            yield from stream_tokens(self.model, prompt, n, params, generator=self.engine.generator,
                                     pad_token_id=self.tokenizer.pad_token_id, top_k=top_k)

    @torch.no_grad()
    def top_logprobs(self, prompt: list[int], completion: list[int], *, temperature: float,
                     top_k: int, adapter: str | None) -> list[list[tuple[int, float]]]:
        """The top-k (token, log-prob) alternatives at each position of `completion` after
        `prompt`, as `stream` reports them (the sampled tokens' own log-probs come with the
        completion)."""
        if not completion:
            return []
        ids = torch.tensor([prompt + completion], device=self.device)
        with self.lock, self._using(adapter):
            logits = self.model(input_ids=ids).logits[0, len(prompt) - 1:-1]  # (T, V)
        return top_logprobs(logits, temperature, top_k)
