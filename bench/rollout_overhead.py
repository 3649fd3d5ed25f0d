"""How much of rollout wall time is spent outside the engine and outside tools, on CPU.

Runs one batch of rollouts with `run_rollouts` on the bundled SmolLM2-135M-Instruct
(`TransformersEngine` behind a `BatchingSampler`, `ChatRenderer`), on the lookup task's
validation rows (`examples.lookup.task.make_rows`), grouped G rollouts per row, with the
`lookup` tool served over real HTTP on loopback (a FastAPI app run by uvicorn in a
background thread of this process, called through `HttpTool`); `--tools http,python` adds
a second run with the same tool as a `PythonTool`.

How it measures, without touching library code: the engine is wrapped in an `Engine` that
records the (start, end) of every `generate` call, and each tool in a `ToolClient` that
records the (start, end) of every `call`. Wall time is the `run_rollouts` call. Tool calls
overlap one another and may overlap an engine batch, so "busy" time is the length of the
union of those intervals, and

    overhead = wall - |union(engine intervals, tool intervals)|

is everything else: rendering, tokenising, parsing tool calls, the batcher's gathering
window, thread hand-offs, event-loop scheduling, and grading (the lookup task's Python
grader runs inside each rollout, so its time counts as overhead too). The goal is < 10%.

The baseline is the engine + tools busy time measured in the same run. One plain
`TransformersEngine.generate` over all first-turn prompts would not be a fair baseline: it
produces different completions, no second turns, and no tool calls.

    .venv/bin/python bench/rollout_overhead.py                      # 48 rollouts, HTTP tool
    .venv/bin/python bench/rollout_overhead.py --tools http,python  # and again with a PythonTool
    .venv/bin/python bench/rollout_overhead.py --rows 6 --group 2 --max-new-tokens 20

On a 2-core CPU the default takes about two minutes. Other load on the machine slows the
engine and the event loop alike, so note it next to any figure you quote.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `examples` lives at the repo root

import torch  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, Response  # noqa: E402

from agentrft.engines.base import Completion, Engine, SamplingParams  # noqa: E402
from agentrft.engines.transformers_engine import TransformersEngine  # noqa: E402
from agentrft.graders.python_callable import PythonCallableGrader  # noqa: E402
from agentrft.loopback import LoopbackServer  # noqa: E402
from agentrft.models.chat import ChatRenderer  # noqa: E402
from agentrft.models.loading import load_model, load_tokenizer  # noqa: E402
from agentrft.engines.batcher import BatchingSampler  # noqa: E402
from agentrft.rollout.loop import RolloutEnv, run_rollouts  # noqa: E402
from agentrft.spec.dataset import DatasetRow  # noqa: E402
from agentrft.tools.base import ToolCallRequest, ToolClient, ToolOutcome  # noqa: E402
from agentrft.tools.http import HttpTool  # noqa: E402
from agentrft.tools.python_tool import PythonTool  # noqa: E402
from examples.lookup import task  # noqa: E402

MODEL = "bundled:smollm2-135m-instruct"
Interval = tuple[float, float]  # (start, end) in time.perf_counter() seconds


# -- instrumentation -------------------------------------------------------------------

class TimedEngine(Engine):
    """Records each `generate` call's interval and how many tokens it sampled."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.intervals: list[Interval] = []
        self.tokens = 0

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        t0 = time.perf_counter()
        try:
            outs = self.inner.generate(prompts, params)
        finally:
            self.intervals.append((t0, time.perf_counter()))
        self.tokens += sum(len(c.token_ids) for c in outs)
        return outs

    def reset(self) -> None:
        self.intervals, self.tokens = [], 0


class TimedTool(ToolClient):
    """Records each `call`'s interval into a list shared by all tools of a run."""

    def __init__(self, inner: ToolClient, intervals: list[Interval]):
        self.inner = inner
        self.name = inner.name
        self.intervals = intervals

    async def call(self, request: ToolCallRequest) -> ToolOutcome:
        t0 = time.perf_counter()
        try:
            return await self.inner.call(request)
        finally:
            self.intervals.append((t0, time.perf_counter()))

    async def check(self) -> None:
        await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()


