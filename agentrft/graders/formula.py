"""The `calculate_output` formula of a `multi` grader: our own small parser, never `eval`.

A formula combines sub-grader rewards by key::

    f = parse_formula("0.7 * correct + 0.3 * max(format - 0.5, 0) ^ 2",
                      variables={"correct", "format"})
    f.evaluate({"correct": 1.0, "format": 0.9})   # 0.7 + 0.3 * 0.4^2 = 0.748

What a formula may contain, and nothing else (no comparisons, attributes, indexing,
strings, keywords or `**`):

- numbers: `3`, `0.25`, `.5`, `2.`, `1e-3`, `1.5E+2`
- variables: `[A-Za-z_][A-Za-z0-9_]*`, the sub-grader keys (case-sensitive)
- `+ - * /`, unary `-` and `+`, parentheses
- `^` for power, right-associative (`2^3^2` = 2^9), binding tighter than a unary minus
  on its left, as in written maths: `-2^2` = -4; the exponent may carry a sign: `2^-1` = 0.5
- functions: `min(a, ...)`, `max(a, ...)` (one or more arguments), `abs(x)`, `floor(x)`,
  `ceil(x)`, `exp(x)`, `sqrt(x)`, and `log(x)` (natural log) or `log(x, base)`
  [decision: the two-argument form is an extension; OpenAI documents only `log(x)`]

A name followed by `(` is a function, otherwise a variable, so a sub-grader key may be
called `max` without shadowing the function.

Errors:
- `FormulaParseError` when the text is not a formula (with the column), names an unknown
  function or gives one the wrong number of arguments, or uses a variable outside
  `variables` (when given). Parse once, when the grader is built.
- `FormulaEvalError` when evaluation cannot give a finite number: division by zero,
  `sqrt` of a negative, `log` of a non-positive (or base 1), a negative number to a
  fractional power, overflow, a non-finite input.

Sizes are bounded (`MAX_LENGTH` characters, `MAX_DEPTH` levels of nesting) so that a
hostile formula cannot exhaust the stack; `+ -` and `* /` chains are evaluated in a loop,
so `a + a + ... + a` of any length within `MAX_LENGTH` is fine.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Union

from agentrft.errors import AgentRFTError

MAX_LENGTH = 10_000  # characters
MAX_DEPTH = 100  # nested parentheses, unary signs, powers and calls


class FormulaError(AgentRFTError):
    """Root of formula errors."""


class FormulaParseError(FormulaError):
    """The text is not a valid formula (over the given variables)."""


class FormulaEvalError(FormulaError):
    """The formula has no finite value for these inputs (e.g. division by zero)."""


# -- AST -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Neg:
    operand: "Node"


@dataclass(frozen=True)
class Chain:
    """`first op1 x1 op2 x2 ...` for one precedence level of left-associative operators."""
    first: "Node"
    rest: tuple[tuple[str, "Node"], ...]


@dataclass(frozen=True)
class Pow:
    base: "Node"
    exponent: "Node"


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple["Node", ...]


Node = Union[Num, Var, Neg, Chain, Pow, Call]


def _log(x: float, base: float | None = None) -> float:
    if x <= 0:
        raise FormulaEvalError(f"log of {_fmt(x)} (needs a positive number)")
    if base is None:
        return math.log(x)
    if base <= 0 or base == 1:
        raise FormulaEvalError(f"log base {_fmt(base)} (needs a positive base other than 1)")
    return math.log(x) / math.log(base)


def _sqrt(x: float) -> float:
    if x < 0:
        raise FormulaEvalError(f"sqrt of {_fmt(x)} (needs a non-negative number)")
    return math.sqrt(x)


# name → (function, min arity, max arity or None for any)
FUNCTIONS: dict[str, tuple[Callable[..., float], int, int | None]] = {
    "min": (lambda *xs: min(xs), 1, None),
    "max": (lambda *xs: max(xs), 1, None),
    "abs": (abs, 1, 1),
    "floor": (lambda x: float(math.floor(x)), 1, 1),
    "ceil": (lambda x: float(math.ceil(x)), 1, 1),
    "exp": (math.exp, 1, 1),
    "sqrt": (_sqrt, 1, 1),
    "log": (_log, 1, 2),
}


_BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


# -- tokens ----------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>[-+*/^(),])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number" | "name" | "op" | "end"
    text: str
    col: int  # 1-based column, for messages


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormulaParseError(f"unexpected character {text[pos]!r} at column {pos + 1} "
                                    f"in formula {text!r}")
        kind = m.lastgroup or ""
        if kind == "op" and text.startswith("**", pos):
            raise FormulaParseError(f"'**' at column {pos + 1} in formula {text!r}: "
                                    f"write powers with '^'")
        if kind != "space":
            tokens.append(_Token(kind, m.group(), pos + 1))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


# -- parser ----------------------------------------------------------------------------
#   expr    := term (("+" | "-") term)*
#   term    := unary (("*" | "/") unary)*
#   unary   := ("-" | "+") unary | power
#   power   := primary ("^" unary)?          right-associative; -2^2 = -(2^2)
#   primary := NUMBER | NAME | NAME "(" expr ("," expr)* ")" | "(" expr ")"

class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            self.fail(f"unexpected {tok.text!r} at column {tok.col}")
        return node

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, *ops: str) -> str | None:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ops:
            self.i += 1
            return tok.text
        return None

    def expect(self, op: str) -> None:
        if self.accept(op) is None:
            tok = self.peek()
            found = "end of formula" if tok.kind == "end" else repr(tok.text)
            self.fail(f"expected {op!r} at column {tok.col}, found {found}")

    def fail(self, message: str) -> None:
        raise FormulaParseError(f"{message} in formula {self.text!r}")

    def expr(self) -> Node:
        first, rest = self.term(), []
        while (op := self.accept("+", "-")) is not None:
            rest.append((op, self.term()))
        return Chain(first, tuple(rest)) if rest else first

    def term(self) -> Node:
        first, rest = self.unary(), []
        while (op := self.accept("*", "/")) is not None:
            rest.append((op, self.unary()))
        return Chain(first, tuple(rest)) if rest else first

    def unary(self) -> Node:
        # Every level of nesting passes through here, so this one counter bounds recursion.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nested more than {MAX_DEPTH} levels deep")
        try:
            if (op := self.accept("-", "+")) is not None:
                operand = self.unary()
                return Neg(operand) if op == "-" else operand
            return self.power()
        finally:
            self.depth -= 1

    def power(self) -> Node:
        base = self.primary()
        if self.accept("^") is not None:
            return Pow(base, self.unary())
        return base

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "number":
            value = float(tok.text)
            if not math.isfinite(value):
                self.fail(f"number {tok.text} at column {tok.col} is out of range")
            return Num(value)
        if tok.kind == "name":
            if self.accept("(") is None:
                return Var(tok.text)
            return self.call(tok)
        if tok.kind == "op" and tok.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        found = "end of formula" if tok.kind == "end" else repr(tok.text)
        self.fail(f"expected a number, variable, function or '(' at column {tok.col}, "
                  f"found {found}")
        raise AssertionError("unreachable")

    def call(self, name: _Token) -> Node:
        if name.text not in FUNCTIONS:
            self.fail(f"unknown function {name.text!r} at column {name.col} "
                      f"(known: {', '.join(FUNCTIONS)})")
        args = []
        if self.accept(")") is None:
            args.append(self.expr())
            while self.accept(",") is not None:
                args.append(self.expr())
            self.expect(")")
        _, lo, hi = FUNCTIONS[name.text]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"at least {lo}" if hi is None else (f"{lo}" if lo == hi else f"{lo} or {hi}")
            self.fail(f"{name.text}() at column {name.col} takes {want} argument"
                      f"{'' if want == '1' else 's'}, got {len(args)}")
        return Call(name.text, tuple(args))


# -- formula ---------------------------------------------------------------------------

class Formula:
    """A parsed formula; `evaluate` it as often as needed."""

    def __init__(self, text: str, root: Node):
        self.text, self.root = text, root
        self.variables = frozenset(_variables(root))

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"

    def evaluate(self, values: Mapping[str, float]) -> float:
        """The formula's value; FormulaEvalError if it is not a finite number."""
        try:
            return _eval(self.root, values)
        except FormulaEvalError as exc:
            raise FormulaEvalError(f"{exc} in formula {self.text!r}") from None


