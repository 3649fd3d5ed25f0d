"""Grader configs (OpenAI's JSON shapes) → `Grader` objects, through a registry of types.

Built-in types register exactly as a plugin would::

    def build_my_grader(config: dict) -> Grader:
        fields = check_fields(config, required=("name", "url"))
        return MyGrader(**fields)

    register_grader_type("my_grader", build_my_grader)

Every factory rejects unknown keys: a typo in a grader config (`refrence`) must be an
error naming `grader.refrence`, not a silently ignored key that scores everything 0.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

from agentrft.errors import SpecError
from agentrft.graders.base import Grader
from agentrft.graders.python_callable import PythonCallableGrader
from agentrft.graders.string_check import OPERATIONS, StringCheckGrader

GraderFactory = Callable[[dict[str, Any]], Grader]
_FACTORIES: dict[str, GraderFactory] = {}


def register_grader_type(type_name: str, factory: GraderFactory, *, replace: bool = False) -> None:
    """Make `build_grader` turn configs with `"type": type_name` into graders via `factory`."""
    if type_name in _FACTORIES and not replace:
        raise ValueError(f"grader type {type_name!r} is already registered")
    _FACTORIES[type_name] = factory


def grader_types() -> list[str]:
    return sorted(_FACTORIES)


def build_grader(config: dict[str, Any]) -> Grader:
    """Build the grader `config` describes; a wrong config raises SpecError naming the field."""
    if not isinstance(config, dict):
        raise SpecError(f"expected an object, got {type(config).__name__}", field="grader")
    if "type" not in config:
        raise SpecError("missing key 'type'", field="grader.type")
    if not isinstance(config["type"], str):
        raise SpecError(f"expected a string, got {type(config['type']).__name__}", field="grader.type")
    factory = _FACTORIES.get(config["type"])
    if factory is None:
        raise SpecError(f"unknown grader type {config['type']!r} (known: "
                        f"{', '.join(grader_types())})", field="grader.type")
    if "name" not in config:
        # OpenAI's helpers build graders without one (`{"type": "python", "source": ...}`);
        # the name only labels results, so the type stands in. A null or empty name is still
        # an error: that one was written and is wrong.
        config = {**config, "name": config["type"]}
    return factory(config)


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


def _build_string_check(config: dict[str, Any]) -> Grader:
    fields = check_fields(config, required=("name", "input", "reference", "operation"))
    if fields["operation"] not in OPERATIONS:
        raise SpecError(f"unknown operation {fields['operation']!r} (expected one of "
                        f"{', '.join(OPERATIONS)})", field="grader.operation")
    return StringCheckGrader(**fields)


def _build_python(config: dict[str, Any]) -> Grader:
    """OpenAI's `source` (untrusted, sandboxed) or our `callable` (trusted, in-process)."""
    if "source" in config:
        from agentrft.graders.python_source import from_config

        return from_config(config)
    fields = check_fields(config, required=("name", "callable"))
    return PythonCallableGrader(name=fields["name"], target=fields["callable"])


def _build_text_similarity(config: dict[str, Any]) -> Grader:
    from agentrft.graders.text_similarity import from_config

    return from_config(config)


register_grader_type("string_check", _build_string_check)
register_grader_type("python", _build_python)
def _build_score_model(config: dict[str, Any]) -> Grader:
    from agentrft.graders.score_model import from_config

    return from_config(config)


def _build_label_model(config: dict[str, Any]) -> Grader:
    from agentrft.graders.label_model import from_config

    return from_config(config)


def _build_multi(config: dict[str, Any]) -> Grader:
    from agentrft.graders.multi import build_multi_grader

    return build_multi_grader(config)


def _build_endpoint(config: dict[str, Any]) -> Grader:
    from agentrft.graders.endpoint import build_endpoint_grader

    return build_endpoint_grader(config)


register_grader_type("text_similarity", _build_text_similarity)
register_grader_type("multi", _build_multi)
register_grader_type("endpoint", _build_endpoint)
register_grader_type("score_model", _build_score_model)
register_grader_type("label_model", _build_label_model)
