"""Reading a run directory while it grows: an index over `rollouts.jsonl` and the metrics.

`rollouts.jsonl` holds every rollout of a run (50,000 lines of a few KB each in a long job),
so nothing here re-reads it per request. `RolloutIndex` remembers, per line, its byte offset
and the few numbers the dashboard charts (step, phase, row, reward, tool calls, answer
length); `refresh()` reads only the bytes appended since the last call. A trace opens with
one seek per rollout of the row asked for.

    index = RolloutIndex(run_dir / "rollouts.jsonl")
    index.refresh()
    index.steps()                     # [StepInfo(step=0, phase="eval", rollouts=8, rows=4), ...]
    index.records(step=3, phase="train", row=5)   # the full JSON records, in file order

A file that shrank or was replaced (the trainer rewrites it when it resumes from a
checkpoint) is indexed again from the start. A line torn by a crash is skipped; a line not
yet finished (no newline) waits for the next refresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from agentrft.train.records import RunDir

PHASES = ("train", "eval")
CACHE_VERSION = 1
READ_CHUNK = 8 * 2**20


@dataclass(frozen=True, slots=True)
class Entry:
    """What the index keeps of one rollouts.jsonl line."""

    offset: int
    length: int
    step: int
    phase: str
    row_index: int
    reward: float | None
    status: str
    tool_calls: int
    tools: tuple[tuple[str, int], ...]  # (tool name, calls), sorted by name
    completion_tokens: int
    answer_chars: int
    trace_id: str


@dataclass(frozen=True)
class StepInfo:
    step: int
    phase: str
    rollouts: int
    rows: int


def _entry(offset: int, line: bytes) -> Entry | None:
    try:
        rec = json.loads(line)
        calls = rec.get("tool_calls") or []
        names = Counter(str(c.get("name") or "(malformed)") for c in calls if isinstance(c, dict))
        reward = rec.get("reward")
        return Entry(
            offset=offset, length=len(line), step=int(rec.get("step", 0)),
            phase=str(rec.get("phase") or "eval"), row_index=int(rec.get("row_index", -1)),
            reward=None if reward is None else float(reward),
            status=str(rec.get("status") or "completed"), tool_calls=len(calls),
            tools=tuple(sorted(names.items())),
            completion_tokens=int(rec.get("completion_tokens") or 0),
            answer_chars=len(rec.get("final_text") or ""), trace_id=str(rec.get("trace_id") or ""))
    except (ValueError, TypeError, AttributeError):  # torn or hand-broken line
        return None


class RolloutIndex:
    """Byte offsets and summaries of the lines of one rollouts.jsonl; thread-safe.

    `cache`: a file where the index is saved once it has grown by `SAVE_EVERY` entries, and
    loaded from on the first refresh, so a restarted server does not read 50,000 rollouts
    again. A cache is used only for the same file (device, inode) whose bytes just before the
    cached offset are unchanged; otherwise the file is indexed from the start."""

    SAVE_EVERY = 2000

    def __init__(self, path: str | Path, *, cache: str | Path | None = None):
        self.path = Path(path)
        self.cache = Path(cache) if cache is not None else None
        self._lock = threading.Lock()
        self._reset(None)
        self._cache_tried = False
        self._saved_at = 0

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self._identity = identity  # (device, inode) of the file indexed
        self._indexed = 0  # bytes read, up to the end of the last complete line
        self.entries: list[Entry] = []
        self._by_key: dict[tuple[int, str], list[int]] = {}
        self._by_trace: dict[str, int] = {}

    def refresh(self) -> int:
        """Index lines appended since the last call; returns how many were added."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._reset(None)
                return 0
            identity = (st.st_dev, st.st_ino)
            if not self._cache_tried:
                self._cache_tried = True
                self._load_cache(identity, st.st_size)
            if identity != self._identity or st.st_size < self._indexed:
                self._reset(identity)
            if st.st_size == self._indexed:
                return 0
            added = 0
            with self.path.open("rb") as f:
                f.seek(self._indexed)
                carry = b""
                while chunk := f.read(READ_CHUNK):
                    data = carry + chunk
                    end = data.rfind(b"\n")
                    if end < 0:
                        carry = data
                        continue
                    base = self._indexed
                    start = 0
                    while start <= end:
                        stop = data.index(b"\n", start)
                        line = data[start:stop]
                        if line.strip():
                            entry = _entry(base + start, line)
                            if entry is not None:
                                self._add(entry)
                                added += 1
                        start = stop + 1
                    self._indexed = base + end + 1
                    carry = data[end + 1:]
            if self.cache is not None and len(self.entries) - self._saved_at >= self.SAVE_EVERY:
                self._save_cache()
            return added

    # --- the cache ----------------------------------------------------------------------------

    def _tail_hash(self, end: int) -> str:
        with self.path.open("rb") as f:
            f.seek(max(0, end - 4096))
            return hashlib.sha256(f.read(end - max(0, end - 4096))).hexdigest()

    def _save_cache(self) -> None:
        state = {"version": CACHE_VERSION, "path": str(self.path), "identity": self._identity,
                 "indexed": self._indexed, "tail": self._tail_hash(self._indexed),
                 "entries": [[getattr(e, f) for f in Entry.__slots__] for e in self.entries]}
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, separators=(",", ":")))
            tmp.replace(self.cache)
            self._saved_at = len(self.entries)
        except OSError:  # a cache we cannot write only costs time
            pass

    def _load_cache(self, identity: tuple[int, int], size: int) -> None:
        try:
            state = json.loads(self.cache.read_text()) if self.cache and self.cache.is_file() else None
            if (not state or state.get("version") != CACHE_VERSION
                    or state.get("path") != str(self.path)
                    or tuple(state["identity"]) != identity or state["indexed"] > size
                    or state["tail"] != self._tail_hash(state["indexed"])):
                return
            self._reset(identity)
            tools = Entry.__slots__.index("tools")
            for values in state["entries"]:
                values[tools] = tuple(tuple(t) for t in values[tools])  # JSON lists → tuples
                self._add(Entry(*values))
            self._indexed = state["indexed"]
            self._saved_at = len(self.entries)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            self._reset(None)

    def _add(self, entry: Entry) -> None:
        i = len(self.entries)
        self.entries.append(entry)
        self._by_key.setdefault((entry.step, entry.phase), []).append(i)
        if entry.trace_id:
            self._by_trace[entry.trace_id] = i

    # --- queries (call refresh() first) ------------------------------------------------------

    def steps(self) -> list[StepInfo]:
        with self._lock:
            return [StepInfo(step, phase, len(ids), len({self.entries[i].row_index for i in ids}))
                    for (step, phase), ids in sorted(self._by_key.items())]

    def entries_of(self, step: int, phase: str, row: int | None = None) -> list[Entry]:
        with self._lock:
            ids = self._by_key.get((step, phase), [])
            return [self.entries[i] for i in ids
                    if row is None or self.entries[i].row_index == row]

    def entry_of_trace(self, trace_id: str) -> Entry | None:
        with self._lock:
            i = self._by_trace.get(trace_id)
            return None if i is None else self.entries[i]

    def read(self, entries: Iterable[Entry]) -> list[dict[str, Any]]:
        """The full records of `entries`, one seek each."""
        entries = list(entries)
        out: list[dict[str, Any]] = []
        if not entries:
            return out
        with self.path.open("rb") as f:
            for e in entries:
                f.seek(e.offset)
                out.append(json.loads(f.read(e.length)))
        return out

    def records(self, step: int, phase: str, row: int | None = None) -> list[dict[str, Any]]:
        return self.read(self.entries_of(step, phase, row))


