"""Templates, string_check, python callable graders and build_grader: no GPU, no network."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentrft.errors import GraderInfraFailure, SpecError
from agentrft.graders.base import DETAIL_KEYS, ERROR_KEYS, Grader, GraderResult
from agentrft.graders import build
from agentrft.graders.build import build_grader, grader_types, register_grader_type
from agentrft.graders.python_callable import PythonCallableGrader
from agentrft.graders.string_check import StringCheckGrader
from agentrft.templates import TemplateVariableError, render_template
from tests import grader_fixtures

SAMPLE = {
    "output_text": "The answer is Paris.",
    "output_json": None,
    "output_tools": [
        {"type": "function", "function": {"name": "search", "arguments": '{"q": "capital"}'}},
        {"type": "function", "function": {"name": "cat", "arguments": '{"path": "a.txt"}'}},
    ],
    "choices": [],
    "output_reasoning_summary": None,
    "trajectory": [],
}
ITEM = {"answer": "Paris", "meta": {"country": {"name": "France"}, "year": 2024},
        "aliases": ["paris", "Lutetia"]}


def assert_result_shape(result: GraderResult, name: str, type_: str) -> None:
    assert 0.0 <= result.reward <= 1.0
    meta = result.metadata
    assert {"name", "type", "errors", "execution_time", "scores", "token_usage",
            "sampled_model_name"} <= set(meta) <= {"name", "type", "errors", "execution_time",
                                                  "scores", "token_usage", "sampled_model_name",
                                                  "passed"}
    assert meta["name"] == name and meta["type"] == type_
    assert set(meta["errors"]) == set(ERROR_KEYS) | set(DETAIL_KEYS)
    assert isinstance(meta["execution_time"], float) and meta["execution_time"] >= 0.0
    assert isinstance(meta["scores"], dict)
    json.dumps(result.to_dict())  # the result travels as JSON (graders/run, events)


# --- templates -------------------------------------------------------------------------

def test_template_without_braces_is_unchanged():
    assert render_template("plain text { not a var }", SAMPLE, ITEM) == "plain text { not a var }"


def test_template_item_and_sample_variables():
    out = render_template("{{item.answer}} vs {{ sample.output_text }}", SAMPLE, ITEM)
    assert out == "Paris vs The answer is Paris."


def test_template_nested_keys_and_indices():
    assert render_template("{{item.meta.country.name}}", SAMPLE, ITEM) == "France"
    assert render_template("{{ sample.output_tools[0].function.arguments }}", SAMPLE, ITEM) \
        == '{"q": "capital"}'
    assert render_template("{{sample.output_tools[1].function.name}}", SAMPLE, ITEM) == "cat"
    assert render_template("{{item.aliases[-1]}}", SAMPLE, ITEM) == "Lutetia"


def test_template_non_strings_are_json_encoded():
    assert render_template("{{item.meta.year}}", SAMPLE, ITEM) == "2024"
    assert render_template("{{item.aliases}}", SAMPLE, ITEM) == '["paris", "Lutetia"]'
    assert render_template("{{sample.output_json}}", SAMPLE, ITEM) == "null"
    assert json.loads(render_template("{{item.meta}}", SAMPLE, ITEM)) == ITEM["meta"]


def test_template_output_is_not_expanded_again():
    sample = {**SAMPLE, "output_text": "{{item.answer}}"}
    assert render_template("{{sample.output_text}}", sample, ITEM) == "{{item.answer}}"


@pytest.mark.parametrize("template, named", [
    ("{{item.missing}}", "item.missing"),
    ("{{ item.meta.country.capital }}", "item.meta.country.capital"),
    ("{{sample.output_tools[5].function.name}}", "sample.output_tools[5].function.name"),
    ("{{item.answer[0]}}", "item.answer[0]"),
    ("{{row.answer}}", "row.answer"),
    ("{{item..answer}}", "item..answer"),
])
def test_template_unknown_variable_names_it(template, named):
    with pytest.raises(TemplateVariableError) as info:
        render_template(template, SAMPLE, ITEM)
    assert named in str(info.value)
    assert info.value.variable == named


# --- string_check ----------------------------------------------------------------------

async def check(operation: str, input: str, reference: str, sample=SAMPLE, item=ITEM) -> float:
    grader = StringCheckGrader(name="sc", input=input, reference=reference, operation=operation)
    result = await grader.grade(sample, item, "trace_test")
    assert_result_shape(result, "sc", "string_check")
    return result.reward


@pytest.mark.parametrize("operation, input, reference, expected", [
    ("eq", "{{item.answer}}", "Paris", 1.0),
    ("eq", "{{item.answer}}", "paris", 0.0),
    ("eq", "{{sample.output_text}}", "{{item.answer}}", 0.0),
    ("ne", "{{item.answer}}", "paris", 1.0),
    ("ne", "{{item.answer}}", "Paris", 0.0),
    ("like", "{{sample.output_text}}", "{{item.answer}}", 1.0),
    ("like", "{{sample.output_text}}", "PARIS", 0.0),
    ("like", "Paris", "The answer is Paris.", 0.0),  # reference in input, not the reverse
    ("ilike", "{{sample.output_text}}", "PARIS", 1.0),
    ("ilike", "{{sample.output_text}}", "{{item.aliases[0]}}", 1.0),
    ("ilike", "{{sample.output_text}}", "london", 0.0),
])
async def test_string_check_operations(operation, input, reference, expected):
    assert await check(operation, input, reference) == expected


async def test_string_check_on_tool_arguments():
    assert await check("like", "{{sample.output_tools[0].function.arguments}}", "capital") == 1.0


async def test_string_check_unknown_variable_scores_zero_with_flag():
    grader = StringCheckGrader(name="sc", input="{{sample.output_tools[9].function.name}}",
                               reference="search", operation="ne")
    result = await grader.grade(SAMPLE, ITEM, "trace_test")
    assert_result_shape(result, "sc", "string_check")
    assert result.reward == 0.0
    assert result.metadata["errors"]["invalid_variable_error"] is True
    assert not any(v for k, v in result.metadata["errors"].items() if k != "invalid_variable_error")


def test_string_check_rejects_unknown_operation():
    with pytest.raises(SpecError) as info:
        StringCheckGrader(name="sc", input="a", reference="b", operation="contains")
    assert info.value.field == "grader.operation"


# --- python callable -------------------------------------------------------------------

async def run_python(target, sample=SAMPLE, item=None) -> GraderResult:
    grader = PythonCallableGrader(name="py", target=target)
    result = await grader.grade(sample, item if item is not None else {"answer": "Paris"},
                                "trace_test")
    assert_result_shape(result, "py", "python")
    return result


async def test_python_sync_by_path():
    sample = {**SAMPLE, "output_text": " Paris "}
    assert (await run_python("tests.grader_fixtures:exact_answer", sample)).reward == 1.0
    assert (await run_python("tests.grader_fixtures:exact_answer")).reward == 0.0


async def test_python_async_by_path_and_by_object():
    sample = {**SAMPLE, "output_text": "Paris"}
    assert (await run_python("tests.grader_fixtures:async_exact_answer", sample)).reward == 1.0
    assert (await run_python(grader_fixtures.async_exact_answer, sample)).reward == 1.0
    assert (await run_python(grader_fixtures.exact_answer, sample)).reward == 1.0


async def test_python_sync_runs_off_the_event_loop():
    loop_thread = []

    def grade(sample, item):
        try:
            asyncio.get_running_loop()
            loop_thread.append(True)
        except RuntimeError:
            loop_thread.append(False)
        return 1

    assert (await run_python(grade)).reward == 1.0
    assert loop_thread == [False]


@pytest.mark.parametrize("fn, reward, raw", [
    ("too_big", 1.0, 3.5),
    ("negative", 0.0, -2.0),
    ("boolean", 1.0, 1.0),
])
async def test_python_clips_and_keeps_raw(fn, reward, raw):
    result = await run_python(f"tests.grader_fixtures:{fn}")
    assert result.reward == reward
    assert result.metadata["scores"]["raw"] == raw
    assert result.metadata["errors"]["other_error"] is False


async def test_python_dict_return_with_sub_rewards():
    result = await run_python("tests.grader_fixtures:with_sub_rewards")
    assert result.reward == 0.75
    assert result.sub_rewards == {"format": 1.0, "answer": 0.5}


@pytest.mark.parametrize("fn, says", [
    ("buggy", "KeyError: 'no_such_key'"),
    ("async_buggy", "ValueError: judge exploded"),
    ("returns_nan", "nan"),
    ("returns_text", "str"),
    ("returns_none", "NoneType"),
    ("bad_dict", "'reward'"),
])
async def test_python_failures_are_infra_failures_not_zero(fn, says):
    grader = PythonCallableGrader(name="py", target=f"tests.grader_fixtures:{fn}")
    with pytest.raises(GraderInfraFailure) as info:
        await grader.grade(SAMPLE, ITEM, "trace_abc")
    message = str(info.value)
    assert says in message and fn in message and "trace_abc" in message


@pytest.mark.parametrize("target, says", [
    ("tests.no_such_module:grade", "No module named 'tests.no_such_module'"),
    ("tests.grader_fixtures:no_such_fn", "no attribute 'no_such_fn'"),
    ("tests.grader_fixtures", "package.module:function"),
    ("tests.grader_fixtures:not_callable", "not callable"),
])
def test_python_bad_import_path_is_spec_error(target, says):
    with pytest.raises(SpecError) as info:
        PythonCallableGrader(name="py", target=target)
    assert info.value.field == "grader.callable"
    assert target in str(info.value) and says in str(info.value)


# --- build_grader ----------------------------------------------------------------------

async def test_build_string_check_and_python():
    sc = build_grader({"type": "string_check", "name": "a", "input": "{{sample.output_text}}",
                       "reference": "{{item.answer}}", "operation": "like"})
    assert isinstance(sc, StringCheckGrader)
    assert (await sc.grade(SAMPLE, ITEM, "t")).reward == 1.0
    py = build_grader({"type": "python", "name": "b",
                       "callable": "tests.grader_fixtures:with_sub_rewards"})
    assert isinstance(py, PythonCallableGrader)
    assert (await py.grade(SAMPLE, ITEM, "t")).reward == 0.75


@pytest.mark.parametrize("config, field", [
    ({"name": "a"}, "grader.type"),
    ({"type": "fuzzy", "name": "a"}, "grader.type"),
    ({"type": "string_check", "name": "a", "input": "x", "operation": "eq"}, "grader.reference"),
    ({"type": "string_check", "name": "a", "input": "x", "reference": "y", "operation": "eq",
      "refrence": "y"}, "grader.refrence"),
    ({"type": "string_check", "name": "a", "input": "x", "reference": "y", "operation": "EQ"},
     "grader.operation"),
    ({"type": "string_check", "name": "a", "input": 3, "reference": "y", "operation": "eq"},
     "grader.input"),
    ({"type": "python", "name": "a"}, "grader.callable"),
    ({"type": "python", "name": "a", "callable": "nope.nope:grade"}, "grader.callable"),
    ({"type": "python", "name": "a", "source": "def grade(s, i) return 1"}, "grader.source"),
])
def test_build_errors_name_the_field(config, field):
    with pytest.raises(SpecError) as info:
        build_grader(config)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")


async def test_python_source_and_callable_share_the_python_type():
    source = build_grader({"type": "python", "name": "a", "source": "def grade(s, i): return 0.25"})
    result = await source.grade({"output_text": "x"}, {}, "trace_t")
    assert result.reward == 0.25 and result.metadata["type"] == "python"


def test_unknown_type_lists_known_types():
    with pytest.raises(SpecError) as info:
        build_grader({"type": "fuzzy", "name": "a"})
    assert "string_check" in str(info.value) and "python" in str(info.value)


async def test_register_grader_type_like_a_plugin(monkeypatch):
    monkeypatch.setattr(build, "_FACTORIES", dict(build._FACTORIES))  # keep the registry clean

    class Constant(Grader):
        type = "constant_test"

        def __init__(self, name: str, value: float):
            self.name, self.value = name, value

        async def grade(self, sample, item, trace_id):
            return GraderResult.make(self.value, name=self.name, type=self.type)

    register_grader_type("constant_test", lambda c: Constant(c["name"], float(c["value"])))
    assert "constant_test" in grader_types()
    grader = build_grader({"type": "constant_test", "name": "c", "value": "0.25"})
    assert (await grader.grade(SAMPLE, ITEM, "t")).reward == 0.25
    with pytest.raises(ValueError):
        register_grader_type("constant_test", lambda c: Constant("x", 0.0))
