"""The multi grader's `calculate_output` parser and evaluator: table-driven, no eval anywhere."""

from __future__ import annotations

import math

import pytest

from agentrft.graders import formula as formula_module
from agentrft.graders.formula import (MAX_DEPTH, MAX_LENGTH, FormulaEvalError, FormulaParseError,
                                      parse_formula)

VALUES = {"a": 0.5, "b": 0.25, "c": 2.0, "zero": 0.0, "neg": -4.0, "x_1": 3.0, "max": 0.75}


@pytest.mark.parametrize("text, expected", [
    # numbers
    ("3", 3.0),
    ("0.25", 0.25),
    (".5", 0.5),
    ("2.", 2.0),
    ("1e3", 1000.0),
    ("1.5E-2", 0.015),
    ("2e+2", 200.0),
    # precedence and associativity
    ("1 + 2 * 3", 7.0),
    ("(1 + 2) * 3", 9.0),
    ("10 - 4 - 3", 3.0),
    ("64 / 4 / 2", 8.0),
    ("2 * 3 / 4", 1.5),
    ("2 ^ 3 ^ 2", 512.0),
    ("(2 ^ 3) ^ 2", 64.0),
    ("2 * 3 ^ 2", 18.0),
    ("-2 ^ 2", -4.0),
    ("(-2) ^ 2", 4.0),
    ("2 ^ -1", 0.5),
    ("-2 ^ -2", -0.25),
    ("2 ^ -2 ^ 2", 2 ** -4),
    # unary
    ("-3 + 5", 2.0),
    ("--3", 3.0),
    ("+3", 3.0),
    ("-+-3", 3.0),
    ("4 - -2", 6.0),
    ("2 * -a", -1.0),
    # variables
    ("a + b", 0.75),
    ("0.7 * a + 0.3 * b", 0.425),
    ("x_1 * c", 6.0),
    ("max", 0.75),                      # a key may be named like a function
    ("max(max, a)", 0.75),
    # functions
    ("min(a, b)", 0.25),
    ("max(a, b, c)", 2.0),
    ("min(3)", 3.0),
    ("abs(neg)", 4.0),
    ("floor(2.7)", 2.0),
    ("floor(-2.5)", -3.0),
    ("ceil(2.1)", 3.0),
    ("exp(0)", 1.0),
    ("sqrt(16)", 4.0),
    ("sqrt(0)", 0.0),
    ("log(1)", 0.0),
    ("log(exp(2))", 2.0),
    ("log(8, 2)", 3.0),
    ("max(min(a, b), min(c, 1)) * 2", 2.0),
    ("sqrt(abs(neg)) ^ 2", 4.0),
    # whitespace and nesting
    ("  a\t+\nb  ", 0.75),
    ("((((((a))))))", 0.5),
    ("(((1 + 2) * (3 - 1)) / (2))", 3.0),
    ("1+2*3-4/2", 5.0),
])
def test_evaluates(text, expected):
    assert parse_formula(text, variables=set(VALUES)).evaluate(VALUES) == pytest.approx(expected)


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("   ", "empty"),
    ("1 +", "end of formula"),
    ("* 2", "'*'"),
    ("1 2", "unexpected '2'"),
    ("(1 + 2", "expected ')'"),
    ("1 + 2)", "unexpected ')'"),
    ("()", "found ')'"),
    ("a ** 2", "write powers with '^'"),
    ("min()", "at least 1"),
    ("abs(1, 2)", "takes 1 argument, got 2"),
    ("log(1, 2, 3)", "takes 1 or 2 arguments"),
    ("sqrt()", "takes 1 argument, got 0"),
    ("min(1,)", "found ')'"),
    ("max(1 2)", "expected ')'"),
    ("foo(1)", "unknown function 'foo'"),
    ("sin(a)", "unknown function 'sin'"),
    ("a % 2", "unexpected character '%'"),
    ("1 == 1", "unexpected character '='"),
    ("a < b", "unexpected character '<'"),
    ("1e", "unexpected 'e'"),
    # things that would be Python, and must never be run as Python
    ("__import__('os')", "unexpected character \"'\""),
    ("__import__(os)", "unknown function '__import__'"),
    ("__import__(os).system", "unexpected character '.'"),
    ("eval(a)", "unknown function 'eval'"),
    ("1 if 1 else 2", "unexpected 'if'"),
    ("a.b", "unexpected character '.'"),
    ("a.__class__", "unexpected character '.'"),
    ("[1]", "unexpected character '['"),
    ("{1: 2}", "unexpected character '{'"),
    ("lambda: 1", "unexpected character ':'"),
    ("lambda x: x", "unexpected character ':'"),
    ("lambda x", "unexpected 'x'"),
    ("'abc'", "unexpected character"),
    ("\"abc\"", "unexpected character"),
    ("a; b", "unexpected character ';'"),
    ("not a", "unexpected 'a'"),
    ("a and b", "unexpected 'and'"),
    ("f'{a}'", "unexpected character"),
    ("1_000", "unexpected '_000'"),
])
def test_parse_errors(text, says):
    with pytest.raises(FormulaParseError) as info:
        parse_formula(text, variables=set(VALUES))
    assert says in str(info.value)


