"""Typed grader configs: one pydantic model per grader type, read into a `SpecError`.

Each grader module declares its config once, next to the grader: the fields, their types,
defaults and allowed values. `read_config` turns a user's JSON object into that model, or
raises a `SpecError` naming the first wrong field (`grader.refrence`, `grader.input[1].role`),
never a pydantic error dump::

    class MyConfig(GraderConfig):
        name: str
        url: str
        pass_threshold: Number | None = None

    config = read_config(MyConfig, raw)   # or SpecError: "grader.url: missing key 'url'"

What every config shares:
- unknown keys are errors (`extra="forbid"`): a typo must not be a silently ignored key that
  scores everything 0; `type` is always allowed (the registry has already read it);
- types are strict: `"0.5"` is not a number, `1` is not a string, `true` is not a number;
- a field's own message comes from `invalid(...)` in its validator; pydantic's built-in
  failures (missing, unknown, not a string, not an object) are worded here, once.
Errors are reported unknown keys first, then missing ones, then the rest in field order.
"""

from __future__ import annotations

import math
import numbers
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from agentrft.errors import SpecError

_MESSAGE = "grader_config"  # the error type of messages written by validators here


class StrictConfig(BaseModel):
    """Strict, frozen, no unknown keys: any object a user writes inside a grader config."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GraderConfig(StrictConfig):
    """A grader type's config. `type` is allowed; the registry has already read it."""

    type: str | None = None


Config = TypeVar("Config", bound=StrictConfig)


def invalid(message: str, at: str = "") -> NoReturn:
    """Fail a validator with `message` (verbatim), at the field or `at` below it (`[1]`)."""
    raise PydanticCustomError(_MESSAGE, "{message}", {"message": message, "at": at})


def read_config(model: type[Config], config: dict[str, Any], where: str = "grader") -> Config:
    """`config` as a `model`; SpecError naming `where.<field>` for the first thing wrong."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: {"extra_forbidden": 0, "missing": 1}.get(
            e["type"], 2))  # stable: field order within each kind
        raise _spec_error(errors[0], where) from None


def _spec_error(error: Any, where: str) -> SpecError:
    loc = list(error["loc"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    kind = error["type"]
    field = where + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    if kind == _MESSAGE:
        return SpecError(ctx["message"], field=field + ctx.get("at", ""))
    if kind == "extra_forbidden" or kind == "missing":
        what = "unknown" if kind == "extra_forbidden" else "missing"
        return SpecError(f"{what} key {loc[-1]!r}", field=field)
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return SpecError(f"expected an object, got {type(value).__name__}", field=field)
    if kind == "string_type":
        # The value is not echoed: it may be a secret (a header's API key).
        return SpecError(f"expected a string, got {type(value).__name__}", field=field)
    if kind in ("list_type", "tuple_type"):
        return SpecError(f"expected a list, got {type(value).__name__}", field=field)
    return SpecError(error["msg"], field=field)  # a type no config here uses


# --- field types shared by the grader configs --------------------------------------------

def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)):
        invalid(f"expected a number, got {value!r}")
    return float(value)


def _positive(value: float) -> float:
    if value <= 0:
        invalid(f"must be greater than 0, got {value}")
    return value


def _finite(value: Any) -> float:
    """The model graders' wording of `_number` (their messages say "finite", capped at 80)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        invalid(f"expected a finite number, got {value!r:.80}")
    return float(value)


def non_empty_text(value: Any) -> str:
    """Also rejects a written null, where the field's default (absent) is None."""
    if not isinstance(value, str) or not value:
        invalid(f"expected a non-empty string, got {value!r:.80}")
    return value


# A finite number (a bool is not one); `"0.5"` is an error, not 0.5.
Number = Annotated[float, BeforeValidator(_number)]
PositiveNumber = Annotated[float, BeforeValidator(_number), AfterValidator(_positive)]
FiniteNumber = Annotated[float, BeforeValidator(_finite)]
NonEmptyText = Annotated[str, BeforeValidator(non_empty_text)]
# Optional when absent, yet a written `null` is an error (as it was before configs were typed).
OptionalNonEmptyText = Annotated[str | None, BeforeValidator(non_empty_text)]


def one_of(allowed: Any, message: str) -> AfterValidator:
    """A validator keeping a string within `allowed`; `message` formats `{value!r}` and
    `{allowed}` (the allowed values joined by commas)."""

    def check(value: str) -> str:
        if value not in allowed:
            invalid(message.format(value=value, allowed=", ".join(allowed)))
        return value

    return AfterValidator(check)
