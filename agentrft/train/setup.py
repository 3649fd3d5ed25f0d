"""Everything checked and built before a job's first rollout: datasets, grader, tools.

`validate_job` is the `validating_files` stage: every dataset line, the grader config and
the tool declarations are checked, and every tool server is asked to answer, so that a bad
input fails in seconds with a message naming file, line and field, never as a hung job.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from agentrft.engines.base import SamplingParams
from agentrft.engines.base import Engine
from agentrft.engines.build import build_engine, check_engine
from agentrft.errors import SpecError
from agentrft.graders.base import Grader
from agentrft.models.chat import ChatRenderer
from agentrft.models.structured import read_format
from agentrft.engines.batcher import BatchingSampler
from agentrft.rollout.loop import RolloutEnv
from agentrft.graders.build import build_grader
from agentrft.spec.dataset import DatasetRow, load_dataset
from agentrft.spec.job import JobSpec, ToolDecl
from agentrft.tools.base import ToolClient
from agentrft.tools.http import HttpTool
from agentrft.tools.python_tool import PythonTool
from agentrft.train.policy import Policy

GRADER_FIELD = "method.reinforcement.grader"


def _refield(e: SpecError, field: str) -> SpecError:
    """The same error, located at `field` of the job file instead of the component's own name."""
    message = str(e)
    if e.field and message.startswith(f"{e.field}: "):
        message = message[len(e.field) + 2:]
    return SpecError(message, field=field)


@dataclass
class ValidatedJob:
    job: JobSpec
    train_rows: list[DatasetRow]
    valid_rows: list[DatasetRow]
    grader: Grader


def import_roots(job_file: str | Path | None = None) -> None:
    """Let `package.module:function` targets resolve against the working directory and the
    job file's folder, as a user running `agentrft train` there would expect."""
    for root in [Path.cwd()] + ([Path(job_file).resolve().parent] if job_file else []):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))


def build_tools(decls: list[ToolDecl]) -> dict[str, ToolClient]:
    tools: dict[str, ToolClient] = {}
    pools: dict[str, object] = {}  # sandboxed tools with the same settings share a pool
    for i, d in enumerate(decls):
        field = f"method.reinforcement.tools[{i}]"
        if d.sandbox is not None:
            from agentrft.tools.shell_tools import build_sandbox_tool
            tools[d.name] = build_sandbox_tool(d, pools)
        elif d.server_url is not None:
            tools[d.name] = HttpTool(d.name, d.server_url, headers=d.headers, timeout_s=d.timeout_s)
        elif d.python is not None:
            try:
                tools[d.name] = PythonTool(d.name, d.python)
            except SpecError as e:
                raise _refield(e, f"{field}.python") from None
        else:  # an MCP server: each tool it lists becomes a tool of the job
            from agentrft.tools.mcp_tool import mcp_tools_for

            others = set(tools) | {x.name for x in decls if x is not d}
            tools.update({t.name: t for t in mcp_tools_for(d, field, others)})
    return tools


def build_job_grader(job: JobSpec) -> Grader:
    try:
        return build_grader(job.rl.grader)
    except SpecError as e:
        field = GRADER_FIELD + (e.field[len("grader"):] if e.field and e.field.startswith("grader")
                                else "")
        raise _refield(e, field) from None


def _check_row_tools(rows: list[DatasetRow], path: str, tool_names: set[str]) -> None:
    """A row may only describe tools the job can actually call."""
    with open(path, encoding="utf-8") as f:
        lines = [i + 1 for i, text in enumerate(f) if text.strip()]
    for row, line in zip(rows, lines):
        for t in row.tools:
            if t.function.name not in tool_names:
                raise SpecError(f"row describes tool {t.function.name!r}, which the job does not "
                                f"declare in method.reinforcement.tools (declared: "
                                f"{', '.join(sorted(tool_names)) or 'none'})",
                                file=path, line=line, field="tools")


def _check_tool_targets(decls: list[ToolDecl]) -> None:
    """Python tools import now, so a typo in a target is a validation error."""
    for i, d in enumerate(decls):
        if d.python is not None:
            try:
                PythonTool(d.name, d.python)
            except SpecError as e:
                raise _refield(e, f"method.reinforcement.tools[{i}].python") from None
        elif d.mcp is not None:
            from agentrft.tools.mcp_tool import parse_mcp_config

            parse_mcp_config(d.mcp, f"method.reinforcement.tools[{i}].mcp")


def validate_job(job: JobSpec) -> ValidatedJob:
    grader = build_job_grader(job)
    _check_tool_targets(job.rl.tools)
    check_engine(job)
    names = {t.name for t in job.rl.tools}
    if any(t.mcp is not None for t in job.rl.tools):  # rows may describe the servers' tools
        from agentrft.tools.mcp_tool import mcp_tool_names

        names |= mcp_tool_names(job.rl.tools)
    train_rows = load_dataset(job.training_file)
    _check_row_tools(train_rows, job.training_file, names)
    valid_rows: list[DatasetRow] = []
    if job.validation_file:
        valid_rows = load_dataset(job.validation_file)
        _check_row_tools(valid_rows, job.validation_file, names)
    if any(t.sandbox is not None for t in job.rl.tools):
        from agentrft.tools.shell_tools import check_workspaces
        check_workspaces(job.rl.tools, [(job.training_file, train_rows),
                                        (job.validation_file, valid_rows)])
    return ValidatedJob(job, train_rows, valid_rows, grader)


async def preflight(tools: dict[str, ToolClient]) -> None:
    """Every tool answers before training starts (raises ToolUnreachable otherwise)."""
    await asyncio.gather(*(t.check() for t in tools.values()))


@asynccontextmanager
async def open_tools(decls: list[ToolDecl]) -> AsyncIterator[dict[str, ToolClient]]:
    """A job's tool clients, each of which has answered (`preflight`), closed on the way out
    whatever happens: HTTP pools, MCP sessions, sandboxes. Train, eval and the jobs service's
    validation all hold their tools this way."""
    tools = build_tools(decls)
    try:
        await preflight(tools)
        yield tools
    finally:
        for t in tools.values():
            await t.aclose()


def build_env(job: JobSpec, model, tokenizer, tools: dict[str, ToolClient], grader: Grader, *,
              device: str) -> tuple[RolloutEnv, Engine]:
    """The rollout environment for a model: engine, batching sampler, chat rendering, budgets."""
    hp = job.hp
    renderer = ChatRenderer(tokenizer)
    engine = build_engine(job, model, tokenizer, device=device)  # in-process unless spec'd remote
    params = SamplingParams(temperature=hp.temperature, top_p=hp.top_p,
                            max_new_tokens=hp.max_new_tokens, stop_token_ids=renderer.stop_token_ids)
    env = RolloutEnv(sampler=BatchingSampler(engine), renderer=renderer, tools=tools, params=params,
                     max_episode_steps=job.rl.max_episode_steps,
                     max_rollout_tokens=hp.max_rollout_tokens, grader=grader,
                     answer_format=read_format(job.rl.response_format, param="response_format"))
    return env, engine


def build_policy(job: JobSpec, *, device: str, ray: str | None = None):
    """The policy a job trains: this process (`training.strategy: single`), or a
    `DistributedPolicy` over `training.world_size` ranks, on Ray actors when `ray` is given."""
    if job.rl.training.strategy == "single":
        return Policy(job.model, job.hp, device=device)
    from agentrft.train.distributed import DistributedPolicy

    return DistributedPolicy(job, device=device, ray=ray)
