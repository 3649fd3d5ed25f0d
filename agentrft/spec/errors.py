"""Turn pydantic validation errors into `SpecError`s that name file, line and field."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import ValidationError

from agentrft.errors import SpecError


def field_path(loc: tuple[Any, ...]) -> str:
    """('method', 'reinforcement', 'tools', 0, 'name') -> 'method.reinforcement.tools[0].name'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def spec_error_from(exc: ValidationError, *, file: str | None,
                    line_of: Callable[[tuple[Any, ...]], int | None] | None = None,
                    line: int | None = None) -> SpecError:
    """The first validation error, phrased for a person; others are counted."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    if line is None and line_of is not None:
        line = line_of(loc)
    return SpecError(msg, file=file, line=line, field=field_path(loc) or None)
