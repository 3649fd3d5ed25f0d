"""Is there anything to learn? The readiness gate before training and the stall alarm during it.

A group-relative policy gradient learns only from groups whose rollouts scored differently:
a row the model always fails (or always passes) gives every rollout the same advantage, 0.
So a job needs a nonzero, varied baseline, and a job whose groups are all flat trains nothing
while looking busy.

    first step's groups ──► Readiness (zero-variance / never-solved / always-solved shares,
           │                 best-of-N, mean) ──► an event, always
           │
           └── every group flat? ──► NotReady: the job stops with advice, before any update,
                                     unless hyperparameters.readiness_gate is false
    every step ──► StallWatch: `stall_steps` steps in a row with no trained sequence
                               ──► a `warning` event (the dashboard shows it as a banner)

Both run in train/loop.py: the gate after the first step's rollouts (a step the discard-rate
pause stopped never reaches it; discarded rollouts count in no group), StallWatch after every
step with STALL_STEPS = 3.

The gate reads the first training step's groups rather than the baseline eval: they have
group_size ≥ 2 rollouts per row by construction (an eval with one sample per row has zero
variance everywhere) and cost nothing extra, since the step samples them anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from agentrft.errors import AgentRFTError

TOL = 1e-9


class NotReady(AgentRFTError):
    """No group of the first step can teach anything: training would change nothing."""


@dataclass(frozen=True)
class Readiness:
    groups: int
    zero_variance_share: float     # groups whose rollouts all scored the same
    never_solved_share: float      # groups whose best rollout scored 0
    always_solved_share: float     # groups whose every rollout scored 1
    best_of_n: float               # mean over groups of the best reward
    mean_reward: float

    @classmethod
    def of(cls, rewards_by_group: Iterable[list[float]]) -> "Readiness":
        groups = [g for g in rewards_by_group if g]
        if not groups:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        n = len(groups)
        return cls(groups=n,
                   zero_variance_share=sum(max(g) - min(g) <= TOL for g in groups) / n,
                   never_solved_share=sum(max(g) <= TOL for g in groups) / n,
                   always_solved_share=sum(min(g) >= 1 - TOL for g in groups) / n,
                   best_of_n=sum(max(g) for g in groups) / n,
                   mean_reward=sum(sum(g) / len(g) for g in groups) / n)

    @property
    def can_teach(self) -> bool:
        return self.groups > 0 and self.zero_variance_share < 1 - TOL

    def line(self) -> str:
        pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
        return (f"readiness over {self.groups} groups: mean reward {self.mean_reward:.3f}, "
                f"best-of-N {self.best_of_n:.3f}; {pct(self.zero_variance_share)} zero variance "
                f"(no learning signal), {pct(self.never_solved_share)} never solved, "
                f"{pct(self.always_solved_share)} always solved")

    def advice(self) -> str:
        if self.groups == 0:
            why = "every rollout was discarded: the events name the reasons"
        elif self.always_solved_share >= 1 - TOL:
            why = "the model already gets every row right: use harder rows"
        elif self.never_solved_share >= 1 - TOL:
            why = ("the model never earns any reward: add demonstrations of the tool calls and "
                   "answer format to the prompts, give partial credit in the grader (e.g. a "
                   "`multi` grader with a format or tool-use term), raise compute_multiplier "
                   "for more tries per row, or start from a stronger model")
        else:
            why = ("every row's rollouts score the same: give partial credit in the grader, "
                   "raise temperature or compute_multiplier, or mix easier and harder rows")
        return (f"no group of the first step can teach anything ({self.line()}); {why}. "
                f"Set hyperparameters.readiness_gate: false to train anyway.")


class StallWatch:
    """Counts steps in a row that trained no sequence; says so once per stall."""

    def __init__(self, stall_steps: int):
        self.stall_steps, self.run = stall_steps, 0

    def observe(self, step: int, trained_sequences: int) -> str | None:
        self.run = self.run + 1 if trained_sequences == 0 else 0
        if self.stall_steps and self.run == self.stall_steps:
            return (f"training stalled: {self.run} steps in a row (through step {step}) trained "
                    f"no sequence, because every group's rollouts scored the same (or were "
                    f"discarded). The weights are not changing; see the readiness advice: "
                    f"partial credit, more demonstrations, a larger compute_multiplier")
        return None
