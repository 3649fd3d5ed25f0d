"""Checking the fields of a grader config: missing and unknown keys, strings, numbers.

Every check raises `SpecError` naming the field (`grader.refrence`), so a typo in a grader
config is an error, not a silently ignored key that scores everything 0.

    fields = check_fields(config, required=("name", "url"))   # {"name": ..., "url": ...}
    threshold = optional_number(config, "pass_threshold")      # float or None
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from agentrft.errors import SpecError


def check_keys(config: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...],
               where: str = "grader") -> None:
    """SpecError naming `where.KEY` for a missing or unknown key (`type` is always allowed)."""
    for key in config:
        if key != "type" and key not in required and key not in optional:
            raise SpecError(f"unknown key {key!r}", field=f"{where}.{key}")
    for key in required:
        if key not in config:
            raise SpecError(f"missing key {key!r}", field=f"{where}.{key}")


def check_fields(config: dict[str, Any], *, required: tuple[str, ...],
                 optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The config's fields other than `type`, after checking none is missing or unknown.

    Values of the required and optional keys must be strings (true of every field of the
    types built here); a factory needing other kinds checks them itself.
    """
    check_keys(config, required, optional)
    fields = {k: v for k, v in config.items() if k != "type"}
    for key, value in fields.items():
        if not isinstance(value, str):
            raise SpecError(f"expected a string, got {type(value).__name__}", field=f"grader.{key}")
    return fields


def optional_number(config: dict[str, Any], key: str, *, positive: bool = False) -> float | None:
    """`config[key]` as a float (None when absent or null); SpecError unless a finite number
    (a bool is not one), or unless greater than 0 with `positive`."""
    if config.get(key) is None:
        return None
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)):
        raise SpecError(f"expected a number, got {value!r}", field=f"grader.{key}")
    if positive and value <= 0:
        raise SpecError(f"must be greater than 0, got {value}", field=f"grader.{key}")
    return float(value)