# --- per-step statistics over the index ------------------------------------------------------


def quartiles(values: list[float]) -> dict[str, float]:
    """min, q1, median, q3, max and mean, with linear interpolation between order statistics
    (numpy's default): [0, 1, 2, 3] → q1 0.75, median 1.5, q3 2.25."""
    xs = sorted(values)

    def at(q: float) -> float:
        pos = q * (len(xs) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {"min": xs[0], "q1": at(0.25), "median": at(0.5), "q3": at(0.75), "max": xs[-1],
            "mean": sum(xs) / len(xs)}


STATS = ("min", "q1", "median", "q3", "max", "mean")


def tool_call_distribution(index: RolloutIndex, phase: str = "train") -> dict[str, Any]:
    """Per step of `phase`, the distribution of tool calls per rollout: over all tools (the
    top-level lists) and per tool (`per_tool[name]`, a rollout that never called the tool
    counting 0). Parallel lists keyed by statistic, one value per step."""
    steps = [s for s in index.steps() if s.phase == phase]
    by_step = [index.entries_of(s.step, phase) for s in steps]
    names = sorted({name for entries in by_step for e in entries for name, _ in e.tools})

    def lists(count) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {key: [] for key in STATS}
        for entries in by_step:
            for key, value in quartiles([float(count(e)) for e in entries]).items():
                out[key].append(value)
        return out

    per_tool = {name: lists(lambda e, n=name: dict(e.tools).get(n, 0)) for name in names}
    return {"steps": [s.step for s in steps], **lists(lambda e: e.tool_calls),
            "per_tool": per_tool}


def answer_chars_mean(index: RolloutIndex, step: int, phase: str = "train") -> float | None:
    entries = index.entries_of(step, phase)
    return sum(e.answer_chars for e in entries) / len(entries) if entries else None


# --- metrics.jsonl, cached by file identity -------------------------------------------------


class MetricsFile:
    """metrics.jsonl of a run dir, re-read (by `RunDir`) only when it changed (it is small: a
    line a step); records without an integer step are left out."""

    def __init__(self, run_dir: str | Path):
        self.run = RunDir.existing(run_dir)
        self.path = self.run.metrics
        self._key: tuple | None = None
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def read(self) -> list[dict[str, Any]]:
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return []
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if key != self._key:
                records = [r for r in self.run.read_metrics() if isinstance(r.get("step"), int)]
                self._records, self._key = records, key
            return list(self._records)
