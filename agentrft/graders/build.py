"""Grader configs (OpenAI's JSON shapes) → `Grader` objects, through a registry of types.

Built-in types register exactly as a plugin would, declaring their config as a typed model
(`agentrft.graders.config`)::

    class MyConfig(GraderConfig):
        name: str
        url: str

    def build_my_grader(config: dict) -> Grader:
        typed = read_config(MyConfig, config)       # SpecError naming the field, or MyConfig
        return MyGrader(typed.name, typed.url)

    register_grader_type("my_grader", build_my_grader)

This module imports the grader modules (lazily, so a job pays only for its types); they never
import it back: each declares its config model next to the grader, and `multi` gets
`build_grader` handed in to build its sub-graders.

Every config rejects unknown keys: a typo in a grader config (`refrence`) must be an
error naming `grader.refrence`, not a silently ignored key that scores everything 0.
"""

from __future__ import annotations

from typing import Any, Callable

from agentrft.errors import SpecError
from agentrft.graders.base import Grader
# the config machinery is re-exported here for plugins, which register through this module
from agentrft.graders.config import GraderConfig, read_config  # noqa: F401
from agentrft.graders.python_callable import PythonCallableConfig, PythonCallableGrader
from agentrft.graders.string_check import StringCheckConfig, StringCheckGrader

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


def _build_string_check(config: dict[str, Any]) -> Grader:
    typed = read_config(StringCheckConfig, config)
    return StringCheckGrader(name=typed.name, input=typed.input, reference=typed.reference,
                             operation=typed.operation)


def _build_python(config: dict[str, Any]) -> Grader:
    """OpenAI's `source` (untrusted, sandboxed) or our `callable` (trusted, in-process)."""
    if "source" in config:
        from agentrft.graders.python_source import from_config

        return from_config(config)
    typed = read_config(PythonCallableConfig, config)
    return PythonCallableGrader(name=typed.name, target=typed.callable)


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

    return build_multi_grader(config, build_grader)


def _build_endpoint(config: dict[str, Any]) -> Grader:
    from agentrft.graders.endpoint import build_endpoint_grader

    return build_endpoint_grader(config)


register_grader_type("text_similarity", _build_text_similarity)
register_grader_type("multi", _build_multi)
register_grader_type("endpoint", _build_endpoint)
register_grader_type("score_model", _build_score_model)
register_grader_type("label_model", _build_label_model)
