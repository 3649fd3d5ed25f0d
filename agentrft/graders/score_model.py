"""`score_model`: a judge model reads the rollout and answers `{"result": <number>}`.

Config (OpenAI's shape, plus `base_url` / `api_key_env` for any OpenAI-compatible server)::

    {"type": "score_model", "name": "judge", "model": "bundled:smollm2-135m-instruct",
     "input": [{"role": "system", "content": "Score 1-7. Answer {\"result\": n}."},
               {"role": "user", "content": "{{item.question}}\\n{{sample.output_text}}"}],
     "range": [1, 7], "sampling_params": {"temperature": 0, "max_completions_tokens": 64},
     "pass_threshold": 5}

Reading the answer: the first JSON object in the reply with a "result" key (prose around it
and ```json fences are fine); its value must be a finite number (a numeric string is
accepted). It is clipped to `range` and mapped to [0, 1] by (x - min) / (max - min); the
judge's unclipped number stays in `metadata.scores.raw`. `pass_threshold` is in the judge's
units (the range's), as in OpenAI's graders: `passed` = clipped score ≥ pass_threshold.

Failures are flags, never exceptions (see `model_judge.ModelGrader`): no readable number →
`model_grader_parse_error`; a refusal → `model_grader_refusal_error`; no answer at all →
`model_grader_server_error`. All three discard the rollout rather than score it 0.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, model_validator

from agentrft.errors import SpecError
from agentrft.graders.config import FiniteNumber, invalid, read_config
from agentrft.graders.model_grader_config import ModelGraderConfig, judge_from_config
from agentrft.graders.model_judge import Judge, JudgeMessage, JudgeParams, ModelGrader, parse_score


class ScoreModelGrader(ModelGrader):
    type = "score_model"

    def __init__(self, name: str, judge: Judge, input: tuple[JudgeMessage, ...],
                 range: tuple[float, float] = (0.0, 1.0), params: JudgeParams = JudgeParams(),
                 pass_threshold: float | None = None):
        super().__init__(name, judge, input, params)
        if not range[0] < range[1]:
            raise SpecError(f"expected [min, max] with min < max, got {list(range)}",
                            field="grader.range")
        self.range = (float(range[0]), float(range[1]))
        self.pass_threshold = pass_threshold

    def answer_schema(self) -> dict[str, Any]:
        lo, hi = self.range
        return {"type": "object", "properties": {"result": {
                    "type": "number", "minimum": lo, "maximum": hi}},
                "required": ["result"], "additionalProperties": False}

    def read_answer(self, text: str) -> tuple[float, dict[str, Any], bool | None]:
        raw = parse_score(text)
        lo, hi = self.range
        score = min(hi, max(lo, raw))
        passed = None if self.pass_threshold is None else score >= self.pass_threshold
        return (score - lo) / (hi - lo), {"raw": raw}, passed


def _range(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        invalid(f"expected [min, max], got {value!r:.80}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            invalid(f"expected a finite number, got {v!r:.80}", at=f"[{i}]")
    if not value[0] < value[1]:
        invalid(f"expected min < max, got {value}")
    return float(value[0]), float(value[1])


class ScoreModelConfig(ModelGraderConfig):
    """`range` defaults to [0, 1]; `pass_threshold` is in its units and must lie within it."""

    range: Annotated[tuple[float, float] | None, BeforeValidator(_range)] = None
    pass_threshold: FiniteNumber | None = None

    @model_validator(mode="after")
    def _threshold_in_range(self) -> "ScoreModelConfig":
        lo, hi = self.range or (0.0, 1.0)
        if self.pass_threshold is not None and not lo <= self.pass_threshold <= hi:
            invalid(f"{self.pass_threshold} is outside range [{lo:g}, {hi:g}]",
                    at=".pass_threshold")
        return self


def from_config(config: dict[str, Any]) -> ScoreModelGrader:
    typed = read_config(ScoreModelConfig, config)
    return ScoreModelGrader(
        name=typed.name, judge=judge_from_config(typed), input=typed.messages(),
        range=typed.range or (0.0, 1.0), params=typed.judge_params(),
        pass_threshold=typed.pass_threshold)
