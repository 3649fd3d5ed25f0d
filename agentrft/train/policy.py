"""The policy being trained: model (LoRA adapter or full weights), optimizer, and one update.

LoRA (peft, r/alpha from the hyperparameters, every linear projection, no dropout) is the
default; `finetune: full` trains every weight. The KL reference is the starting model:
the base with the adapter switched off for LoRA, a frozen copy for full fine-tuning.

Precision (`precision_for`): everything that trains keeps fp32 weights, gradients and AdamW
state; with bf16 (the default on CUDA) the forward runs under bf16 autocast, and LoRA's frozen
base is stored in bf16. Log-probabilities for the loss are always fp32.

`gradient_checkpointing` recomputes each decoder layer in backward (`checkpointed_layers`),
compatible with the shared prefix. `pack_sequences` (on by default where `packing.can_pack`)
orders a step's sequences by their tokens and runs each micro-batch as one unpadded row that
holds a span its sequences share once (a group's prompt), so `micro_batch_tokens` counts real
tokens.
"""

from __future__ import annotations

import copy
import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from agentrft.errors import SpecError

from agentrft.models.loading import load_model, load_tokenizer
from agentrft.spec.job import Hyperparameters
from agentrft.train.checkpointing import checkpointed_layers, decoder_layers
from agentrft.train.loss import TrainSequence, backbone_and_head, collate, policy_loss_sum, \
    token_logprobs
from agentrft.train.packing import can_pack, packing_pays_for, shared_spans
from agentrft.train.shared_prefix import MIN_SHARED_TOKENS, SharedPrefix, shared_head_len

CHECKPOINT_META = "agentrft_checkpoint.json"


def micro_batch_order(seqs: list[TrainSequence], packed: bool) -> list[TrainSequence]:
    """Packed: by their tokens, so a group's rollouts sit side by side and their row holds the
    prompt once; padded: by length, so a micro-batch pads little."""
    return sorted(seqs, key=(lambda s: s.token_ids) if packed else (lambda s: len(s.token_ids)))


def micro_batches(seqs: list[TrainSequence], max_seqs: int, max_tokens: int, *,
                  packed: bool = False) -> list[list[TrainSequence]]:
    """Consecutive groups of `seqs` of at most `max_seqs` sequences and `max_tokens` tokens:
    padded ones (`seqs` sorted by length, so the newest is the longest), or with `packed` the
    tokens of the row they run as (a span a sequence shares with the one before it counts
    once, see packing.py). A sequence over `max_tokens` is alone."""
    out: list[list[TrainSequence]] = []
    row = 0  # tokens in the last packed row
    for s in seqs:
        last = out[-1] if out else []
        n = len(s.token_ids)
        if packed:
            own = n - (shared_spans([last[-1].token_ids, s.token_ids])[1] if last else 0)
            tokens = row + own
        else:
            tokens = (len(last) + 1) * n
        if last and len(last) < max_seqs and tokens <= max_tokens:
            last.append(s)
            row = tokens
        else:
            out.append([s])
            row = n
    return out


@dataclass(frozen=True)
class Precision:
    load_dtype: torch.dtype  # the weights as loaded (a LoRA base stays so; adapters are fp32)
    autocast_dtype: torch.dtype | None  # the forward's matmuls, None: as stored

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


def precision_for(setting: str, finetune: str, device: torch.device) -> Precision:
    """What `Hyperparameters.precision` means on `device`. "auto" is bf16 on CUDA, fp32 elsewhere.

    bf16 autocasts the forward and keeps fp32 master weights for whatever trains: AdamW on
    bf16 weights drops every update smaller than half a bf16 step (~0.4% of the weight), so full
    fine-tuning loads fp32. LoRA's base is frozen, so it is stored in bf16 (half the memory, no
    per-step cast); peft keeps the adapters in fp32. On CPU, bf16 uses CPU autocast."""
    mode = ("bf16" if device.type == "cuda" else "fp32") if setting == "auto" else setting
    if mode == "fp32":
        return Precision(load_dtype=torch.float32, autocast_dtype=None)
    return Precision(load_dtype=torch.bfloat16 if finetune == "lora" else torch.float32,
                     autocast_dtype=torch.bfloat16)


