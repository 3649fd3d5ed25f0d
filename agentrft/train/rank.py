"""One rank of a distributed update step (`agentrft.train.distributed` drives N of these).

    rank r of N ── Policy(model, optimizer) built as in one process, then
                   ddp:  a full replica;   fsdp: fully_shard on each decoder layer and the root
        update(seqs_r, total)        its share of the step's sequences, micro-batched
            loss = Σ token losses of seqs_r / total   (total: the whole step's model tokens)
            ddp:  one all_reduce(SUM) of every gradient after the last micro-batch
            fsdp: reduce-scatter in backward; the loss is scaled by N, since it averages
            clip at 1.0 on the global gradient norm, AdamW step on what this rank holds
        weights()          rank 0: full tensors of what trains (LoRA adapter or all weights),
                           gathered to rank 0 one parameter at a time (train/sharded.py)
        optimizer_state()  rank 0: AdamW state in the single-process layout (param indices)
        load(w, opt)       every rank takes the full tensors and keeps its shard

Every rank's sum over its own tokens, divided by the step's total, adds up across ranks to
the single-process loss, so a step's result does not depend on N (up to float summation order).

FSDP runs collectives in every forward and backward, so all ranks run the same number of
micro-batches: one that runs out of sequences runs a two-token batch with no loss.

The loss applies the output head only where a loss is taken, for every strategy, as one
process does (`token_logprobs`: backbone, then the head on the selected hidden states). Under
FSDP that is two calls into the model, and calling the backbone alone would bypass the root's
hooks that gather the embeddings, the final norm and the head. So the FSDP root is not the
model but `LogprobForward`, a module around it whose forward is `token_logprobs`: its hooks
gather those weights for the whole computation and reduce-scatter their gradients after it.

    LogprobForward   (root unit: embeddings, final norm, head; LoRA weights outside layers)
      └─ model ─ backbone ─ layers[i]   (one unit each: gathered for its forward/backward only)

Full-vocabulary logits at every position cost each rank ~1.2 GiB more at its peak (SmolLM2-135M
LoRA, 16 rollouts of ~700 tokens with ~80 trained each, 2 CPU ranks: peak RSS 7.2 against 6.0
GiB); what remains is what one process holds too, mostly a micro-batch's attention activations.
Neither strategy uses `Policy.update`'s shared-prefix pass yet (under FSDP its separate
backward would be one more collective to keep in lockstep).
"""

from __future__ import annotations

import socket
from contextlib import nullcontext

import torch
import torch.distributed as dist

from agentrft.spec.job import Hyperparameters
from agentrft.train.checkpointing import checkpointed_layers, decoder_layers
from agentrft.train.loss import MicroBatch, TrainSequence, backbone_and_head, collate, \
    policy_loss_sum, token_logprobs
from agentrft.train.packing import can_pack, packing_pays_for
from agentrft.train.policy import Policy, micro_batch_order, micro_batches
from agentrft.train.sharded import local, shard_like, to_rank0

NO_LOSS = TrainSequence([0, 0], [0, 0], 0.0)  # what a rank with no sequence left runs (FSDP)
MAX_GRAD_NORM = 1.0  # as Policy.update


