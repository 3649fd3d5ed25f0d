"""`PythonTool`: a tool that is a plain Python function, for tools that need no server.

The function receives the parsed arguments and a `ToolContext`, and returns the output::

    # mypkg/tools.py
    def lookup(arguments: dict, context: ToolContext) -> str:
        if arguments["key"] not in TABLE:
            raise ToolCallError(f"no such key: {arguments['key']}")   # the model sees this
        return TABLE[arguments["key"]]

    tool = PythonTool("lookup", "mypkg.tools:lookup")

Whose fault a failure is decides what happens (DESIGN.md, tool rules):
`ValueError`, `TypeError`, `KeyError` and `ToolCallError` mean the model called the tool
wrong, so the model sees `Error: <type>: <message>`; any other exception is a bug or an
outage, so `ToolInfraFailure` is raised and the rollout is discarded, never scored 0.

Sync functions run in a worker thread so a slow one does not stall other rollouts;
async functions are awaited on the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import importlib
import inspect
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from agentrft.errors import SpecError, ToolInfraFailure
from agentrft.tools.base import ToolCallRequest, ToolClient, ToolOutcome


@dataclass(frozen=True)
class ToolContext:
    """What a tool function may know about the call besides its arguments."""

    trace_id: str  # one per rollout, the same on every tool call and the grader call
    call_id: str
    item: dict[str, Any]  # the dataset row without messages/tools (a copy: mutate freely)


class ToolCallError(Exception):
    """Raise from a tool function to show the model an error (it called the tool wrong)."""


MODEL_ERRORS = (ValueError, TypeError, KeyError, ToolCallError)


class PythonTool(ToolClient):
    """Calls `target` ("package.module:function", or the callable itself) once per tool call."""

    def __init__(self, name: str, target: str | Callable[..., Any]):
        self.name = name
        self.target = target if isinstance(target, str) else _qualname(target)
        self._fn = _resolve(name, target) if isinstance(target, str) else target
        if not callable(self._fn):
            raise SpecError(f"{self.target!r} is not callable", field=f"tools.{name}.python")

    async def call(self, request: ToolCallRequest) -> ToolOutcome:
        start = time.perf_counter()

        def done(output: str, is_error: bool = False) -> ToolOutcome:
            return ToolOutcome(output=output, is_error=is_error,
                               latency_s=time.perf_counter() - start)

        try:
            arguments = json.loads(request.arguments)
        except ValueError as exc:
            return done(f"Error: arguments are not valid JSON: {exc}", is_error=True)
        if not isinstance(arguments, dict):
            return done(f"Error: arguments must be a JSON object, got {type(arguments).__name__}",
                        is_error=True)
        # A copy, because rollouts of one group share the item and a tool must not leak state.
        context = ToolContext(trace_id=request.trace_id, call_id=request.call_id,
                              item=copy.deepcopy(request.item))
        try:
            result = await self._invoke(arguments, context)
        except MODEL_ERRORS as exc:
            return done(f"Error: {type(exc).__name__}: {exc}", is_error=True)
        except Exception as exc:
            raise ToolInfraFailure(f"tool '{self.name}' ({self.target}) raised "
                                   f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(result, str):
            result = json.dumps(result, ensure_ascii=False, default=str)
        return done(result)

    async def _invoke(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        fn = self._fn
        if _is_async(fn):
            return await fn(arguments, context)
        result = await asyncio.to_thread(fn, arguments, context)
        if inspect.isawaitable(result):  # a sync wrapper that returned a coroutine
            result = await result
        return result


def _resolve(name: str, target: str) -> Callable[..., Any]:
    """Import "package.module:function" (the part after ':' may be dotted: "mod:Cls.method")."""
    field = f"tools.{name}.python"
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise SpecError(f"{target!r} is not of the form 'package.module:function'", field=field)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a module that fails at import time is a spec problem too
        raise SpecError(f"cannot import module {module_name!r} for {target!r}: "
                        f"{type(exc).__name__}: {exc}", field=field) from exc
    try:
        return functools.reduce(getattr, attr_path.split("."), module)
    except AttributeError:
        raise SpecError(f"module {module_name!r} has no attribute {attr_path!r} "
                        f"(target {target!r})", field=field) from None


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))


def _qualname(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', type(fn).__qualname__)}"
