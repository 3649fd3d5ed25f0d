"""Training beyond one process: `DistributedPolicy`, a drop-in for `Policy` whose update step
runs as N ranks under torch.distributed (`training: {strategy: ddp|fsdp, world_size: N}`).

    main process (rollouts, grading, checkpoints, the sampling engine: as with one process)
    ├── host Policy: the engine's model and the checkpoint writer; never trained here
    └── DistributedPolicy.update(seqs)
          split_by_tokens(seqs, N) ─► rank 0 … rank N-1    (train/rank.py, train/launch.py)
                                     each: Σ its token losses / the step's total tokens
                                     ddp: gradients all-reduced; fsdp: sharded (FSDP2)
          ◄── rank 0: full tensors of what trains (the LoRA adapter, or every weight),
              gathered to rank 0 alone one parameter at a time (train/sharded.py; no other
              rank holds a whole tensor) ─► host model ─► engine.sync_weights as ever

Ranks are processes spawned on this machine (gloo on CPU, nccl with rank r on cuda:r), or
Ray actors, one GPU each, when the trainer is given `ray=` (`agentrft train --ray ADDRESS`).

Same result for any N: each rank divides by the step's total token count, so the ranks' losses
add up to the single-process token sum; gradients are summed (ddp) or reduce-scattered (fsdp),
clipped on the global norm, and every rank's optimizer steps on what it holds.

Checkpoints are written in the single-process layout whatever N is: rank 0 gathers the weights
(they are on the host after every step anyway) and AdamW's state, keyed by parameter index as
`torch.optim` writes it. That gather is the price of portability: a job trained on 2 ranks
resumes on 1 or 4, and `agentrft export` reads the checkpoint as any other. It holds the full
optimizer state on rank 0's CPU at save time; fine for models whose AdamW state fits in host
memory (2 × 4 bytes per trained weight), which is the scale this is meant for.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from agentrft.errors import SpecError
from agentrft.spec.job import JobSpec
from agentrft.train.launch import LocalRanks, RankGroup, RayRanks, start_group
from agentrft.train.loss import TrainSequence
from agentrft.train.policy import CHECKPOINT_META, Policy


def split_by_tokens(seqs: list[TrainSequence], n: int) -> list[list[TrainSequence]]:
    """`seqs` in `n` parts of nearly equal token count: longest first, each to the lightest
    part so far (a rank's step time grows with its tokens)."""
    parts: list[list[TrainSequence]] = [[] for _ in range(n)]
    loads = [0] * n
    for s in sorted(seqs, key=lambda s: len(s.token_ids), reverse=True):
        k = loads.index(min(loads))
        parts[k].append(s)
        loads[k] += len(s.token_ids)
    return parts


def backend_for(setting: str, device: str) -> str:
    if setting != "auto":
        return setting
    return "nccl" if device.startswith("cuda") else "gloo"


def rank_device(device: str, rank: int, *, ray: bool) -> str:
    """A Ray actor sees only its own GPU (cuda:0); a local rank r takes cuda:r."""
    if not device.startswith("cuda"):
        return device
    return "cuda:0" if ray else f"cuda:{rank}"


class DistributedPolicy:
    """`Policy`'s interface (`model`, `tokenizer`, `hp`, `update`, `save_weights`,
    `load_weights`, `close`), trained by `job.rl.training.world_size` ranks."""

    def __init__(self, job: JobSpec, *, device: str = "cpu", ray: str | None = None):
        training, hp = job.rl.training, job.hp
        self.model_ref, self.hp, self.training = job.model, hp, training
        n = training.world_size
        if device.startswith("cuda") and not ray and n > torch.cuda.device_count():
            raise SpecError(f"{n} ranks need {n} GPUs, and this machine has "
                            f"{torch.cuda.device_count()} (or give --ray a cluster that has them)",
                            field="method.reinforcement.training.world_size")
        # The host only samples and writes checkpoints: no KL reference copy (ranks hold theirs)
        self.host = Policy(job.model, hp.model_copy(update={"kl_coef": 0.0}), device=device)
        self.model, self.tokenizer = self.host.model, self.host.tokenizer
        threads = max(1, torch.get_num_threads() // n) if not device.startswith("cuda") else 1
        kwargs = [dict(rank=r, world_size=n, model_ref=job.model, hp=hp,
                       strategy=training.strategy, backend=backend_for(training.backend, device),
                       device=rank_device(device, r, ray=ray is not None), threads=threads)
                  for r in range(n)]
        self.group: RankGroup = (
            RayRanks(kwargs, address=ray, gpus_per_rank=1 if device.startswith("cuda") else 0)
            if ray else LocalRanks(kwargs))
        try:
            start_group(self.group)
            # every rank starts from the host's weights (a fresh LoRA adapter is random)
            self.group.call_all("load", self._host_weights(), None)
        except BaseException:
            self.group.close()
            raise

    @property
    def pad_id(self) -> int:
        return self.host.pad_id

    def update(self, seqs: list[TrainSequence]) -> dict[str, float]:
        """One optimizer step over all ranks; afterwards the host holds the new weights."""
        total = sum(sum(s.mask[1:]) for s in seqs)
        if total == 0:
            return {}
        parts = split_by_tokens(seqs, self.training.world_size)
        metrics = self.group.call("update", [(part, total) for part in parts])[0]
        self._pull_weights()
        return metrics

    def _host_weights(self) -> dict[str, torch.Tensor]:
        full = self.hp.finetune == "full"
        return {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters()
                if full or p.requires_grad}

    @torch.no_grad()
    def _pull_weights(self) -> None:
        """Rank 0's trained tensors into the host model, which the engine samples from."""
        weights = self.group.call_all("weights")[0]
        params = dict(self.model.named_parameters())
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))

    # --- checkpoints: the single-process layout (see the module docstring) -------------------

    def save_weights(self, directory: Path, *, step: int) -> None:
        optimizer = self.group.call_all("optimizer_state")[0]
        self.host.save_weights(directory, step=step)  # the host's weights are the ranks'
        torch.save(optimizer, directory / "optimizer.pt")  # replaces the host's (empty) state
        meta_path = directory / CHECKPOINT_META
        meta = json.loads(meta_path.read_text())
        meta["training"] = {"strategy": self.training.strategy,
                            "world_size": self.training.world_size}
        meta_path.write_text(json.dumps(meta, indent=2))

    def load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        if self.hp.finetune == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, load_file(directory / "adapter_model.safetensors"))
        else:
            self.model.load_state_dict(load_file(directory / "model.safetensors"), strict=False)
        optimizer = torch.load(directory / "optimizer.pt", weights_only=False)
        self.group.call_all("load", self._host_weights(), optimizer)

    def close(self) -> None:
        self.group.close()

