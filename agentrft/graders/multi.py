"""`multi` grader: several graders combined by a `calculate_output` formula.

    {"type": "multi", "name": "answer_and_format",
     "graders": {"correct": {"type": "string_check", ...},
                 "similar": {"type": "text_similarity", ...}},
     "calculate_output": "0.8 * correct + 0.2 * similar"}

The sub-graders run concurrently on the same sample. `sub_rewards` maps each key to its
reward; `reward` is the formula over those rewards, clipped to [0, 1], with the unclipped
value in `metadata.scores.raw` (and the sub-graders' own scores in
`metadata.scores.graders.<key>`).

Build time (`build_multi_grader`): every sub-grader is built through `build_grader`, and a
mistake in one is a SpecError naming `grader.graders.<key>.<field>` (nested multis nest the
path). The formula is parsed once; a syntax error or a variable that is not a key is a
SpecError on `grader.calculate_output` (OpenAI calls the latter an invalid variable).
Keys must be formula identifiers (`[A-Za-z_][A-Za-z0-9_]*`), else the formula could not
name them. Keys the formula does not use still run and show in `sub_rewards`.

Grade time:
- flags: the result carries the union of every sub-grader's raised flags, and their
  detail texts prefixed with the key (`"judge: HTTP 500 ..."`), so a sub-grader that could
  not score makes the whole rollout discarded (DISCARD_FLAGS), and one that flagged the
  sample (`invalid_variable_error`) scores through the formula with its 0.
- a sub-grader raising `GraderInfraFailure` (the Grader protocol's other way of saying "no
  score") makes this grader raise `GraderInfraFailure` naming the key, after all the
  sub-graders have finished (none is left running). Any other exception is a bug and
  propagates unchanged.
- [decision] when the formula has no finite value for these sub-rewards (division by zero,
  log of 0, overflow): reward 0 with `formula_parse_error`, the only formula flag OpenAI
  has, and the reason in `metadata.scores.formula_error`. The flag is in DISCARD_FLAGS, so
  the rollout is discarded rather than scored 0: the formula, not the model, failed.
- `token_usage` is summed over the sub-graders (None when none reports any);
  `sampled_model_name` is kept when all sub-graders that name a model name the same one.
- [decision] `execution_time` is the wall-clock time of the whole multi grade (the
  sub-graders overlap, so the sum of theirs would overstate it).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Annotated, Any, Callable

from pydantic import BeforeValidator

from agentrft.errors import GraderInfraFailure, SpecError
from agentrft.graders.base import DETAIL_KEYS, Grader, GraderResult
from agentrft.graders.config import GraderConfig, invalid, read_config
from agentrft.graders.formula import Formula, FormulaEvalError, FormulaParseError, parse_formula

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MultiGrader(Grader):
    type = "multi"

    def __init__(self, name: str, graders: dict[str, Grader], calculate_output: str | Formula):
        if not graders:
            raise SpecError("needs at least one grader", field="grader.graders")
        self.name = name
        self.graders = dict(graders)
        if isinstance(calculate_output, Formula):
            self.formula = calculate_output
        else:
            try:
                self.formula = parse_formula(calculate_output, variables=set(graders))
            except FormulaParseError as exc:
                raise SpecError(str(exc), field="grader.calculate_output") from None
        unknown = sorted(self.formula.variables - set(graders))
        if unknown:
            raise SpecError(f"unknown variables {unknown} (known: {sorted(graders)})",
                            field="grader.calculate_output")

    async def grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str) -> GraderResult:
        start = time.perf_counter()
        keys = list(self.graders)
        # return_exceptions: wait for every sub-grader even when one fails, so none keeps
        # running (and calling endpoints) after this grade has returned.
        outcomes = await asyncio.gather(
            *(self.graders[k].grade(sample, item, trace_id) for k in keys), return_exceptions=True)
        for key, outcome in zip(keys, outcomes):
            if isinstance(outcome, GraderInfraFailure):
                raise GraderInfraFailure(
                    f"multi grader {self.name!r}: sub-grader {key!r} failed: {outcome}") from outcome
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        results: dict[str, GraderResult] = dict(zip(keys, outcomes))  # type: ignore[arg-type]

        sub_rewards = {k: float(r.reward) for k, r in results.items()}
        errors = {flag: True for r in results.values() for flag in r.raised_flags}
        details = _merge_details(results)
        scores: dict[str, Any] = {}
        sub_scores = {k: r.metadata["scores"] for k, r in results.items()
                      if r.metadata.get("scores")}
        if sub_scores:
            scores["graders"] = sub_scores
        try:
            raw = self.formula.evaluate(sub_rewards)
            reward = min(1.0, max(0.0, raw))
            scores["raw"] = raw
        except FormulaEvalError as exc:
            reward = 0.0
            errors["formula_parse_error"] = True
            scores["formula_error"] = str(exc)
        models = {r.metadata.get("sampled_model_name") for r in results.values()} - {None}
        return GraderResult.make(
            reward, name=self.name, type=self.type, errors=errors, details=details,
            execution_time=time.perf_counter() - start, scores=scores, sub_rewards=sub_rewards,
            token_usage=_sum_usage(results.values()),
            sampled_model_name=models.pop() if len(models) == 1 else None)


def build_multi_grader(config: dict[str, Any],
                       build_grader: Callable[[dict[str, Any]], Grader]) -> MultiGrader:
    """The `multi` factory for `register_grader_type`; `build_grader` builds each sub-grader
    (the registry's, handed in: the registry imports this module, not the other way round)."""

    typed = read_config(MultiConfig, config)
    graders: dict[str, Grader] = {}
    for key, sub in typed.graders.items():
        try:
            graders[key] = build_grader(sub)
        except SpecError as exc:
            raise _renest(exc, f"grader.graders.{key}") from None
    return MultiGrader(typed.name, graders, typed.calculate_output)


def _sub_graders(value: Any) -> Any:
    """An object of sub-grader configs by key; each key must be nameable in the formula."""
    if not isinstance(value, dict):
        invalid(f"expected an object of graders by key, got {type(value).__name__}")
    if not value:
        invalid("needs at least one grader")
    for key in value:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            invalid(f"key {key!r} cannot be named in a formula (use letters, digits and _, "
                    "not starting with a digit)", at=f".{key}")
    return value


class MultiConfig(GraderConfig):
    """`graders` are checked only as far as their keys here: each is built (and checked) by
    the registry's `build_grader`, its errors renested under `grader.graders.<key>`."""

    name: str
    calculate_output: str
    graders: Annotated[dict[str, Any], BeforeValidator(_sub_graders)]


def _renest(exc: SpecError, where: str) -> SpecError:
    """`grader.reference: …` from a sub-grader's factory → `grader.graders.<key>.reference: …`."""
    field, message = exc.field, str(exc)
    if field is None:
        return SpecError(message, field=where)
    if message.startswith(field + ": "):
        message = message[len(field) + 2:]
    suffix = field[len("grader"):] if field == "grader" or field.startswith("grader.") \
        else "." + field
    return SpecError(message, field=where + suffix)


def _merge_details(results: dict[str, GraderResult]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for detail_key in DETAIL_KEYS:
        texts = [f"{k}: {r.metadata['errors'][detail_key]}" for k, r in results.items()
                 if (r.metadata.get("errors") or {}).get(detail_key)]
        if texts:
            merged[detail_key] = "; ".join(texts)
    return merged


def _sum_usage(results: Any) -> dict[str, int] | None:
    total: dict[str, int] = {}
    for r in results:
        for k, v in (r.metadata.get("token_usage") or {}).items():
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    return total or None
