"""Fuzz: malformed grader configs, samples and items never raise out of the grader API.

Each of 1,000 generated cases either fails to build with a `SpecError` (a typed error naming
the field) or grades to a finite reward in [0, 1] with well-formed error flags. Nothing here
reaches the network: model graders get no base_url, endpoint graders only malformed configs.
"""

import asyncio
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentrft.errors import SpecError
from agentrft.graders.api import run_grader
from agentrft.graders.base import DETAIL_KEYS, ERROR_KEYS

TEMPLATE_BITS = ["{{sample.output_text}}", "{{item.answer}}", "{{item.nope}}", "{{sample}}",
                 "{{ item.a[0].b }}", "{{sample.output_tools[3].x}}", "{{", "}}", "{{}}",
                 "{{item.answer", "plain", "", "ü", "{{item.answer}}{{item.answer}}"]
template = st.lists(st.sampled_from(TEMPLATE_BITS) | st.text(max_size=8), max_size=4).map("".join)
junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
def maybe_junk(good):
    """Mostly well-typed values, sometimes junk: so that many configs build and then grade."""
    return st.one_of(good, good, good, good, junk)


string_check = st.fixed_dictionaries(
    {"type": st.just("string_check"), "name": maybe_junk(st.text(max_size=5)),
     "input": maybe_junk(template), "reference": maybe_junk(template),
     "operation": maybe_junk(st.sampled_from(["eq", "ne", "like", "ilike", "EQ", "contains"]))},
    optional={"extra": junk, "pass_threshold": junk})

text_similarity = st.fixed_dictionaries(
    {"type": st.just("text_similarity"), "name": st.text(max_size=5), "input": template,
     "reference": maybe_junk(template),
     "evaluation_metric": maybe_junk(st.sampled_from(
         ["fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_3", "rouge_5", "rouge_l",
          "cosine", "rouge_6", "rouge"]))},
    optional={"pass_threshold": st.floats() | junk})

FORMULA_BITS = ["a", "b", "+", "-", "*", "/", "^", "(", ")", "min(", "max(", "log(", "sqrt(",
                ",", "0", "1.5", "1e309", "__import__", "'", ".", "abs(", "exp(", " "]
formula = st.lists(st.sampled_from(FORMULA_BITS), max_size=12).map("".join)
multi = st.fixed_dictionaries(
    {"type": st.just("multi"), "name": st.text(max_size=5),
     "graders": st.dictionaries(st.sampled_from(["a", "b", "c d", ""]), string_check, max_size=3) | junk,
     "calculate_output": maybe_junk(formula)})

python_callable = st.fixed_dictionaries(
    {"type": st.just("python"), "name": st.text(max_size=5),
     "callable": st.sampled_from(["examples.graders.numeric:grade", "os:system", "nope:nope",
                                  "examples.graders.numeric", "tests.grader_fixtures:returns_nan",
                                  "tests.grader_fixtures:buggy", ":"]) | junk})

model_graders = st.fixed_dictionaries(
    {"type": st.sampled_from(["score_model", "label_model"]), "name": st.text(max_size=5),
     "model": st.sampled_from(["not-a-model", "gpt-x", ""]) | junk,
     "input": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "wizard"]),
                                              "content": template}), max_size=2) | junk},
    optional={"range": junk, "labels": junk, "passing_labels": junk, "sampling_params": junk})

endpoint = st.fixed_dictionaries(
    {"type": st.just("endpoint"), "name": st.text(max_size=5)},
    optional={"url": st.sampled_from(["", "ftp://x", "not a url"]) | junk, "headers": junk,
              "rate_limit": st.floats(max_value=0) | junk})

configs = st.one_of(string_check, text_similarity, multi, python_callable, model_graders,
                    endpoint, junk, st.dictionaries(st.text(max_size=6), junk, max_size=4))

samples = st.one_of(
    st.text(max_size=40), junk,
    st.fixed_dictionaries({}, optional={"output_text": st.text(max_size=30) | junk,
                                        "output_tools": junk, "output_json": junk}))
items = st.one_of(st.dictionaries(st.sampled_from(["answer", "a", "x"]),
                                  st.text(max_size=10) | junk, max_size=3), junk)


# Well-formed graders of every locally runnable kind, for the sample/item fuzz below.
VALID = [
    {"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
     "reference": "{{item.answer}}", "operation": op} for op in ("eq", "ne", "like", "ilike")
] + [
    {"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}",
     "reference": "{{item.answer}}", "evaluation_metric": m, "pass_threshold": 0.5}
    for m in ("fuzzy_match", "bleu", "gleu", "meteor", "rouge_2", "rouge_l", "cosine")
] + [
    {"type": "python", "name": "n", "callable": "examples.graders.numeric:grade"},
    {"type": "python", "name": "src", "source": "def grade(sample, item):\n"
     "    return len(sample['output_text']) / (1 + len(str(item.get('answer', ''))))"},
    {"type": "multi", "name": "m", "calculate_output": "0.5 * a + 0.5 * b / max(b, 1)",
     "graders": {"a": {"type": "string_check", "name": "a", "input": "{{sample.output_text}}",
                       "reference": "{{item.answer}}", "operation": "ilike"},
                 "b": {"type": "text_similarity", "name": "b", "input": "{{sample.output_text}}",
                       "reference": "{{item.x}}", "evaluation_metric": "rouge_1"}}},
]
FUZZ = settings(max_examples=1000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_result(result) -> None:
    reward = result["reward"]
    assert isinstance(reward, float) and math.isfinite(reward) and 0.0 <= reward <= 1.0
    errors = result["metadata"]["errors"]
    assert set(errors) == set(ERROR_KEYS) | set(DETAIL_KEYS)
    assert all(isinstance(errors[k], bool) for k in ERROR_KEYS)
    if any(errors[k] for k in ERROR_KEYS) and result["metadata"]["type"] != "multi":
        assert reward == 0.0  # (a multi's formula still combines a flagged sub-grader's 0)


@FUZZ
@given(config=configs, sample=samples, item=items)
def test_malformed_configs_are_typed_errors_or_valid_results(config, sample, item):
    try:
        result = asyncio.run(run_grader(config, sample, item))
    except SpecError as e:
        assert str(e)  # typed, naming what is wrong
        return
    check_result(result)


@FUZZ
@given(config=st.sampled_from(VALID), sample=samples, item=items)
def test_malformed_samples_and_items_always_grade(config, sample, item):
    check_result(asyncio.run(run_grader(config, sample, item)))
