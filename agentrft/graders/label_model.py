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

from typing import Annotated, Any

from pydantic import BeforeValidator, model_validator

from agentrft.graders.config import invalid, read_config
from agentrft.graders.model_grader_config import ModelGraderConfig, judge_from_config
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


def _labels(value: Any) -> list[str]:
    """A non-empty list of distinct, non-blank strings."""
    if not isinstance(value, list) or not value:
        invalid("expected a non-empty list of strings")
    for i, label in enumerate(value):
        if not isinstance(label, str) or not label.strip():
            invalid(f"expected a non-empty string, got {label!r:.80}", at=f"[{i}]")
        if label in value[:i]:
            invalid(f"{label!r} appears twice", at=f"[{i}]")
    return value


Labels = Annotated[list[str], BeforeValidator(_labels)]


class LabelModelConfig(ModelGraderConfig):
    """`passing_labels` are some of `labels`; no two labels differ only in case."""

    labels: Labels
    passing_labels: Labels

    @model_validator(mode="after")
    def _labels_agree(self) -> "LabelModelConfig":
        for i, label in enumerate(self.passing_labels):
            if label not in self.labels:
                invalid(f"{label!r} is not one of labels {list(self.labels)}",
                        at=f".passing_labels[{i}]")
        folded = [label.casefold() for label in self.labels]
        for i, label in enumerate(folded):
            if label in folded[:i]:  # "Yes" and "yes": an answer "YES" could not be placed
                invalid(f"{self.labels[i]!r} differs from another label only in case",
                        at=f".labels[{i}]")
        return self


def from_config(config: dict[str, Any]) -> LabelModelGrader:
    typed = read_config(LabelModelConfig, config)
    return LabelModelGrader(
        name=typed.name, judge=judge_from_config(typed), input=typed.messages(),
        labels=tuple(typed.labels), passing_labels=tuple(typed.passing_labels),
        params=typed.judge_params())
