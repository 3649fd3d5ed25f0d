"""`{{item.x}}` / `{{sample.y}}` templates, as OpenAI's graders write them (graders and sandboxed
tools both render them).

A variable is a root (`item` or `sample`) followed by `.key` and `[index]` steps::

    render_template("{{ sample.output_tools[0].function.arguments }}", sample, item)

Strings are substituted as they are; anything else (numbers, lists, dicts, None) is
JSON-encoded, so a grader comparing against a structured reference sees stable text.
Substitution is a single pass: text that arrives through a variable is never itself
expanded, so a model cannot smuggle `{{item.answer}}` into its output to read the key.

An unknown root, a missing key or an out-of-range index raises `TemplateVariableError`
rather than rendering as empty text: an empty string would quietly score as a mismatch
(or worse, as a match for `ne`/`like ""`), and a typo in a grader must be visible.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentrft.errors import AgentRFTError

_VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_ROOT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# One step after the root: `.key` (anything but dots, brackets, whitespace) or `[int]`.
_STEP = re.compile(r"\.([^.\[\]\s]+)|\[\s*(-?\d+)\s*\]")


class TemplateVariableError(AgentRFTError):
    """A template names a variable that the sample or item does not have.

    Derives from agentrft's error root (errors.py: every error raised on purpose does).
    Graders turn it into data (`invalid_variable_error`), not into a crash.
    """

    def __init__(self, variable: str, reason: str):
        self.variable = variable
        super().__init__(f"template variable {{{{{variable}}}}}: {reason}")


def render_template(template: str, sample: dict[str, Any], item: dict[str, Any]) -> str:
    """Substitute every `{{...}}` in `template` from `sample` and `item`."""
    if "{{" not in template:
        return template
    roots = {"sample": sample, "item": item}
    return _VARIABLE.sub(lambda m: _to_text(resolve_variable(m.group(1), roots)), template)


def resolve_variable(variable: str, roots: dict[str, Any]) -> Any:
    """Walk `item.a.b[0]`-style `variable` through `roots`; raise TemplateVariableError."""
    root = _ROOT.match(variable)
    if root is None:
        raise TemplateVariableError(variable, "not a variable (expected item.… or sample.…)")
    if root.group(0) not in roots:
        known = " or ".join(sorted(roots))
        raise TemplateVariableError(variable, f"unknown root {root.group(0)!r} (expected {known})")
    value = roots[root.group(0)]
    walked = root.group(0)
    pos = root.end()
    while pos < len(variable):
        step = _STEP.match(variable, pos)
        if step is None:
            raise TemplateVariableError(variable, f"cannot parse {variable[pos:]!r}")
        key, index = step.group(1), step.group(2)
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                raise TemplateVariableError(variable, f"{walked} has no key {key!r}")
            value = value[key]
        else:
            i = int(index)
            if not isinstance(value, list) or not -len(value) <= i < len(value):
                raise TemplateVariableError(variable, f"{walked} has no index [{i}]")
            value = value[i]
        walked = variable[:step.end()]
        pos = step.end()
    return value


def _to_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
