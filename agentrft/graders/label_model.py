"""`label_model`: a judge model picks one of `labels`; reward 1.0 for a passing label.

Config (OpenAI's shape, plus `base_url` / `api_key_env` and `sampling_params`)::

    {"type": "label_model", "name": "verdict", "model": "gpt-4o-mini",
     "base_url": "http://localhost:8000/v1",
     "input": [{"role": "user", "content": "Is {{sample.output_text}} the same answer as "
                                           "{{item.reference}}? Answer correct or incorrect."}],
     "labels": ["correct", "incorrect"], "passing_labels": ["correct"]}

Reading the answer: `{"result": "<label>"}` (anywhere in the reply, as for score_model) or
the bare label as the whole reply (surrounding quotes, backticks, bold and a final period
are ignored). An exact match wins, then a case-insensitive one. Anything else →
`model_grader_parse_error` (or `model_grader_refusal_error` when the judge declined).
The chosen label is in `metadata.scores.label`.
"""

from __future__ import annotations

from typing import Any

from agentrft.errors import SpecError
from agentrft.graders.model_grader_config import (
    COMMON_OPTIONAL, check_keys, judge_from_config, messages_from_config, params_from_config,
    string_field,
)
from agentrft.graders.model_judge import Judge, JudgeMessage, JudgeParams, ModelGrader, match_label


class LabelModelGrader(ModelGrader):
    type = "label_model"

    def __init__(self, name: str, judge: Judge, input: tuple[JudgeMessage, ...],
                 labels: tuple[str, ...], passing_labels: tuple[str, ...],
                 params: JudgeParams = JudgeParams()):
        super().__init__(name, judge, input, params)
        self.labels, self.passing_labels = tuple(labels), frozenset(passing_labels)

    def answer_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"result": {"enum": list(self.labels)}},
                "required": ["result"], "additionalProperties": False}

    def read_answer(self, text: str) -> tuple[float, dict[str, Any], bool | None]:
        label = match_label(text, self.labels)
        passed = label in self.passing_labels
        return (1.0 if passed else 0.0), {"label": label}, passed


def _labels(config: dict[str, Any], key: str) -> tuple[str, ...]:
    value = config[key]
    if not isinstance(value, list) or not value:
        raise SpecError("expected a non-empty list of strings", field=f"grader.{key}")
    for i, label in enumerate(value):
        if not isinstance(label, str) or not label.strip():
            raise SpecError(f"expected a non-empty string, got {label!r:.80}",
                            field=f"grader.{key}[{i}]")
        if label in value[:i]:
            raise SpecError(f"{label!r} appears twice", field=f"grader.{key}[{i}]")
    return tuple(value)


def from_config(config: dict[str, Any]) -> LabelModelGrader:
    check_keys(config, ("name", "model", "input", "labels", "passing_labels"), COMMON_OPTIONAL)
    labels = _labels(config, "labels")
    passing = _labels(config, "passing_labels")
    for i, label in enumerate(passing):
        if label not in labels:
            raise SpecError(f"{label!r} is not one of labels {list(labels)}",
                            field=f"grader.passing_labels[{i}]")
    folded = [label.casefold() for label in labels]
    for i, label in enumerate(folded):
        if label in folded[:i]:  # "Yes" and "yes": an answer "YES" could not be placed
            raise SpecError(f"{labels[i]!r} differs from another label only in case",
                            field=f"grader.labels[{i}]")
    return LabelModelGrader(
        name=string_field(config, "name"), judge=judge_from_config(config),
        input=messages_from_config(config["input"]), labels=labels, passing_labels=passing,
        params=params_from_config(config.get("sampling_params")))