def adamw(params: list[torch.nn.Parameter], *, lr: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for these tensors (CPU and CUDA). On
    the 2-core CPU a full fine-tune step of SmolLM2-135M took 0.53 s fused against 4.08 s
    with the default `foreach` kernel (best of 15 each, same run, load 8.5; medians 1.35 s
    against 13.97 s): `bench/optimizer_step.py`. foreach allocates temporaries the size of
    the model; fused updates each tensor in one pass. Same algorithm and state layout."""
    fusable = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point
                  and type(p.data) is torch.Tensor for p in params)  # not DTensor shards
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0,
                             **({"fused": True} if fusable and params else {}))


class Policy:
    def __init__(self, model_ref: str, hp: Hyperparameters, *, device: str = "cpu"):
        self.model_ref, self.hp, self.device = model_ref, hp, torch.device(device)
        self.tokenizer = load_tokenizer(model_ref)
        self.precision = precision_for(hp.precision, hp.finetune, self.device)
        model = load_model(model_ref, device=device, dtype=self.precision.load_dtype)
        self.reference = None
        if hp.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=0.0,
                                target_modules="all-linear", task_type="CAUSAL_LM")
            # autocast_adapter_dtype: adapters on a bf16 base are created in fp32
            model = get_peft_model(model, config, autocast_adapter_dtype=True)
        elif hp.kl_coef > 0:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        if hp.gradient_checkpointing and decoder_layers(model) is None:
            raise SpecError(f"{model_ref}: no decoder layers found to checkpoint",
                            field="method.reinforcement.hyperparameters.gradient_checkpointing")
        self.model = model
        split = backbone_and_head(model)
        self.packed = hp.pack_sequences and split is not None and can_pack(split[0])
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = adamw(params, lr=hp.learning_rate)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def _reference_logprobs(self, batch, packed: bool) -> torch.Tensor | None:
        if self.hp.kl_coef <= 0:
            return None
        with torch.no_grad(), self.precision.autocast(self.device):
            if self.reference is not None:
                return token_logprobs(self.reference, batch, self.hp.temperature, packed=packed)
            with self.model.disable_adapter():
                return token_logprobs(self.model, batch, self.hp.temperature, packed=packed)

    def _shared_prefix(self, seqs: list[TrainSequence]):
        """(SharedPrefix, the sequences without it) when they share a long untrained head, else
        (None, seqs). Off with a KL term, whose reference pass would need its own head."""
        n = shared_head_len([s.token_ids for s in seqs], [s.mask for s in seqs])
        split = backbone_and_head(self.model)
        if n < MIN_SHARED_TOKENS or split is None or self.hp.kl_coef > 0:
            return None, seqs
        prefix = SharedPrefix(split[0], seqs[0].token_ids[:n], self.device,
                              autocast=lambda: self.precision.autocast(self.device))
        rest = [TrainSequence(s.token_ids[n:], s.mask[n:], s.advantage,
                              None if s.behaviour_logprobs is None else s.behaviour_logprobs[n:])
                for s in seqs]
        return prefix, rest

    def update(self, seqs: list[TrainSequence]) -> dict[str, float]:
        """One optimizer step on all sequences (micro-batched, gradients accumulated).

        The importance ratio is against the engine's log-probs as it sampled each token
        (`loss.policy_loss_sum`): they differ from this forward's by kernels and precision, and
        by staleness when rollouts were sampled with older weights. Tokens whose engine
        reported no log-prob train on-policy and are left out of the ratio statistics."""
        with checkpointed_layers(self.model) if self.hp.gradient_checkpointing else nullcontext():
            return self._update(seqs)

    def _update(self, seqs: list[TrainSequence]) -> dict[str, float]:
        self.model.train()
        total = sum(sum(s.mask[1:]) for s in seqs)
        if total == 0:
            return {}
        self.optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        sums = {"clip_fraction_sum": 0.0, "is_capped_sum": 0.0, "behaviour_n": 0.0,
                "is_ratio_sum": 0.0, "mismatch_sum": 0.0, "kl_sum": 0.0}
        ratio_max = float("-inf")
        autocast = self.precision.autocast(self.device)
        prefix, seqs = self._shared_prefix(seqs)
        for chunk in micro_batches(micro_batch_order(seqs, self.packed), self.hp.micro_batch_size,
                                   self.hp.micro_batch_tokens, packed=self.packed):
            batch = collate(chunk, self.pad_id, self.device)
            packed = self.packed and packing_pays_for([s.token_ids for s in chunk],
                                                      prefix.length if prefix else 0,
                                                      self.model.config)
            ref = self._reference_logprobs(batch, packed)
            with autocast:
                logp = token_logprobs(self.model, batch, self.hp.temperature, prefix=prefix,
                                      packed=packed)
            loss_sum, stats = policy_loss_sum(logp, batch.behaviour_logp_BT, batch,
                                              clip_epsilon=self.hp.clip_epsilon,
                                              tis_cap=self.hp.tis_cap, ref_logp_BT=ref,
                                              kl_coef=self.hp.kl_coef)
            (loss_sum / total).backward()
            loss_total += float(loss_sum.detach()) / total
            for key in sums:
                sums[key] += stats.get(key, 0.0)
            if stats["behaviour_n"]:
                ratio_max = max(ratio_max, stats["is_ratio_max"])
        if prefix is not None:
            prefix.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.optimizer.step()
        known = sums["behaviour_n"]
        out = {"loss": loss_total, "grad_norm": float(grad_norm), "trained_tokens": float(total),
               "clip_fraction": sums["clip_fraction_sum"] / total,
               # share of trained tokens whose engine reported no log-prob (trained on-policy)
               "behaviour_logprob_missing_share": 1.0 - known / total}
        if self.hp.tis_cap:
            out["is_capped_share"] = sums["is_capped_sum"] / total
        if self.hp.kl_coef > 0:
            out["kl_mean"] = sums["kl_sum"] / total
        if known:  # absent, not 0.0, when there is nothing to compare
            out["logprob_mismatch_mean"] = sums["mismatch_sum"] / known
            out["is_ratio_mean"] = sums["is_ratio_sum"] / known
            out["is_ratio_max"] = ratio_max
        return out

    def close(self) -> None:
        """Nothing to release in one process (a `DistributedPolicy` stops its ranks)."""

    # --- checkpoints -------------------------------------------------------------------------

    def save_weights(self, directory: Path, *, step: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)  # an adapter for LoRA, full weights otherwise
        if self.hp.finetune == "full":
            self.tokenizer.save_pretrained(directory)
        meta = {"base_model": self.model_ref, "finetune": self.hp.finetune, "step": step}
        (directory / CHECKPOINT_META).write_text(json.dumps(meta, indent=2))
        torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")

    def load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        if self.hp.finetune == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, load_file(directory / "adapter_model.safetensors"))
        else:
            state = load_file(directory / "model.safetensors")
            self.model.load_state_dict(state, strict=False)  # tied lm_head is not stored
        self.optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=False))
