"""`PythonTool`: import paths, sync and async functions, and whose fault an error is."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import threading
import time

import pytest

from agentrft.errors import SpecError, ToolInfraFailure
from agentrft.tools.base import ToolCallRequest
from agentrft.tools.python_tool import PythonTool, ToolCallError, ToolContext

TABLE = {"revenue": "42"}
SEEN: list[tuple[dict, ToolContext, int]] = []  # (arguments, context, thread id) per call


def sync_lookup(arguments: dict, context: ToolContext) -> str:
    SEEN.append((arguments, context, threading.get_ident()))
    return TABLE[arguments["key"]]  # an unknown key is a KeyError: the model's fault


async def async_lookup(arguments: dict, context: ToolContext) -> str:
    SEEN.append((arguments, context, threading.get_ident()))
    await asyncio.sleep(0)
    return TABLE[arguments["key"]]


class Tools:
    @staticmethod
    def shout(arguments: dict, context: ToolContext) -> str:
        return arguments["text"].upper()


class AsyncCallable:
    async def __call__(self, arguments: dict, context: ToolContext) -> str:
        return "from __call__"


def req(arguments: dict | str = "{}", **item) -> ToolCallRequest:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCallRequest(id="fc_1", call_id="call_7", name="lookup", arguments=args,
                           trace_id="trace_abc", item=item)


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()


# -- running functions ---------------------------------------------------------------

async def test_sync_function_by_import_path_runs_in_a_worker_thread():
    tool = PythonTool("lookup", f"{__name__}:sync_lookup")
    out = await tool.call(req({"key": "revenue"}))
    assert (out.output, out.is_error, out.status_code) == ("42", False, None)
    assert out.latency_s > 0
    assert SEEN[0][2] != threading.get_ident()  # did not block the event loop


async def test_async_function_is_awaited_on_the_event_loop():
    out = await PythonTool("lookup", f"{__name__}:async_lookup").call(req({"key": "revenue"}))
    assert out.output == "42" and SEEN[0][2] == threading.get_ident()


async def test_callables_can_be_passed_directly():
    assert (await PythonTool("t", AsyncCallable()).call(req())).output == "from __call__"
    assert (await PythonTool("t", lambda a, c: a["x"] * 2).call(req({"x": 21}))).output == "42"


async def test_slow_sync_calls_run_concurrently():
    tool = PythonTool("sleepy", lambda a, c: time.sleep(0.2) or "done")
    start = time.monotonic()
    outs = await asyncio.gather(tool.call(req()), tool.call(req()))
    assert [o.output for o in outs] == ["done", "done"]
    assert time.monotonic() - start < 0.35


async def test_context_carries_trace_call_and_a_copy_of_the_item():
    request = req({"key": "revenue"}, reference_answer="42", meta={"tags": ["a"]})
    await PythonTool("lookup", sync_lookup).call(request)
    arguments, context, _ = SEEN[0]
    assert arguments == {"key": "revenue"}
    assert context == ToolContext(trace_id="trace_abc", call_id="call_7",
                                  item={"reference_answer": "42", "meta": {"tags": ["a"]}})
    context.item["meta"]["tags"].append("mutated")  # must not leak into the shared item
    assert request.item["meta"] == {"tags": ["a"]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.trace_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("value, expected", [
    ({"rows": [1, 2]}, '{"rows": [1, 2]}'),
    ([1, "é"], '[1, "é"]'),
    (3.5, "3.5"),
    (None, "null"),
    ({"when": datetime.date(2024, 1, 2)}, '{"when": "2024-01-02"}'),  # str() fallback
])
async def test_non_string_returns_are_json_encoded(value, expected):
    out = await PythonTool("t", lambda a, c: value).call(req())
    assert out.output == expected and not out.is_error


# -- model-visible errors ------------------------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    ("{not json", "Error: arguments are not valid JSON: "),
    ("[1, 2]", "Error: arguments must be a JSON object, got list"),
    ('"text"', "Error: arguments must be a JSON object, got str"),
])
async def test_bad_arguments_are_shown_to_the_model(arguments, message):
    out = await PythonTool("lookup", sync_lookup).call(req(arguments))
    assert out.is_error and out.output.startswith(message)
    assert SEEN == []  # the function never ran


@pytest.mark.parametrize("exc, expected", [
    (ValueError("year must be >= 2000"), "Error: ValueError: year must be >= 2000"),
    (TypeError("key must be a string"), "Error: TypeError: key must be a string"),
    (KeyError("revenue"), "Error: KeyError: 'revenue'"),
    (ToolCallError("no such report"), "Error: ToolCallError: no such report"),
    (json.JSONDecodeError("bad", "x", 0), "Error: JSONDecodeError: bad: line 1 column 1 (char 0)"),
])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_model_errors_become_error_outputs(exc, expected, kind):
    def sync_fn(a, c):
        raise exc

    async def async_fn(a, c):
        raise exc

    out = await PythonTool("t", sync_fn if kind == "sync" else async_fn).call(req())
    assert out.is_error and out.output == expected


async def test_unknown_key_from_a_real_tool_is_a_model_error():
    out = await PythonTool("lookup", f"{__name__}:sync_lookup").call(req({"key": "ceo"}))
    assert out.is_error and out.output == "Error: KeyError: 'ceo'"


@pytest.mark.parametrize("exc", [RuntimeError("db down"), ZeroDivisionError("oops"),
                                 OSError("disk full")])
async def test_other_exceptions_are_infra_failures(exc):
    def broken(a, c):
        raise exc

    with pytest.raises(ToolInfraFailure) as err:
        await PythonTool("calc", broken).call(req())
    assert "tool 'calc'" in str(err.value) and f"{type(exc).__name__}: {exc}" in str(err.value)
    assert err.value.__cause__ is exc


# -- import paths --------------------------------------------------------------------

@pytest.mark.parametrize("target, words", [
    ("no_colon_here", "is not of the form 'package.module:function'"),
    ("json:", "is not of the form"),
    ("agentrft_no_such_module_xyz:run", "cannot import module 'agentrft_no_such_module_xyz'"),
    ("json:no_such_function", "module 'json' has no attribute 'no_such_function'"),
    ("json:__doc__", "is not callable"),
])
def test_bad_import_path_is_a_spec_error_naming_the_target(target, words):
    with pytest.raises(SpecError) as err:
        PythonTool("calc", target)
    assert err.value.field == "tools.calc.python"
    assert words in str(err.value) and str(err.value).startswith("tools.calc.python: ")
    assert repr(target) in str(err.value) or target in str(err.value)


def test_module_failing_at_import_time_is_a_spec_error(tmp_path, monkeypatch):
    (tmp_path / "agentrft_broken_tool_mod.py").write_text("raise RuntimeError('needs API_KEY')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SpecError, match="RuntimeError: needs API_KEY"):
        PythonTool("calc", "agentrft_broken_tool_mod:run")


async def test_dotted_attribute_after_the_colon():
    tool = PythonTool("shout", f"{__name__}:Tools.shout")
    assert (await tool.call(req({"text": "hi"}))).output == "HI"
