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


@dataclass
class GraderResult:
    reward: float
    sub_rewards: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, reward: float, *, name: str, type: str, errors: dict[str, bool] | None = None,
             execution_time: float = 0.0, scores: dict[str, float] | None = None,
             sub_rewards: dict[str, float] | None = None,
             token_usage: dict[str, int] | None = None) -> "GraderResult":
        flags = {k: False for k in ERROR_KEYS}
        flags.update(errors or {})
        return cls(
            reward=float(reward),
            sub_rewards=dict(sub_rewards or {}),
            metadata={
                "name": name, "type": type, "errors": flags,
                "execution_time": execution_time, "scores": dict(scores or {}),
                "token_usage": token_usage,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {"reward": self.reward, "sub_rewards": self.sub_rewards, "metadata": self.metadata}


class Grader(abc.ABC):
    name: str
    type: str

    @abc.abstractmethod
    async def grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str) -> GraderResult:
        """Score one rollout; raise GraderInfraFailure if no score can be had."""
