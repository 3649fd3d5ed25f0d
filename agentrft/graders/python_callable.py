"""`python` grader backed by an importable function: `"package.module:function"`.

The function is `grade(sample: dict, item: dict) -> float`, sync or async. It may also
return `{"reward": float, "sub_rewards": {name: float}}` to report partial scores.

It runs in this process, unsandboxed: it is the user's own trusted code, imported the way
a tool's `python:` target is. (Sandboxed `source` graders come with the full grader set.)
A sync function runs in a worker thread so that a slow grader does not stall the event
loop that drives the other rollouts.

Outcomes:
- a number in [0, 1] (bool and int included): the reward;
- a finite number outside [0, 1]: clipped; the raw value stays in `metadata.scores.raw`
  (recorded for every result, so a dashboard can spot a grader that keeps clipping);
- an exception, NaN/inf, or anything that is not a number: `GraderInfraFailure`. The loop
  discards the rollout and counts it; a buggy grader must never silently score 0.

Example::

    PythonCallableGrader(name="exact", target="my_env.graders:grade")
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
import numbers
import time
import traceback
from typing import Any, Callable

from agentrft.errors import GraderInfraFailure, SpecError
from agentrft.graders.base import Grader, GraderResult
from agentrft.graders.config import GraderConfig

class PythonCallableConfig(GraderConfig):
    """`{"type": "python", "name", "callable": "package.module:function"}`."""

    name: str
    callable: str


GradeFn = Callable[[dict[str, Any], dict[str, Any]], Any]
_DICT_KEYS = {"reward", "sub_rewards"}


def import_callable(target: str, *, field: str = "grader.callable") -> Callable[..., Any]:
    """Import `"package.module:function"`; a bad path is a SpecError naming it."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SpecError(f"{target!r} is not of the form 'package.module:function'", field=field)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is the spec's problem, reported where
        raise SpecError(f"cannot import {target!r}: {_last_line(exc)}", field=field) from exc
    fn: Any = module
    for part in attr.split("."):  # allows "module:Class.method"
        if not hasattr(fn, part):
            raise SpecError(f"cannot import {target!r}: {module_name} has no attribute {attr!r}",
                            field=field)
        fn = getattr(fn, part)
    if not callable(fn):
        raise SpecError(f"{target!r} is not callable", field=field)
    return fn


class PythonCallableGrader(Grader):
    type = "python"

    def __init__(self, name: str, target: str | GradeFn):
        self.name = name
        self.target = target if isinstance(target, str) else _qualname(target)
        self.fn: GradeFn = import_callable(target) if isinstance(target, str) else target

    async def grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str) -> GraderResult:
        start = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(self.fn):
                out = await self.fn(sample, item)
            else:
                out = await asyncio.to_thread(self.fn, sample, item)
                if inspect.isawaitable(out):  # e.g. an object with an async __call__
                    out = await out
        except Exception as exc:
            raise GraderInfraFailure(
                f"python grader {self.name!r} ({self.target}) raised {_last_line(exc)} "
                f"[trace_id={trace_id}]") from exc

        raw, sub_rewards = self._parse(out, trace_id)
        return GraderResult.make(min(1.0, max(0.0, raw)), name=self.name, type=self.type,
                                 execution_time=time.perf_counter() - start,
                                 scores={"raw": raw}, sub_rewards=sub_rewards)

    def _parse(self, out: Any, trace_id: str) -> tuple[float, dict[str, float]]:
        """The return value as (raw reward, sub_rewards); anything else is an infra failure."""
        if isinstance(out, dict):
            unknown = set(out) - _DICT_KEYS
            if unknown or "reward" not in out:
                self._fail(f"returned a dict with keys {sorted(out)}; expected 'reward' and "
                           f"optionally 'sub_rewards'", trace_id)
            subs = out.get("sub_rewards") or {}
            if not isinstance(subs, dict):
                self._fail(f"returned sub_rewards of type {type(subs).__name__}; expected a dict",
                           trace_id)
            return (self._number(out["reward"], "reward", trace_id),
                    {str(k): self._number(v, f"sub_rewards[{k!r}]", trace_id)
                     for k, v in subs.items()})
        return self._number(out, "the return value", trace_id), {}

    def _number(self, value: Any, what: str, trace_id: str) -> float:
        if not isinstance(value, numbers.Real):  # bool and numpy scalars are Real; str is not
            self._fail(f"returned {what} of type {type(value).__name__} ({value!r:.80}); "
                       f"expected a number", trace_id)
        number = float(value)
        if not math.isfinite(number):
            self._fail(f"returned {what} = {number}; expected a finite number", trace_id)
        return number

    def _fail(self, reason: str, trace_id: str) -> None:
        raise GraderInfraFailure(
            f"python grader {self.name!r} ({self.target}) {reason} [trace_id={trace_id}]")


def _last_line(exc: BaseException) -> str:
    """`ValueError: boom`: the last line of the traceback, what a person reads first."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _qualname(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', repr(fn))}"
