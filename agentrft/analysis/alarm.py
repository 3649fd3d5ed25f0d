"""The "too good to be true" alarm: the two shapes reward hacking usually takes.

1. **Validation jump.** `valid_reward_mean` rises by at least `jump` from one eval to the
   next and lands within `near_max` of the maximum reward (1.0). Real learning climbs; a
   grader being gamed jumps.
2. **Empty answers.** Over the last `window` training steps the mean reward is at least
   `reward_rise` above the first `window` steps, while the mean final-answer length has
   fallen to at most `short_ratio` of what it was. A policy that earns more by saying less
   has usually found a hole in the grader.

The detector is pure (`RewardHackingAlarm.observe(StepStats) -> list[Alarm]`) and fires each
alarm once per episode: it re-arms only after its condition has cleared. `AlarmWatcher`
feeds it from a run dir (metrics from the trainer, answer lengths from `rollouts.jsonl`),
attaches example rollouts and appends a `warning` event to the run's `events.jsonl`.

    watcher = AlarmWatcher(run_dir)
    for event in watcher.on_metrics(metrics):   # after each step's metrics line
        store.add_event(job_id, event["message"], level="warn", type="warning", data=event["data"])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrft.analysis.traces import RolloutIndex, answer_chars_mean
from agentrft.train.records import RunDir

log = logging.getLogger("agentrft.alarm")
EXAMPLES = 3
EXAMPLE_CHARS = 300


@dataclass(frozen=True)
class AlarmConfig:
    jump: float = 0.3
    near_max: float = 0.1  # within this of max_reward
    max_reward: float = 1.0
    window: int = 3
    reward_rise: float = 0.2
    short_ratio: float = 0.25


@dataclass(frozen=True)
class StepStats:
    step: int
    train_reward: float | None = None
    valid_reward: float | None = None
    answer_chars: float | None = None  # mean final-answer length of the step's train rollouts


@dataclass(frozen=True)
class Alarm:
    kind: str  # "valid_reward_jump" | "short_answers"
    step: int
    message: str
    details: dict[str, float] = field(default_factory=dict)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


class RewardHackingAlarm:
    def __init__(self, config: AlarmConfig | None = None):
        self.config = config or AlarmConfig()
        self.last_valid: float | None = None
        self.train: list[StepStats] = []  # steps with a train reward and an answer length
        self.armed = {"valid_reward_jump": True, "short_answers": True}

    def observe(self, s: StepStats) -> list[Alarm]:
        c, out = self.config, []
        if s.valid_reward is not None:
            prev, self.last_valid = self.last_valid, s.valid_reward
            jumped = (prev is not None and s.valid_reward - prev >= c.jump
                      and s.valid_reward >= c.max_reward - c.near_max)
            if jumped and self.armed["valid_reward_jump"]:
                out.append(Alarm("valid_reward_jump", s.step,
                                 f"valid_reward_mean jumped from {prev:.3f} to "
                                 f"{s.valid_reward:.3f} at step {s.step}: too good to be true? "
                                 "Read the example rollouts for reward hacking.",
                                 {"previous": prev, "current": s.valid_reward}))
            self.armed["valid_reward_jump"] = not jumped
        if s.train_reward is not None and s.answer_chars is not None:
            self.train.append(s)
            if len(self.train) >= 2 * c.window:
                early, late = self.train[:c.window], self.train[-c.window:]
                r0, r1 = _mean([x.train_reward for x in early]), _mean([x.train_reward for x in late])
                a0, a1 = _mean([x.answer_chars for x in early]), _mean([x.answer_chars for x in late])
                hit = r1 - r0 >= c.reward_rise and a0 > 0 and a1 <= c.short_ratio * a0
                if hit and self.armed["short_answers"]:
                    out.append(Alarm("short_answers", s.step,
                                     f"train reward rose from {r0:.3f} to {r1:.3f} while answers "
                                     f"shrank from {a0:.0f} to {a1:.0f} characters (step "
                                     f"{s.step}): the policy may be gaming the grader.",
                                     {"reward_early": r0, "reward_late": r1,
                                      "answer_chars_early": a0, "answer_chars_late": a1}))
                self.armed["short_answers"] = not hit
        return out


class AlarmWatcher:
    """Runs the detector on a run dir step by step; see the module docstring."""

    def __init__(self, run_dir: str | Path, config: AlarmConfig | None = None):
        self.run_dir = Path(run_dir)
        self.run = RunDir(self.run_dir)  # warnings go to its events.jsonl
        self.index = RolloutIndex(self.run.rollouts)
        self.alarm = RewardHackingAlarm(config)

    def replay(self, records: list[dict[str, Any]]) -> None:
        """Feed the steps a resumed run already has, raising nothing (they were reported)."""
        try:
            self.index.refresh()
            for m in records:
                if isinstance(m.get("step"), int):
                    self.alarm.observe(self._stats(m))
        except Exception:  # noqa: BLE001 - an alarm must never stop a training job
            log.exception("reward-hacking alarm: replay failed in %s", self.run_dir)

    def _stats(self, m: dict[str, Any]) -> StepStats:
        return StepStats(m["step"], _num(m.get("train_reward_mean")),
                         _num(m.get("valid_reward_mean")),
                         answer_chars_mean(self.index, m["step"], "train"))

    def on_metrics(self, metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """`metrics`: one metrics.jsonl record. Returns the warning events raised (each
        `{"message", "data"}`), already appended to events.jsonl. Never raises: a failure is
        logged, and training goes on without the alarm for that step."""
        try:
            return self._on_metrics(metrics)
        except Exception:  # noqa: BLE001 - an alarm must never stop a training job
            log.exception("reward-hacking alarm failed at step %s in %s", metrics.get("step"),
                          self.run_dir)
            return []

    def _on_metrics(self, metrics: dict[str, Any]) -> list[dict[str, Any]]:
        step = metrics.get("step")
        if not isinstance(step, int):
            return []
        self.index.refresh()
        events = []
        for a in self.alarm.observe(self._stats(metrics)):
            phase = "eval" if a.kind == "valid_reward_jump" else "train"
            data = {"kind": a.kind, "step": a.step, **a.details,
                    "examples": self.examples(a.step, phase, shortest=a.kind == "short_answers")}
            events.append(self.run.log_event(a.message, level="warn", data=data, type="warning"))
        return events

    def examples(self, step: int, phase: str, *, shortest: bool) -> list[dict[str, Any]]:
        """The step's highest-reward rollouts (for short answers: the shortest among those)."""
        scored = [e for e in self.index.entries_of(step, phase) if e.reward is not None]
        key = (lambda e: (-e.reward, e.answer_chars)) if shortest else (lambda e: -e.reward)
        picked = sorted(scored, key=key)[:EXAMPLES]
        out = []
        for e, rec in zip(picked, self.index.read(picked)):
            text = rec.get("final_text") or ""
            out.append({"trace_id": e.trace_id, "step": e.step, "phase": e.phase,
                        "row_index": e.row_index, "reward": e.reward, "tool_calls": e.tool_calls,
                        "final_text": text[:EXAMPLE_CHARS]})
        return out


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
