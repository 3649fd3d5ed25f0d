"""Sequences for training, their token log-probabilities and the clipped policy-gradient loss.

Shapes: B sequences, T tokens. `targets_BT[b, t] = ids[b, t + 1]`; the loss mask is shifted the
same way, so position t carries loss iff the model wrote token t + 1. A micro-batch is collated
right-padded; `token_logprobs(..., packed=True)` runs its real tokens as one row instead
(`packing.py`, which also holds a prefix several sequences share once) and hands back the
same padded (B, T-1) log-probs.

The loss (`policy_loss_sum`), per model-written token t with advantage A:

    μ_t   = log-prob of the token under the engine that sampled it (the behaviour policy);
            where the engine reported none, the trainer's own, detached (on-policy)
    r_t   = exp(log π_θ(t) − μ_t)                  importance ratio trainer / sampler
    w_t   = sg(min(r_t, C) / r_t)                  truncated importance sampling (TIS), C = tis_cap
    L_t   = −w_t · min(r_t·A, clip(r_t, 1 − ε, 1 + ε)·A)     (+ kl_coef · k3 KL to the reference)

whose gradient is

    ∇L_t = −A · min(r_t, C) · ∇log π_θ(t)   where the unclipped branch of the min is taken,
           0                                 where the clipped one is (r_t left [1 − ε, 1 + ε]
                                             in the direction A pushes it: `clip_fraction`).

Why this one formulation. We take one optimizer step per batch, so the trainer's own
log-probs before the step equal its log-probs in the step: a PPO ratio against them is 1 and
its clip does nothing. The distribution the tokens were really drawn from is the engine's,
and it differs from the trainer's (other kernels, bf16, a remote vLLM, rollouts sampled
with weights a step or more old). So the clip's "old" policy is the behaviour policy μ, and
the surrogate's ratio is already the importance weight: its gradient is r·A·∇log π. The
clip bounds that weight from above by 1 + ε for A > 0, but for A < 0 the unclipped branch
stays selected for every r > 1 − ε, and a token the sampler found far less likely than the
trainer does would get an unbounded weight. TIS caps exactly that weight at C. It is not a
second factor min(r, C) on top of the surrogate: that would count the importance weight twice
(r · min(r, C)); the separate-weight form is for setups whose clip is against the trainer's
own old log-probs, which here is a no-op. On-policy (μ = log π_θ) r = w = 1 and the loss is
the plain −A · log π_θ gradient (−A per token in value), whatever ε and C are, so C ≥ 1.
The clipped branch's value is w_t · clip(r_t)·A, constant in θ; the code reports it as
clip(r_t)·A (no w), which changes only the logged loss, never a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from agentrft.models.kv_cache import cache_kwarg
from agentrft.train.packing import can_pack, packed_hidden


@dataclass(frozen=True)
class TrainSequence:
    token_ids: list[int]  # exactly as sampled
    mask: list[int]  # 1 on model-written tokens
    advantage: float
    # the engine's log-prob of each token as it sampled it (NaN where it reported none);
    # None: not known at all, the trainer's own are used (on-policy)
    behaviour_logprobs: list[float] | None = None


@dataclass
class MicroBatch:
    input_ids_BT: torch.Tensor
    attention_BT: torch.Tensor
    targets_BT: torch.Tensor  # (B, T-1)
    loss_mask_BT: torch.Tensor  # (B, T-1), float
    advantages_B: torch.Tensor
    # (B, T-1): the engine's log-prob of each target token; NaN where unknown
    behaviour_logp_BT: torch.Tensor


def collate(seqs: list[TrainSequence], pad_id: int, device: torch.device | str = "cpu") -> MicroBatch:
    """Right-pad sequences into tensors; the ids are never re-tokenised."""
    B, T = len(seqs), max(len(s.token_ids) for s in seqs)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.float32)
    behaviour = torch.full((B, T), float("nan"), dtype=torch.float32)
    for b, s in enumerate(seqs):
        n = len(s.token_ids)
        ids[b, :n] = torch.tensor(s.token_ids)
        attn[b, :n] = 1
        mask[b, :n] = torch.tensor(s.mask, dtype=torch.float32)
        if s.behaviour_logprobs is not None:
            if len(s.behaviour_logprobs) != n:
                raise ValueError(f"{len(s.behaviour_logprobs)} behaviour log-probs for {n} tokens")
            behaviour[b, :n] = torch.tensor(s.behaviour_logprobs, dtype=torch.float32)
    return MicroBatch(
        input_ids_BT=ids.to(device), attention_BT=attn.to(device),
        targets_BT=ids[:, 1:].to(device), loss_mask_BT=mask[:, 1:].to(device),
        advantages_B=torch.tensor([s.advantage for s in seqs], dtype=torch.float32, device=device),
        behaviour_logp_BT=behaviour[:, 1:].to(device))


# Positions per output-projection chunk. A full-vocabulary fp32 row is 49,152 × 4 bytes for
# SmolLM2, so a whole batch of logits (8 × 3,000 positions) would be ~4.7 GB, plus as much
# again for log-softmax; chunks of 1,024 with recomputation in backward keep it to ~200 MB.
LOGIT_CHUNK = 1024


def token_logprobs(model, batch: MicroBatch, temperature: float = 1.0, *,
                   prefix=None, packed: bool = False) -> torch.Tensor:
    """log p(target) under logits / temperature (as sampled), (B, T-1), float32.

    Only positions with loss are computed (zeros elsewhere): a rollout is mostly prompt and
    tool output, and the output projection over the vocabulary is the largest tensor in
    training. Models whose backbone and output head we cannot split fall back to full logits.
    With `prefix` (a `SharedPrefix`), the batch holds what follows that prefix in each sequence.
    With `packed` (and a backbone that `can_pack`), the sequences run as one row, no padding."""
    split = backbone_and_head(model)
    if split is None:
        assert prefix is None, "a shared prefix needs a model split into backbone and head"
        logits = model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT).logits[:, :-1]
        return _logprobs_of(logits, batch.targets_BT, temperature) * batch.loss_mask_BT
    backbone, head = split
    b_idx, t_idx = batch.loss_mask_BT.nonzero(as_tuple=True)
    # One sequence gains nothing from packing, and unpadded without a prefix it needs no mask at
    # all (sdpa's causal kernels).
    if packed and len(batch.input_ids_BT) > 1 and can_pack(backbone):
        hidden_ND, index_BT = packed_hidden(backbone, batch.input_ids_BT,
                                            batch.attention_BT.sum(1).tolist(), prefix)
        hidden_ND = hidden_ND[index_BT[b_idx, t_idx]]
    else:
        hidden_ND = _padded_hidden(backbone, batch, prefix)[b_idx, t_idx]
    targets_N = batch.targets_BT[b_idx, t_idx]
    chunks = []
    for i in range(0, len(targets_N), LOGIT_CHUNK):
        h, t = hidden_ND[i:i + LOGIT_CHUNK], targets_N[i:i + LOGIT_CHUNK]
        # Chunks after the first recompute their logits in backward instead of keeping them;
        # the first is kept (~200 MB), which spares the recompute (~5% of a step) in the common
        # micro-batch with at most LOGIT_CHUNK positions to train.
        if torch.is_grad_enabled() and i > 0:
            chunks.append(checkpoint(_head_logprobs, head, h, t, temperature, use_reentrant=False))
        else:
            chunks.append(_head_logprobs(head, h, t, temperature))
    out = torch.zeros(batch.targets_BT.shape, dtype=torch.float32, device=hidden_ND.device)
    if not chunks:
        return out
    return out.index_put((b_idx, t_idx), torch.cat(chunks))


def _padded_hidden(backbone, batch: MicroBatch, prefix) -> torch.Tensor:
    """Last hidden states (B, T, D) of the right-padded batch."""
    if prefix is None:
        return backbone(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT,
                        use_cache=False).last_hidden_state
    B, T = batch.input_ids_BT.shape
    attn = torch.cat([batch.attention_BT.new_ones((B, prefix.length)), batch.attention_BT], 1)
    positions = torch.arange(prefix.length, prefix.length + T, device=attn.device).expand(B, T)
    return backbone(input_ids=batch.input_ids_BT, attention_mask=attn, position_ids=positions,
                    use_cache=True, **cache_kwarg(prefix.cache_for(B))).last_hidden_state


def backbone_and_head(model):
    """(decoder returning last_hidden_state, output projection) of a causal LM, through a
    peft wrapper; None when the model is not built that way."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(base, "model", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if not isinstance(backbone, torch.nn.Module) or head is None:
        return None
    return backbone, head


