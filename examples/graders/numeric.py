"""Numeric answer grader for finance-style answers (standard library only).

Use it as an importable function::

    {"type": "python", "name": "numeric", "callable": "examples.graders.numeric:grade"}

or as sandboxed source, since this file is self-contained::

    from examples.graders.numeric import SOURCE
    {"type": "python", "name": "numeric", "source": SOURCE}

`grade(sample, item)` compares the LAST number in `sample["output_text"]` (with its unit)
with `item["reference_answer"]` (or `item["answer"]`; a string or a number):

- 1.0  equal up to formatting;
- 0.5  a rounding-level difference: relative difference within 0.1 %;
- 0.0  anything else, or no number in the output.

Formatting understood: currency (`$ € £ ¥`, `US$`, `USD`, `EUR`, `GBP`), thousands commas
(and no-break / thin spaces) `1,234,567`, spaces around signs and units, a leading `+`,
`-`, Unicode minus `−` or an en dash `–`
(touching the number: `- 5` is not negative), accounting negatives `(1,234)` = -1234 (also `($1,234)`,
`$(1,234)`), exponents `1.2e6`, scale words `thousand/K/k`, `million/M/m/mn/mm/MM`,
`billion/B/b/bn`, `trillion/tn`, percent (`%`, `percent`, `per cent`, `pct`: 7 % = 0.07),
and a sentence's trailing period (`is 1,234.`).

Decisions (marked so a reader can disagree):
- [decision] A number glued to letters is not an answer: `Q3`, `FY2023`, `v1.5` are
  skipped. A hyphen right after a letter or digit is a dash, not a minus (`2010-2012`).
- [decision] A marked number may also match the other side's bare number when only one
  side is marked: `7%` matches `0.07` and also `7`; `$42 million` matches `42` (a reference
  taken from a table "in millions"). When both sides are marked, only full values compare:
  `1.2 billion` = `1,200 million`, but `7%` ≠ `7 million`.
- [decision] A plain space is not a thousands separator (`1 234` reads as two numbers):
  in running text it is far more often a gap between numbers. Decimal commas
  (`1.234,5`) are not understood.
- [decision] A reference without a number raises ValueError: that is a dataset bug, and
  the python grader turns an exception into a discarded rollout instead of a silent 0.
- "Exact" is `math.isclose` with rel_tol 1e-9, so `0.1 + 0.2` and `0.3` are equal.
"""

from __future__ import annotations

import math
import re

EXACT_REL_TOL = 1e-9
ROUNDING_REL_TOL = 1e-3  # 0.1 %

_SCALES = {
    "thousand": 1e3, "thousands": 1e3, "k": 1e3,
    "million": 1e6, "millions": 1e6, "m": 1e6, "mn": 1e6, "mm": 1e6,
    "billion": 1e9, "billions": 1e9, "b": 1e9, "bn": 1e9,
    "trillion": 1e12, "trillions": 1e12, "tn": 1e12,
}

# The digits: 1,234,567.89 | 1234.5 | .5, optionally with an exponent; never glued to a
# letter, digit or dot on the left (Q3, FY2023, v1.5) or to a digit on the right.
_SEP = "[,\u00a0\u202f\u2009]"
_CORE = re.compile(r"(?<![\w.])(\d{1,3}(?:" + _SEP + r"\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
                   r"(?:[eE]([+-]?\d+))?(?![\d])")
# What may stand before the digits, read backwards from them.
_MINUS = "-+\u2212\u2013\ufe63\uff0d"
_PREFIX = re.compile(r"(?P<open1>\()?\s*(?P<sign1>[" + _MINUS + r"])?\s*"
                     r"(?:US\$|USD|EUR|GBP|[$€£¥])?\s*(?P<open2>\()?\s*"
                     r"(?P<sign2>[" + _MINUS + r"])?\s*\Z")
_UNIT = re.compile(r"\s*(?P<unit>%|per\s?cent\b|pct\b|"
                   r"(?:thousands?|millions?|billions?|trillions?|mn|mm|bn|tn|[kKmMbB])\b)?"
                   r"(?:\s*(?:USD|EUR|GBP|dollars?))?\s*(?P<close>\))?", re.IGNORECASE)