def union_length(intervals: list[Interval]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


# -- the lookup tool over HTTP on loopback ---------------------------------------------

def lookup_app() -> FastAPI:
    """The lookup tool in the DESIGN.md wire format; a name it does not know is a 400."""
    app = FastAPI()

    @app.post("/lookup")
    async def lookup(request: Request) -> Response:
        body = await request.json()
        try:
            output = task.lookup(json.loads(body["arguments"]), None)
        except ValueError as e:
            return PlainTextResponse(str(e), status_code=400)
        return JSONResponse({"output": output})

    return app


# -- one measured run -------------------------------------------------------------------

async def measure(label: str, tool: ToolClient, engine: TimedEngine, renderer: ChatRenderer,
                  rows: list[tuple[int, DatasetRow]], params: SamplingParams,
                  max_episode_steps: int) -> dict:
    tool_intervals: list[Interval] = []
    timed_tool = TimedTool(tool, tool_intervals)
    await timed_tool.check()
    sampler = BatchingSampler(engine)
    env = RolloutEnv(sampler=sampler, renderer=renderer, tools={tool.name: timed_tool},
                     params=params, max_episode_steps=max_episode_steps, max_rollout_tokens=4096,
                     grader=PythonCallableGrader("lookup", task.grade))
    engine.reset()
    t0 = time.perf_counter()
    rollouts = await run_rollouts(rows, env)
    wall = time.perf_counter() - t0
    await timed_tool.aclose()

    engine_busy = union_length(engine.intervals)
    tools_busy = union_length(tool_intervals)
    busy = union_length(engine.intervals + tool_intervals)
    statuses: dict[str, int] = {}
    for r in rollouts:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    rewards = [r.reward for r in rollouts if r.reward is not None]
    return {
        "label": label, "wall": wall, "engine": engine_busy, "tools": tools_busy, "union": busy,
        "overhead": wall - busy, "share": (wall - busy) / wall,
        "share_pct": 100 * (wall - busy) / wall, "batches": len(engine.intervals),
        "tool_calls": len(tool_intervals), "rollouts": len(rollouts),
        "rollouts_per_s": len(rollouts) / wall, "tokens": engine.tokens,
        "tokens_per_s": engine.tokens / wall, "statuses": statuses,
        "mean_reward": sum(rewards) / len(rewards) if rewards else float("nan"),
    }


def print_table(results: list[dict]) -> None:
    rows = [
        ("wall s", "wall", "{:.2f}"), ("engine busy s", "engine", "{:.2f}"),
        ("tools busy s", "tools", "{:.3f}"), ("union s", "union", "{:.2f}"),
        ("overhead s", "overhead", "{:.2f}"), ("overhead share %", "share_pct", "{:.1f}"),
        ("engine batches", "batches", "{}"), ("tool calls", "tool_calls", "{}"),
        ("rollouts", "rollouts", "{}"), ("rollouts/s", "rollouts_per_s", "{:.2f}"),
        ("generated tokens", "tokens", "{}"), ("generated tokens/s", "tokens_per_s", "{:.1f}"),
        ("mean reward", "mean_reward", "{:.3f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}}  " + "  ".join(f"{r['label']:>12}" for r in results))
    for title, key, fmt in rows:
        print(f"{title:<{width}}  " + "  ".join(f"{fmt.format(r[key]):>12}" for r in results))
    for r in results:
        print(f"statuses ({r['label']}): {r['statuses']}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


async def main_async(args: argparse.Namespace) -> list[dict]:
    tok = load_tokenizer(MODEL)
    model = load_model(MODEL, device="cpu")
    renderer = ChatRenderer(tok)
    engine = TimedEngine(TransformersEngine(model, pad_token_id=tok.pad_token_id, device="cpu",
                                            seed=args.seed))
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens,
                            stop_token_ids=renderer.stop_token_ids)
    _, valid = task.make_rows()
    if not 1 <= args.rows <= len(valid):
        raise SystemExit(f"--rows must be between 1 and {len(valid)}")
    dataset = [DatasetRow.model_validate(r) for r in valid[:args.rows]]
    rows = [(i, row) for i, row in enumerate(dataset) for _ in range(args.group)]
    # One-off costs (torch's first call, lazy imports) are not what this bench is about.
    engine.generate([[tok.eos_token_id]], SamplingParams(max_new_tokens=2))

    results = []
    for kind in args.tools.split(","):
        if kind == "http":
            # up once its POST-only route answers a GET (405)
            with LoopbackServer(lookup_app(), health_path="/lookup", name="lookup server") as server:
                results.append(await measure("http", HttpTool("lookup", server.url("lookup")), engine,
                                             renderer, rows, params, args.max_episode_steps))
        elif kind == "python":
            tool = PythonTool("lookup", "examples.lookup.task:lookup")
            results.append(await measure("python", tool, engine, renderer, rows, params,
                                         args.max_episode_steps))
        else:
            raise SystemExit(f"unknown tool kind {kind!r}; expected http and/or python")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=12, help="validation rows (at most 12)")
    p.add_argument("--group", type=int, default=4, help="rollouts per row")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--max-episode-steps", type=int, default=2)
    p.add_argument("--tools", default="http", help="comma-separated: http, python")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"device: cpu ({cpu_name()}), torch {torch.__version__}, "
          f"torch threads: {torch.get_num_threads()}")
    print(f"model: {MODEL}; {args.rows} rows x {args.group} = {args.rows * args.group} rollouts "
          f"per tool kind; temperature 1.0, max_new_tokens {args.max_new_tokens}, "
          f"max_episode_steps {args.max_episode_steps}")
    results = asyncio.run(main_async(args))
    print("baseline: engine + tools busy time measured in the same run "
          "(overhead = wall - union of engine and tool intervals; grading counts as overhead)")
    print_table(results)
    for r in results:
        print(f"overhead share ({r['label']}): {r['share']:.1%} (goal < 10%)")
    worst = max(r["share"] for r in results)
    print(f"overhead share: {worst:.1%} (goal < 10%)"
          + (" [worst of the runs]" if len(results) > 1 else ""))


if __name__ == "__main__":
    main()
