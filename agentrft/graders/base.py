"""The `Grader` protocol and the result shape of OpenAI's graders-run response.

A grader scores one finished rollout: `sample` (what the model produced, see
`agentrft.rollout.types.Rollout.to_sample`) against `item` (the dataset row's
reference data). It returns a `GraderResult` with `reward` in [0, 1], or raises
`agentrft.errors.GraderInfraFailure` when no score can be had (the rollout is discarded).

Example::

    class AlwaysHalf(Grader):
        name, type = "half", "python"
        async def grade(self, sample, item, trace_id):
            return GraderResult.make(0.5, name=self.name, type=self.type)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

# OpenAI's grader error flags; every result carries all of them.
ERROR_KEYS = (
    "formula_parse_error", "invalid_variable_error", "model_grader_parse_error",
    "model_grader_refusal_error", "model_grader_server_error", "python_grader_runtime_error",
    "python_grader_server_error", "sample_parse_error", "truncated_observation_error",
    "unresponsive_reward_error", "other_error",
)


# Flags that mean "the grader could not score this sample" (its own failure, not the
# sample's): the training loop discards such a rollout instead of scoring it 0, because a 0
# would teach the model to avoid whatever it did. The other flags (sample_parse_error,
# invalid_variable_error, truncated_observation_error) describe the sample: it scores 0.
DISCARD_FLAGS = frozenset({
    "formula_parse_error", "model_grader_parse_error", "model_grader_refusal_error",
    "model_grader_server_error", "python_grader_runtime_error", "python_grader_server_error",
    "unresponsive_reward_error", "other_error",
})

# Free-text companions of some flags, as in OpenAI's response (`None` when not set).
DETAIL_KEYS = ("model_grader_server_error_details", "python_grader_runtime_error_details",
               "python_grader_server_error_type")


@dataclass
class GraderResult:
    reward: float
    sub_rewards: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, reward: float, *, name: str, type: str, errors: dict[str, bool] | None = None,
             details: dict[str, str] | None = None,
             execution_time: float = 0.0, scores: dict[str, Any] | None = None,
             sub_rewards: dict[str, float] | None = None,
             token_usage: dict[str, int] | None = None,
             passed: bool | None = None,
             sampled_model_name: str | None = None) -> "GraderResult":
        """`errors`: flags to set (others False); `details`: texts for DETAIL_KEYS;
        `passed`: reward ≥ pass_threshold, for graders configured with one."""
        flags: dict[str, Any] = {k: False for k in ERROR_KEYS}
        flags.update({k: None for k in DETAIL_KEYS})
        flags.update(errors or {})
        flags.update(details or {})
        metadata: dict[str, Any] = {
            "name": name, "type": type, "errors": flags,
            "execution_time": execution_time, "scores": dict(scores or {}),
            "token_usage": token_usage, "sampled_model_name": sampled_model_name,
        }
        if passed is not None:
            metadata["passed"] = passed
        return cls(reward=float(reward), sub_rewards=dict(sub_rewards or {}), metadata=metadata)

    @classmethod
    def error(cls, flag: str, *, name: str, type: str, detail: str | None = None,
              execution_time: float = 0.0) -> "GraderResult":
        """Reward 0 with one error flag set (and its detail text, where the flag has one)."""
        details, scores = {}, {}
        if detail is not None:
            key = next((k for k in DETAIL_KEYS if k.startswith(flag)), None)
            if key:
                details = {key: detail}
            else:  # OpenAI has no detail field for this flag; keep the reason anyway
                scores = {"error_detail": detail}
        return cls.make(0.0, name=name, type=type, errors={flag: True}, details=details,
                        scores=scores, execution_time=execution_time)

    @property
    def raised_flags(self) -> list[str]:
        errors = self.metadata.get("errors") or {}
        return [k for k in ERROR_KEYS if errors.get(k)]

    @property
    def should_discard(self) -> bool:
        """True when the grader failed to score (see DISCARD_FLAGS)."""
        return any(flag in DISCARD_FLAGS for flag in self.raised_flags)

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's graders-run response shape. OpenAI's schema (and the `openai` SDK's
        `GraderRunResponse`) types `metadata.token_usage` as an integer, so it is the total
        there; the breakdown (prompt, completion, cached) stays in
        `model_grader_token_usage_per_model`, a free-form map in that schema."""
        usage = self.metadata.get("token_usage")
        model = self.metadata.get("sampled_model_name")
        metadata = dict(self.metadata)
        if isinstance(usage, dict):
            metadata["token_usage"] = int(usage.get("total_tokens") or 0)
        return {"reward": self.reward, "sub_rewards": self.sub_rewards, "metadata": metadata,
                "model_grader_token_usage_per_model": {model: usage} if model and usage else {}}


class Grader(abc.ABC):
    name: str
    type: str

    @abc.abstractmethod
    async def grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str) -> GraderResult:
        """Score one rollout; raise GraderInfraFailure if no score can be had."""