_PREFIX_WINDOW = 16  # characters before the digits that may hold a sign, paren or currency


class Number:
    """One number as written: `value` with its scale and percent applied, `bare` without."""

    def __init__(self, bare: float, scale: float, percent: bool):
        self.bare, self.scale, self.percent = bare, scale, percent
        self.value = bare / 100 if percent else bare * scale

    @property
    def marked(self) -> bool:
        return self.percent or self.scale != 1

    def __repr__(self) -> str:
        return f"Number(bare={self.bare!r}, scale={self.scale!r}, percent={self.percent!r})"


def find_numbers(text: str) -> list[Number]:
    """Every number in `text`, in order, read as described in the module docstring."""
    numbers = []
    for m in _CORE.finditer(text):
        digits = re.sub(_SEP, "", m.group(1))
        bare = float(digits + (f"e{m.group(2)}" if m.group(2) else ""))
        if not math.isfinite(bare):
            continue
        window_start = max(0, m.start() - _PREFIX_WINDOW)
        pre = _PREFIX.search(text, window_start, m.start())
        negative = opened = False
        if pre is not None:
            for name in ("sign1", "sign2"):
                if pre.group(name) and pre.group(name) != "+" and _is_minus(text, pre.start(name)):
                    negative = True
                    # "5 - 3" is a subtraction, "-3" a negative: a sign touches what it signs.
                    if text[pre.end(name)].isspace():
                        negative = False
            opened = bool(pre.group("open1") or pre.group("open2"))
        post = _UNIT.match(text, m.end())
        unit = (post.group("unit") or "").lower() if post else ""
        if opened and post is not None and post.group("close"):
            negative = True  # accounting style: (1,234) is -1234
        percent = unit == "%" or unit.startswith("per") or unit == "pct"
        scale = 1.0 if percent or not unit else _SCALES[unit]
        numbers.append(Number(-bare if negative else bare, scale, percent))
    return numbers


def _is_minus(text: str, pos: int) -> bool:
    # A dash right after a letter or digit joins two things (2010-2012, COVID-19): not a sign.
    return pos == 0 or not text[pos - 1].isalnum()


def last_number(text: str) -> Number | None:
    found = find_numbers(text)
    return found[-1] if found else None


def score(answer: Number | None, reference: Number) -> float:
    """1.0 equal, 0.5 within 0.1 %, else 0.0; see the module docstring for marked numbers."""
    if answer is None:
        return 0.0
    pairs = [(answer.value, reference.value)]
    if answer.marked != reference.marked:
        pairs.append((answer.bare, reference.value) if answer.marked
                     else (answer.value, reference.bare))
    best = 0.0
    for a, r in pairs:
        if math.isclose(a, r, rel_tol=EXACT_REL_TOL, abs_tol=1e-12):
            return 1.0
        if math.isclose(a, r, rel_tol=ROUNDING_REL_TOL):
            best = 0.5
    return best


def reference_of(item: dict) -> Number:
    for key in ("reference_answer", "answer"):
        if key in item and item[key] is not None:
            ref = item[key]
            if isinstance(ref, (int, float)) and not isinstance(ref, bool):
                return Number(float(ref), 1.0, False)
            number = last_number(str(ref))
            if number is None:
                raise ValueError(f"item[{key!r}] = {str(ref)[:80]!r} holds no number")
            return number
    raise ValueError("item has neither 'reference_answer' nor 'answer'")


def grade(sample: dict, item: dict) -> float:
    """The reward for one sample: 1.0, 0.5 or 0.0."""
    reference = reference_of(item)
    return score(last_number(sample.get("output_text") or ""), reference)


def __getattr__(name: str) -> str:
    # `SOURCE`, read on demand: this very file, which runs unchanged as sandboxed source
    # (where there is no __file__ and nobody asks for SOURCE).
    if name == "SOURCE":
        from pathlib import Path

        return Path(__file__).read_text(encoding="utf-8")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
