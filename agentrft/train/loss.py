"""Sequences for training, their token log-probabilities and the clipped policy-gradient loss.

Shapes: B sequences, T tokens. `targets_BT[b, t] = ids[b, t + 1]`; the loss mask is shifted the
same way, so position t carries loss iff the model wrote token t + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrainSequence:
    token_ids: list[int]  # exactly as sampled
    mask: list[int]  # 1 on model-written tokens
    advantage: float
    old_logprobs: list[float] | None = None  # engine log-probs, for diagnostics


@dataclass
class MicroBatch:
    input_ids_BT: torch.Tensor
    attention_BT: torch.Tensor
    targets_BT: torch.Tensor  # (B, T-1)
    loss_mask_BT: torch.Tensor  # (B, T-1), float
    advantages_B: torch.Tensor


def collate(seqs: list[TrainSequence], pad_id: int, device: torch.device | str = "cpu") -> MicroBatch:
    """Right-pad sequences into tensors; the ids are never re-tokenised."""
    B, T = len(seqs), max(len(s.token_ids) for s in seqs)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.float32)
    for b, s in enumerate(seqs):
        n = len(s.token_ids)
        ids[b, :n] = torch.tensor(s.token_ids)
        attn[b, :n] = 1
        mask[b, :n] = torch.tensor(s.mask, dtype=torch.float32)
    return MicroBatch(
        input_ids_BT=ids.to(device), attention_BT=attn.to(device),
        targets_BT=ids[:, 1:].to(device), loss_mask_BT=mask[:, 1:].to(device),
        advantages_B=torch.tensor([s.advantage for s in seqs], dtype=torch.float32, device=device))


def token_logprobs(model, batch: MicroBatch, temperature: float = 1.0) -> torch.Tensor:
    """log p(target) at every position, (B, T-1), under logits / temperature (as sampled)."""
    logits = model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT).logits[:, :-1]
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logits = logits.float()
    return logits.gather(-1, batch.targets_BT[..., None])[..., 0] - torch.logsumexp(logits, -1)


def policy_loss_sum(logp_BT: torch.Tensor, old_logp_BT: torch.Tensor, batch: MicroBatch, *,
                    clip_epsilon: float, ref_logp_BT: torch.Tensor | None = None,
                    kl_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over model-written tokens of the clipped surrogate loss (+ KL); divide by the step's
    total token count outside, so every token weighs the same across micro-batches."""
    adv_BT = batch.advantages_B[:, None]
    ratio_BT = torch.exp(logp_BT - old_logp_BT)
    unclipped = ratio_BT * adv_BT
    clipped = torch.clamp(ratio_BT, 1 - clip_epsilon, 1 + clip_epsilon) * adv_BT
    loss_BT = -torch.minimum(unclipped, clipped)
    stats = {"clip_fraction_sum": float(((unclipped != clipped).float() * batch.loss_mask_BT).sum())}
    if ref_logp_BT is not None and kl_coef > 0:
        delta = ref_logp_BT - logp_BT  # k3 estimator of KL(policy || reference), always >= 0
        kl_BT = torch.exp(delta) - delta - 1
        loss_BT = loss_BT + kl_coef * kl_BT
        stats["kl_sum"] = float((kl_BT.detach() * batch.loss_mask_BT).sum())
    return (loss_BT * batch.loss_mask_BT).sum(), stats
