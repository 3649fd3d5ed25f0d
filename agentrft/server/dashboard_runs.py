"""Run directories written outside the jobs service (`agentrft train --out`, `agentrft eval`,
`agentrft demo`), shown by the dashboard beside the jobs, read-only.

    agentrft server --runs runs/       # every run or eval dir under runs/, up to 3 levels down

A run's dashboard id is `run:` + its path relative to the root, parts joined by `:` so the
id is one URL path segment (`runs/demo/run` → `run:demo:run`; folders with a `:` in their
name are not listed). Ids are resolved inside the root only; anything else is "not found". What a job has in the store, a
run dir has on disk: status from events.jsonl (`finished N steps`) or summary.json (an
eval), events and warnings from events.jsonl, checkpoints from checkpoints/step_*/state.json.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from agentrft.train.records import METRICS, ROLLOUTS, RunDir

PREFIX, SEP = "run:", ":"
MAX_DEPTH = 3
RUNNING_WINDOW_S = 120  # a run whose files changed this recently counts as running
MARKERS = (METRICS, ROLLOUTS)


class RunDirs:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def ids(self) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            depth = len(Path(dirpath).relative_to(self.root).parts)
            dirnames[:] = sorted(d for d in dirnames if d != "checkpoints"
                                 and not d.startswith(".") and SEP not in d)
            if depth >= MAX_DEPTH:
                dirnames[:] = []
            if depth and any(m in filenames for m in MARKERS):
                found.append(PREFIX + SEP.join(Path(dirpath).relative_to(self.root).parts))
        return sorted(found)

    def path(self, run_id: str) -> Path | None:
        """The directory of `run_id`, or None (not a run id, outside the root, not a run)."""
        if not run_id.startswith(PREFIX) or "\x00" in run_id:
            return None
        parts = run_id[len(PREFIX):].split(SEP)
        if any(p in ("", ".", "..") or "/" in p or "\\" in p for p in parts):
            return None
        try:
            path = self.root.joinpath(*parts).resolve()
        except (OSError, ValueError):
            return None
        if path == self.root or not path.is_relative_to(self.root):
            return None
        if len(path.relative_to(self.root).parts) > MAX_DEPTH:
            return None
        return path if any((path / m).is_file() for m in MARKERS) else None

    # --- what the dashboard shows of a job, for a run dir ---------------------------------

    def job_object(self, run_id: str, path: Path) -> dict[str, Any]:
        run = RunDir.existing(path)
        spec, summary = run.spec(), run.summary()
        stamps = [(path / m).stat().st_mtime for m in MARKERS if (path / m).is_file()]
        last = max(stamps)
        finished = summary or any(str(e.get("message", "")).startswith("finished ")
                                  for e in run.read_events())
        status = ("succeeded" if finished else
                  "running" if time.time() - last < RUNNING_WINDOW_S else "stopped")
        return {"id": run_id, "object": "run", "status": status,
                "model": spec.get("model") or summary.get("model") or "?",
                "created_at": int(min(stamps)), "finished_at": int(last) if finished else None,
                "fine_tuned_model": None, "suffix": None, "error": None, "path": str(path)}

    def events(self, path: Path, *, limit: int) -> list[dict[str, Any]]:
        """Newest first, shaped like the store's events."""
        events = RunDir.existing(path).read_events()[::-1][:limit]
        return [{"id": f"event-{i}", "object": "fine_tuning.job.event",
                 "created_at": e.get("created_at"), "level": e.get("level", "info"),
                 "type": e.get("type", "message"), "message": str(e.get("message", "")),
                 "data": e.get("data") or {}} for i, e in enumerate(events)]

    def warnings(self, path: Path) -> list[dict[str, Any]]:
        return [e for e in self.events(path, limit=10**6) if e["type"] == "warning"]

    def checkpoints(self, path: Path) -> list[dict[str, Any]]:
        return [{"step": s.get("step"), "model_name": str(state.parent),
                 "created_at": int(state.stat().st_mtime), "metrics": s.get("metrics") or {}}
                for state, s in RunDir.existing(path).checkpoint_states()]