@pytest.mark.parametrize("text, unknown", [
    ("a + d", "'d'"),
    ("A + a", "'A'"),            # case-sensitive
    ("min(a, q, r)", "'q', 'r'"),
    ("os", "'os'"),
])
def test_unknown_variables_are_parse_errors(text, unknown):
    with pytest.raises(FormulaParseError, match="unknown variable") as info:
        parse_formula(text, variables=set(VALUES))
    assert unknown in str(info.value) and "known: " in str(info.value)


def test_without_variables_any_name_parses_and_is_listed():
    f = parse_formula("w1 * correct + (1 - w1) * min(style, 1)")
    assert f.variables == {"w1", "correct", "style"}
    assert f.evaluate({"w1": 0.5, "correct": 1, "style": 0}) == 0.5


@pytest.mark.parametrize("text, says", [
    ("a / zero", "division by zero"),
    ("1 / (b - 0.25)", "division by zero"),
    ("sqrt(neg)", "sqrt of -4"),
    ("log(zero)", "log of 0"),
    ("log(neg)", "log of -4"),
    ("log(2, 1)", "log base 1"),
    ("log(2, zero)", "log base 0"),
    ("zero ^ -1", "undefined"),
    ("neg ^ 0.5", "undefined"),
    ("10 ^ 400", "overflows"),
    ("exp(1000)", "overflows"),
    ("1e300 * 1e300", "not a finite number"),
    ("1e308 + 1e308", "not a finite number"),
])
def test_eval_errors(text, says):
    f = parse_formula(text, variables=set(VALUES))  # every one of these parses
    with pytest.raises(FormulaEvalError) as info:
        f.evaluate(VALUES)
    assert says in str(info.value) and text in str(info.value)


def test_non_finite_or_missing_inputs_are_eval_errors():
    f = parse_formula("a + b")
    with pytest.raises(FormulaEvalError, match="not a finite"):
        f.evaluate({"a": math.nan, "b": 0})
    with pytest.raises(FormulaEvalError, match="no value for variable 'b'"):
        f.evaluate({"a": 1})


def test_number_out_of_range_is_a_parse_error():
    with pytest.raises(FormulaParseError, match="out of range"):
        parse_formula("1e999")


def test_long_chains_do_not_recurse():
    n = 2000
    assert parse_formula(" + ".join(["a"] * n)).evaluate({"a": 1}) == n
    assert parse_formula(" * ".join(["2"] * 100)).evaluate({}) == 2.0 ** 100
    assert parse_formula("1" + " - 1" * n).evaluate({}) == 1 - n  # left-associative


def test_size_limits_stop_hostile_formulas():
    deep = "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FormulaParseError, match="nested more than"):
        parse_formula(deep)
    with pytest.raises(FormulaParseError, match="nested more than"):
        parse_formula("-" * (MAX_DEPTH + 5) + "1")
    with pytest.raises(FormulaParseError, match="nested more than"):
        parse_formula("^".join(["2"] * (MAX_DEPTH + 5)))
    ok = "(" * (MAX_DEPTH - 2) + "1" + ")" * (MAX_DEPTH - 2)
    assert parse_formula(ok).evaluate({}) == 1.0
    with pytest.raises(FormulaParseError, match="characters long"):
        parse_formula("1" + " " * MAX_LENGTH)


def test_error_names_the_column():
    with pytest.raises(FormulaParseError, match="column 5"):
        parse_formula("a + ] b")


def test_parse_once_evaluate_many():
    f = parse_formula("0.5 * a + 0.5 * b", variables={"a", "b"})
    assert [f.evaluate({"a": x, "b": 1 - x}) for x in (0.0, 0.3, 1.0)] == [0.5, 0.5, 0.5]


def test_module_never_uses_python_eval():
    source = open(formula_module.__file__, encoding="utf-8").read()
    for banned in ("eval(", "exec(", "literal_eval", "compile("):
        assert banned not in source.replace("_eval(", "").replace("re.compile(", "")