def parse_formula(text: str, variables: set[str] | frozenset[str] | None = None) -> Formula:
    """Parse `text`; with `variables`, any other variable name is a FormulaParseError."""
    if not isinstance(text, str):
        raise FormulaParseError(f"a formula is a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaParseError(f"formula is {len(text)} characters long (at most {MAX_LENGTH})")
    if not text.strip():
        raise FormulaParseError("formula is empty")
    formula = Formula(text, _Parser(text).parse())
    if variables is not None:
        unknown = sorted(formula.variables - set(variables))
        if unknown:
            raise FormulaParseError(
                f"unknown variable{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))} in formula {text!r} "
                f"(known: {', '.join(sorted(variables)) or 'none'})")
    return formula


def _variables(node: Node) -> set[str]:
    if isinstance(node, Var):
        return {node.name}
    if isinstance(node, Num):
        return set()
    if isinstance(node, Neg):
        return _variables(node.operand)
    if isinstance(node, Pow):
        return _variables(node.base) | _variables(node.exponent)
    if isinstance(node, Chain):
        return _variables(node.first).union(*(_variables(n) for _, n in node.rest))
    return set().union(*(_variables(a) for a in node.args))


def _eval(node: Node, values: Mapping[str, float]) -> float:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Var):
        if node.name not in values:
            raise FormulaEvalError(f"no value for variable {node.name!r}")
        return _finite(float(values[node.name]), f"variable {node.name!r}")
    if isinstance(node, Neg):
        return -_eval(node.operand, values)
    if isinstance(node, Chain):
        acc = _eval(node.first, values)
        for op, operand in node.rest:
            x = _eval(operand, values)
            if op == "/" and x == 0:
                raise FormulaEvalError(f"division by zero ({_fmt(acc)} / 0)")
            acc = _BINARY[op](acc, x)
            _finite(acc, f"'{op}'")
        return acc
    if isinstance(node, Pow):
        base, exponent = _eval(node.base, values), _eval(node.exponent, values)
        try:
            # math.pow, not **: a negative base to a fractional power raises here instead of
            # quietly becoming a complex number.
            return _finite(math.pow(base, exponent), "'^'")
        except OverflowError:
            raise FormulaEvalError(f"{_fmt(base)} ^ {_fmt(exponent)} overflows") from None
        except ValueError:
            raise FormulaEvalError(f"{_fmt(base)} ^ {_fmt(exponent)} is undefined") from None
    fn = FUNCTIONS[node.fn][0]
    args = [_eval(a, values) for a in node.args]
    try:
        return _finite(float(fn(*args)), f"{node.fn}()")
    except OverflowError:
        raise FormulaEvalError(f"{node.fn}({', '.join(map(_fmt, args))}) overflows") from None


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise FormulaEvalError(f"{what} gave {x} (not a finite number)")
    return x


def _fmt(x: float) -> str:
    return f"{x:g}"
