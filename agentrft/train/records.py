"""The run directory: append-only JSONL records that survive a crash.

    metrics.jsonl    one line per step (and step 0: the baseline eval)
    rollouts.jsonl   every rollout, train and eval, with its step and phase
    events.jsonl     human-readable messages (type "message") about the run
    job.json         the job spec as run
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable


class RunDir:
    def __init__(self, path: str | Path, *,
                 on_event: Callable[[str, str, dict | None], None] | None = None):
        """`on_event(message, level, data)` also receives every event (the jobs service
        stores them)."""
        self.on_event = on_event
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics = self.path / "metrics.jsonl"
        self.rollouts = self.path / "rollouts.jsonl"
        self.events = self.path / "events.jsonl"

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

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

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
