"""`examples.graders.numeric`: finance-style numeric answers, as a callable and as source."""

from __future__ import annotations

import ast

import pytest

from agentrft.graders.python_callable import PythonCallableGrader
from examples.graders import numeric
from examples.graders.numeric import find_numbers, grade


def g(output: str, reference) -> float:
    return grade({"output_text": output}, {"reference_answer": reference})


@pytest.mark.parametrize("output, reference, reward", [
    # plain and formatted equals
    ("The answer is 1234.", "1234", 1.0),
    ("$1,234", "1234", 1.0),
    ("$ 1,234.00", "1,234", 1.0),
    ("Total: USD 1,234,567.89", "1234567.89", 1.0),
    ("US$12.5", "$12.50", 1.0),
    ("€ 99", "99", 1.0),
    ("+42", "42", 1.0),
    ("It rose by 42.", 42, 1.0),                       # trailing period; numeric reference
    ("1.2e6", "1,200,000", 1.0),
    ("1\u202f234\u202f567", "1234567", 1.0),            # narrow no-break space separators
    # scale words
    ("$1.2 billion", "1,200 million", 1.0),
    ("1.2B", "1200000000", 1.0),
    ("$1.2bn", "1.2 billion", 1.0),
    ("3.5 million", "3,500,000", 1.0),
    ("3.5M", "3500 thousand", 1.0),
    ("3.5 mn", "3.5m", 1.0),
    ("$2.5MM", "2,500,000", 1.0),
    ("12K", "12,000", 1.0),
    ("12 thousand", "12k", 1.0),
    ("0.5 trillion", "500 billion", 1.0),
    ("$42 million", "42", 1.0),                        # table "in millions": bare digits match
    ("42", "42 million", 1.0),
    ("42 million", "42 billion", 0.0),                 # both marked: full values only
    # percent
    ("7%", "0.07", 1.0),
    ("0.07", "7%", 1.0),
    ("7 percent", "7%", 1.0),
    ("7 per cent", "0.07", 1.0),
    ("7%", "7", 1.0),
    ("7%", "7 million", 0.0),
    ("12.5%", "0.125", 1.0),
    ("0.07", "7", 0.0),                                # neither marked: no guessing
    # negatives
    ("(1,234)", "-1234", 1.0),
    ("($1,234)", "-1234", 1.0),
    ("$(1,234)", "-1,234", 1.0),
    ("(1.5 million)", "-1,500,000", 1.0),
    ("\u22125.2", "-5.2", 1.0),                         # Unicode minus
    ("-$5.2", "-5.2", 1.0),
    ("$-5.2", "(5.2)", 1.0),
    ("\u22123.1%", "-0.031", 1.0),
    ("(1,234)", "1234", 0.0),
    ("The change was 5 - 3", "3", 1.0),               # a spaced dash is not a minus
    ("from 2010-2012", "2012", 1.0),                   # a dash after a digit is not a minus
    # the LAST number is the answer
    ("Revenue was $10 in 2022 and $12.5 in the end", "12.5", 1.0),
    ("First I thought 7, but the answer is 9", "9", 1.0),
    ("The answer is 9, not 7", "9", 0.0),
    ("Growth in Q3 was 4.2%", "4.2%", 1.0),            # Q3 is a label, not a number
    ("FY2023 margin: 18%", "0.18", 1.0),
    # rounding-level differences: 0.5 within 0.1 %
    ("1234.57", "1234.5678", 0.5),
    ("$1.234 billion", "1,234.4 million", 0.5),
    ("$1.23 billion", "1,234 million", 0.0),
    ("7.1%", "0.0712", 0.0),                           # 0.28 % off: not rounding-level
    ("1000.9", "1000", 0.5),
    ("1001.1", "1000", 0.0),
    ("0.3", "0.1 + 0.2 = 0.30000000000000004", 1.0),   # float noise is equal
    # no answer
    ("I don't know", "5", 0.0),
    ("", "5", 0.0),
    ("Q4", "4", 0.0),
])
def test_numeric_table(output, reference, reward):
    assert g(output, reference) == reward


def test_reads_answer_key_too_and_rejects_reference_without_number():
    assert grade({"output_text": "42"}, {"answer": "$42"}) == 1.0
    assert grade({"output_text": None}, {"answer": "42"}) == 0.0
    with pytest.raises(ValueError, match="holds no number"):
        grade({"output_text": "42"}, {"reference_answer": "n/a"})
    with pytest.raises(ValueError, match="neither"):
        grade({"output_text": "42"}, {"question": "?"})


def test_find_numbers_reads_units_and_signs():
    [n] = find_numbers("a loss of (\u20ac3.4 bn)")
    assert (n.bare, n.scale, n.percent, n.value) == (-3.4, 1e9, False, -3.4e9)
    assert [x.value for x in find_numbers("1, 2 and 3")] == [1, 2, 3]


def test_source_is_self_contained_stdlib_only():
    source = numeric.SOURCE
    assert source == open(numeric.__file__, encoding="utf-8").read()
    tree = ast.parse(source)
    imports = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    imports |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert imports <= {"__future__", "math", "re", "pathlib"}
    namespace: dict = {"__name__": "sandboxed_grader"}  # no __file__, as in a sandbox
    exec(compile(source, "<grader source>", "exec"), namespace)
    assert namespace["grade"]({"output_text": "($1.2bn)"}, {"answer": "-1,200 million"}) == 1.0


async def test_usable_as_python_callable_grader():
    grader = PythonCallableGrader(name="numeric", target="examples.graders.numeric:grade")
    result = await grader.grade({"output_text": "About 7.0%."}, {"reference_answer": "0.07"}, "t")
    assert result.reward == 1.0
    half = await grader.grade({"output_text": "1234.57"}, {"answer": "1234.5678"}, "t")
    assert half.reward == 0.5
