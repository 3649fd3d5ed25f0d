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

from typing import Any

from agentrft.errors import SpecError
from agentrft.graders.model_grader_config import (
    COMMON_OPTIONAL, check_keys, judge_from_config, messages_from_config, number_field,
    params_from_config, string_field,
)
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


def from_config(config: dict[str, Any]) -> ScoreModelGrader:
    check_keys(config, ("name", "model", "input"), COMMON_OPTIONAL + ("range", "pass_threshold"))
    lo, hi = 0.0, 1.0
    if config.get("range") is not None:
        value = config["range"]
        if not isinstance(value, list) or len(value) != 2:
            raise SpecError(f"expected [min, max], got {value!r:.80}", field="grader.range")
        lo, hi = (number_field(v, f"grader.range[{i}]") for i, v in enumerate(value))
        if not lo < hi:
            raise SpecError(f"expected min < max, got {value}", field="grader.range")
    threshold = None
    if config.get("pass_threshold") is not None:
        threshold = number_field(config["pass_threshold"], "grader.pass_threshold")
        if not lo <= threshold <= hi:
            raise SpecError(f"{threshold} is outside range [{lo:g}, {hi:g}]",
                            field="grader.pass_threshold")
    return ScoreModelGrader(
        name=string_field(config, "name"), judge=judge_from_config(config),
        input=messages_from_config(config["input"]), range=(lo, hi),
        params=params_from_config(config.get("sampling_params")), pass_threshold=threshold)