class LogprobForward(torch.nn.Module):
    """`token_logprobs(model, batch, ...)` as a module's forward, so that FSDP's root hooks,
    on this module, run around the backbone and head calls inside it (module docstring)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: MicroBatch, temperature: float, packed: bool) -> torch.Tensor:
        return token_logprobs(self.model, batch, temperature, packed=packed)


class RankTrainer:
    def __init__(self, rank: int, world_size: int, model_ref: str, hp: Hyperparameters,
                 strategy: str, backend: str, device: str, threads: int):
        self.rank, self.world_size = rank, world_size
        self.model_ref, self.hp, self.strategy = model_ref, hp, strategy
        self.backend, self.device, self.threads = backend, device, threads
        self.policy: Policy | None = None
        # the log-prob computation of the model and of its KL reference (`LogprobForward`)
        self.logprobs: LogprobForward | None = None
        self.reference_logprobs: LogprobForward | None = None

    # --- start-up ----------------------------------------------------------------------------

    def address(self) -> tuple[str, int]:
        """Where rank 0 listens for the others: this node's address and a free port."""
        host = "127.0.0.1"
        try:
            import ray

            if ray.is_initialized():  # a Ray actor: the others may be on other nodes
                host = ray.util.get_node_ip_address()
        except ImportError:
            pass
        with socket.socket() as s:
            s.bind((host, 0))
            return host, s.getsockname()[1]

    def start(self, host: str, port: int) -> None:
        torch.set_num_threads(self.threads)
        if self.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(self.device))
        dist.init_process_group(self.backend, init_method=f"tcp://{host}:{port}",
                                rank=self.rank, world_size=self.world_size)
        self.policy = Policy(self.model_ref, self.hp, device=self.device)
        self.logprobs = LogprobForward(self.policy.model)
        # a LoRA model's reference is the same model with its adapter off
        self.reference_logprobs = (LogprobForward(self.policy.reference)
                                   if self.policy.reference is not None else self.logprobs)
        if self.strategy == "fsdp":
            self._shard()

    def _shard(self) -> None:
        from torch.distributed.fsdp import fully_shard

        for root in {id(m): m for m in (self.logprobs, self.reference_logprobs)}.values():
            for layer in decoder_layers(root.model) or []:
                fully_shard(layer)
            fully_shard(root)  # the rest: embeddings, final norm, head (module docstring)
        # fully_shard replaced the parameters by sharded ones: the optimizer must hold those
        group = self.policy.optimizer.param_groups[0]
        self.policy.optimizer = torch.optim.AdamW(
            self._trainable(), lr=group["lr"], betas=group["betas"],
            weight_decay=group["weight_decay"])

    def _trainable(self) -> list[torch.nn.Parameter]:
        # the same order as Policy's optimizer: optimizer state indices agree across layouts
        return [p for p in self.policy.model.parameters() if p.requires_grad]

    # --- the step ----------------------------------------------------------------------------

    def update(self, seqs: list[TrainSequence], total: int) -> dict[str, float] | None:
        """This rank's share of one optimizer step; the pooled metrics on rank 0."""
        with checkpointed_layers(self.policy.model) if self.hp.gradient_checkpointing \
                else nullcontext():
            return self._update(seqs, total)

    def _update(self, seqs: list[TrainSequence], total: int) -> dict[str, float] | None:
        policy, hp = self.policy, self.hp
        sharded = self.strategy == "fsdp"
        policy.model.train()
        split = backbone_and_head(policy.model)
        packable = hp.pack_sequences and split is not None and can_pack(split[0])
        chunks = micro_batches(micro_batch_order(seqs, packable), hp.micro_batch_size,
                               hp.micro_batch_tokens, packed=packable)
        rounds = len(chunks)
        if sharded:  # every rank runs as many forwards and backwards as the busiest
            n = torch.tensor([rounds])
            dist.all_reduce(n, op=dist.ReduceOp.MAX)
            rounds = int(n)
        scale = self.world_size if sharded else 1  # FSDP's reduce-scatter averages
        policy.optimizer.zero_grad(set_to_none=True)
        keys = ["loss", "clip_fraction_sum", "is_capped_sum", "behaviour_n", "is_ratio_sum",
                "mismatch_sum", "kl_sum"]
        sums = dict.fromkeys(keys, 0.0)
        ratio_max = float("-inf")
        autocast = policy.precision.autocast(policy.device)
        for i in range(rounds):
            chunk = chunks[i] if i < len(chunks) else [NO_LOSS]
            batch = collate(chunk, policy.pad_id, policy.device)
            packed = packable and packing_pays_for([s.token_ids for s in chunk], 0,
                                                   policy.model.config)
            ref = self._reference_logprobs(batch, packed)
            with autocast:
                logp = self.logprobs(batch, hp.temperature, packed)
            loss_sum, stats = policy_loss_sum(logp, batch.behaviour_logp_BT, batch,
                                              clip_epsilon=hp.clip_epsilon, tis_cap=hp.tis_cap,
                                              ref_logp_BT=ref, kl_coef=hp.kl_coef)
            (loss_sum * scale / total).backward()
            if i >= len(chunks):
                continue
            sums["loss"] += float(loss_sum.detach()) / total
            for key in keys[1:]:
                sums[key] += stats.get(key, 0.0)
            if stats["behaviour_n"]:
                ratio_max = max(ratio_max, stats["is_ratio_max"])
        params = self._trainable()
        if not sharded:
            self._sum_gradients(params)
        grad_norm = self._clip(params, sharded)
        policy.optimizer.step()
        pooled = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(pooled)
        top = torch.tensor([ratio_max], dtype=torch.float64)
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        if self.rank != 0:
            return None
        return step_metrics(dict(zip(keys, pooled.tolist())), float(top), grad_norm, total, hp)

    def _reference_logprobs(self, batch, packed: bool) -> torch.Tensor | None:
        policy = self.policy
        if self.hp.kl_coef <= 0:
            return None
        adapter_off = policy.model.disable_adapter() if policy.reference is None else nullcontext()
        with torch.no_grad(), policy.precision.autocast(policy.device), adapter_off:
            return self.reference_logprobs(batch, self.hp.temperature, packed)

    @torch.no_grad()
    def _sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """What DistributedDataParallel does, by hand and once per step: the loss runs the
        backbone and the head as separate calls (DDP hooks the wrapper's forward), and a rank
        may have no sequence at all (DDP would wait for its backward)."""
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    @torch.no_grad()
    def _clip(self, params: list[torch.nn.Parameter], sharded: bool) -> float:
        """`clip_grad_norm_(params, 1.0)` over the whole gradient: a sharded one sums its
        squares across ranks first."""
        grads = [local(p.grad) for p in params if p.grad is not None]
        squares = torch.stack([g.float().pow(2).sum() for g in grads]).sum() if grads \
            else torch.zeros((), device=self.policy.device)
        if sharded:
            dist.all_reduce(squares)
        norm = squares.sqrt()
        coef = torch.clamp(MAX_GRAD_NORM / (norm + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.to(g.device, g.dtype))
        return float(norm)

    # --- weights and optimizer state ---------------------------------------------------------

    def _synced(self) -> list[tuple[str, torch.nn.Parameter]]:
        """What the sampling engine and a checkpoint need: the adapter for LoRA, all for full."""
        named = self.policy.model.named_parameters()
        return [(n, p) for n, p in named if p.requires_grad or self.hp.finetune == "full"]

    @torch.no_grad()
    def weights(self) -> dict[str, torch.Tensor] | None:
        """Rank 0: every synced tensor whole, on the CPU (see `agentrft.train.sharded`)."""
        out = {}
        for name, p in self._synced():
            t = to_rank0(p)  # one parameter at a time, gathered to rank 0 only
            if t is not None:
                out[name] = t.detach().to("cpu", copy=True)
        return out if self.rank == 0 else None

    @torch.no_grad()
    def optimizer_state(self) -> dict | None:
        state = self.policy.optimizer.state_dict()
        out = {}
        for index in sorted(state["state"]):
            entry = {}
            for key, value in state["state"][index].items():
                if torch.is_tensor(value):
                    value = to_rank0(value)
                    value = None if value is None else value.detach().to("cpu", copy=True)
                entry[key] = value
            out[index] = entry
        if self.rank != 0:
            return None
        return {"state": out, "param_groups": state["param_groups"]}

    @torch.no_grad()
    def load(self, weights: dict[str, torch.Tensor], optimizer: dict | None) -> None:
        params = dict(self._synced())
        unknown = set(weights) - set(params)
        if unknown:
            raise ValueError(f"weights for parameters this model lacks: {sorted(unknown)[:3]}")
        for name, value in weights.items():
            p = params[name]
            local(p).copy_(local(shard_like(value.to(p.dtype), p)))
        if optimizer is not None:
            trainable = self._trainable()
            state = {}
            for index, entry in optimizer["state"].items():
                p = trainable[int(index)]
                state[int(index)] = {k: shard_like(v, p) if torch.is_tensor(v) and v.dim() else v
                                     for k, v in entry.items()}
            self.policy.optimizer.load_state_dict({"state": state,
                                                   "param_groups": optimizer["param_groups"]})

    def peak_memory_gib(self) -> float | None:
        """This rank's peak CUDA memory (benchmarks); None on CPU."""
        if not self.device.startswith("cuda"):
            return None
        return torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**30

    def stop(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def step_metrics(sums: dict[str, float], ratio_max: float, grad_norm: float, total: int,
                 hp: Hyperparameters) -> dict[str, float]:
    """The metrics `Policy.update` reports, from sums pooled over every rank."""
    known = sums["behaviour_n"]
    out = {"loss": sums["loss"], "grad_norm": grad_norm, "trained_tokens": float(total),
           "clip_fraction": sums["clip_fraction_sum"] / total,
           "behaviour_logprob_missing_share": 1.0 - known / total}
    if hp.tis_cap:
        out["is_capped_share"] = sums["is_capped_sum"] / total
    if hp.kl_coef > 0:
        out["kl_mean"] = sums["kl_sum"] / total
    if known:
        out["logprob_mismatch_mean"] = sums["mismatch_sum"] / known
        out["is_ratio_mean"] = sums["is_ratio_sum"] / known
        out["is_ratio_max"] = ratio_max
    return out
