"""The run directory: append-only JSONL records that survive a crash, and the one reader of
what a run (`train`, `evaluate`, a job) wrote there.

    metrics.jsonl    one line per step (and step 0: the baseline eval)
    rollouts.jsonl   every rollout, train and eval, with its step and phase
    events.jsonl     human-readable messages (type "message") about the run
    job.json         the job spec as run
    summary.json     the numbers of an `evaluate` output dir
    checkpoints/step_N/state.json   what a checkpoint was taken at (`train.checkpoint`)

Writers append a line and flush; readers (analysis, the dashboard, the jobs worker) get what a
crash leaves behind without an error: a torn or half-written line is skipped, a JSON file that
is missing or half-written reads as {}.

    run = RunDir("runs/demo")                  # a writer: creates the directory
    run.log_metrics({"step": 1, ...})
    run = RunDir.existing("runs/demo")         # a reader: creates nothing
    run.read_metrics(), run.read_rollouts(), run.read_events(), run.spec(), run.summary()

`analysis.traces.RolloutIndex` reads rollouts.jsonl its own way: incrementally, by byte
offset, for a dashboard that follows a growing 50,000-line file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

METRICS, ROLLOUTS, EVENTS = "metrics.jsonl", "rollouts.jsonl", "events.jsonl"
SPEC, SUMMARY = "job.json", "summary.json"


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, in order; blank lines, lines torn by a crash and
    lines that are not objects are skipped. [] when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON object file, or {} while it is missing or half-written."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class RunDir:
    def __init__(self, path: str | Path, *,
                 on_event: Callable[[str, str, dict | None], None] | None = None,
                 create: bool = True):
        """`on_event(message, level, data)` also receives every event (the jobs service
        stores them). `create=False` (or `RunDir.existing`) for a reader: nothing is made."""
        self.on_event = on_event
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        self.metrics = self.path / METRICS
        self.rollouts = self.path / ROLLOUTS
        self.events = self.path / EVENTS
        self.spec_file = self.path / SPEC
        self.summary_file = self.path / SUMMARY

    @classmethod
    def existing(cls, path: str | Path) -> "RunDir":
        """A run dir to read (it may not exist: every read then finds nothing)."""
        return cls(path, create=False)

    @staticmethod
    def _append(path: Path, record: dict[str, Any]) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            f.flush()

    def log_metrics(self, record: dict[str, Any]) -> None:
        self._append(self.metrics, record)

    def log_rollout(self, record: dict[str, Any]) -> None:
        self._append(self.rollouts, record)

    def log_event(self, message: str, *, level: str = "info", data: dict | None = None,
                  type: str = "message") -> dict[str, Any]:
        """Append an OpenAI job event (`type` "message", or e.g. "warning"); return it."""
        event = {"object": "fine_tuning.job.event", "type": type, "level": level,
                 "message": message, "data": data, "created_at": int(time.time())}
        self._append(self.events, event)
        if self.on_event:
            self.on_event(message, level, data)
        return event

    # --- reading ----------------------------------------------------------------------------

    def read_metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl: one record per step, in order (step 0 = the baseline eval)."""
        return read_jsonl(self.metrics)

    def read_rollouts(self) -> list[dict[str, Any]]:
        """rollouts.jsonl whole (an eval's; a long run's is large: see `RolloutIndex`)."""
        return read_jsonl(self.rollouts)

    def read_events(self) -> list[dict[str, Any]]:
        """events.jsonl, oldest first."""
        return read_jsonl(self.events)

    def spec(self) -> dict[str, Any]:
        """job.json: the job spec as run ({} for an eval dir, or while it is written)."""
        return read_json_object(self.spec_file)

    def summary(self) -> dict[str, Any]:
        """summary.json of an `evaluate` output dir ({} for a training run)."""
        return read_json_object(self.summary_file)

    def checkpoint_states(self) -> list[tuple[Path, dict[str, Any]]]:
        """(state.json path, its content) of each checkpoint, by step directory name; one
        being written (unreadable) is left out."""
        out = []
        for state in sorted((self.path / "checkpoints").glob("step_*/state.json")):
            content = read_json_object(state)
            if content:
                out.append((state, content))
        return out

    # --- rewriting on resume -------------------------------------------------------------------

    def truncate_after(self, step: int) -> None:
        """Drop metric and rollout lines of steps after `step` (work lost in a crash is redone,
        and redone exactly once)."""
        for path in (self.metrics, self.rollouts):
            if not path.is_file():
                continue
            keep = []
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    if json.loads(line).get("step", 0) <= step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue  # a line torn by the crash
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(k + "\n" for k in keep))
            tmp.replace(path)