def _head_logprobs(head, hidden_ND, targets_N, temperature: float) -> torch.Tensor:
    return _logprobs_of(head(hidden_ND), targets_N, temperature)


def _logprobs_of(logits, targets, temperature: float) -> torch.Tensor:
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logits = logits.float()
    return logits.gather(-1, targets[..., None])[..., 0] - torch.logsumexp(logits, -1)


# exp(20) ≈ 5e8: far past any cap or clip, finite in fp32 and in a squared gradient norm
MAX_LOG_RATIO = 20.0


def policy_loss_sum(logp_BT: torch.Tensor, behaviour_logp_BT: torch.Tensor, batch: MicroBatch, *,
                    clip_epsilon: float, tis_cap: float | None = None,
                    ref_logp_BT: torch.Tensor | None = None,
                    kl_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over model-written tokens of the clipped, truncated-IS surrogate loss of the module
    docstring (+ KL); divide by the step's total token count outside, so every token weighs the
    same across micro-batches. `behaviour_logp_BT` is NaN where the engine reported no log-prob
    (those tokens train on-policy); `tis_cap` None or 0: no cap.

    Stats are sums over model-written tokens, to be pooled across micro-batches:
    `clip_fraction_sum` (clipped branch taken), `is_capped_sum` (the weight cut to C),
    `behaviour_n` (tokens with a behaviour log-prob), and over those: `is_ratio_sum`,
    `is_ratio_max`, `mismatch_sum` (|log π_θ − μ|)."""
    mask_BT = batch.loss_mask_BT
    trained_BT = mask_BT > 0
    known_BT = ~torch.isnan(behaviour_logp_BT) & trained_BT
    logp_d = logp_BT.detach()
    behaviour_BT = torch.where(known_BT, behaviour_logp_BT, logp_d)  # NaN never reaches the loss
    adv_BT = batch.advantages_B[:, None]
    # r_t, detached: it decides the branch and the weight. Its log is bounded so that a token the
    # engine called (nearly) impossible gives a huge, not an infinite, ratio (inf × 0 = NaN).
    ratio_d = torch.exp(torch.clamp(logp_d - behaviour_BT, max=MAX_LOG_RATIO))
    clipped_BT = torch.clamp(ratio_d, 1 - clip_epsilon, 1 + clip_epsilon) * adv_BT
    is_clipped_BT = (clipped_BT < ratio_d * adv_BT) & trained_BT
    weight_d = torch.clamp(ratio_d, max=tis_cap) if tis_cap else ratio_d  # min(r_t, C)
    # w_t · r_t · A as a function of θ: value min(r_t, C)·A, gradient min(r_t, C)·A·∇log π_θ
    # (the module docstring's form, computed without the r_t / r_t that overflows)
    unclipped_BT = weight_d * torch.exp(logp_BT - logp_d) * adv_BT
    loss_BT = -torch.where(is_clipped_BT, clipped_BT, unclipped_BT)
    is_capped_BT = (ratio_d > tis_cap) & ~is_clipped_BT & trained_BT if tis_cap else \
        torch.zeros_like(trained_BT)
    known_ratio = ratio_d[known_BT]
    stats = {"clip_fraction_sum": float(is_clipped_BT.sum()),
             "is_capped_sum": float(is_capped_BT.sum()),
             "behaviour_n": float(known_BT.sum()),
             "is_ratio_sum": float(known_ratio.sum()),
             "is_ratio_max": float(known_ratio.max()) if known_ratio.numel() else float("nan"),
             "mismatch_sum": float((logp_d - behaviour_BT).abs()[known_BT].sum())}
    if ref_logp_BT is not None and kl_coef > 0:
        delta = ref_logp_BT - logp_BT  # k3 estimator of KL(policy || reference), always >= 0
        kl_BT = torch.exp(delta) - delta - 1
        loss_BT = loss_BT + kl_coef * kl_BT
        stats["kl_sum"] = float((kl_BT.detach() * mask_BT).sum())
    return (loss_BT * mask_BT).sum(), stats
