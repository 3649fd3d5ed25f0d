"""The job store: SQLite in WAL mode, so the API process reads while the worker writes.

Migrations are an append-only list of named functions; `migrations` records which ran.
Never edit a migration that has shipped: add a new one.

Objects are returned as plain dicts shaped like OpenAI's API objects (`file`,
`fine_tuning.job`, `fine_tuning.job.event`, `fine_tuning.job.checkpoint`).

Each thread gets its own connection. The API serves requests on a thread pool, and a shared
connection would mix threads' results: a cursor's `rowcount` is the connection's last change
count, so another thread's UPDATE of zero rows could make a compare-and-set that succeeded
read as one that failed (a cancel then answered 400 "job is cancelled").
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from agentrft.errors import InvalidTransition
from agentrft.spec.secrets import redact

TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("validating_files", "queued", "running", "paused") + TERMINAL

# Every status change a job may make; `JobStore.set_status` refuses the rest (InvalidTransition).
# A pause or cancel asked of a running job is carried out by the worker at its next step
# boundary (running → paused | cancelled); a run also pauses itself when a step discards too
# many rollouts. `resume` is paused → queued. A paused job has passed validation: pausing
# waits until a job is queued. Finished statuses have no way out.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "validating_files": ("queued", "failed", "cancelled"),
    "queued": ("running", "paused", "cancelled"),
    "running": ("succeeded", "failed", "cancelled", "paused"),
    "paused": ("queued", "cancelled"),
    "succeeded": (),
    "failed": (),
    "cancelled": (),
}


def can_move(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, ())


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement (executescript would commit the migration's transaction)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    _run_script(db, """
        CREATE TABLE files (
            id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL,
            bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, path TEXT NOT NULL);
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT UNIQUE NOT NULL, status TEXT NOT NULL, model TEXT NOT NULL,
            created_at INTEGER NOT NULL, finished_at INTEGER,
            body TEXT NOT NULL,            -- the create request, as given (secrets included)
            fine_tuned_model TEXT, error TEXT, metadata TEXT, suffix TEXT, seed INTEGER,
            run_dir TEXT NOT NULL, requested TEXT,   -- 'pause' | 'cancel' asked of the worker
            worker_pid INTEGER, trained_steps INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
            job_id TEXT NOT NULL, created_at INTEGER NOT NULL, level TEXT NOT NULL,
            type TEXT NOT NULL, message TEXT NOT NULL, data TEXT, step INTEGER);
        -- one metrics event per step: a step redone after a crash replaces, never duplicates
        CREATE UNIQUE INDEX events_metrics_step ON events(job_id, step) WHERE type = 'metrics';
        CREATE INDEX events_job ON events(job_id, seq);
        CREATE TABLE checkpoints (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
            job_id TEXT NOT NULL, step INTEGER NOT NULL, created_at INTEGER NOT NULL,
            metrics TEXT NOT NULL, path TEXT NOT NULL, model_name TEXT NOT NULL,
            UNIQUE (job_id, step));
    """)


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_initial", _m001_initial),
]


def default_data_dir() -> Path:
    """Where `agentrft server` keeps its store, and where `ft:` model names are looked up."""
    if os.environ.get("AGENTRFT_DATA_DIR"):
        return Path(os.environ["AGENTRFT_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentrft"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class _Connection(sqlite3.Connection):
    """A connection that can be held weakly: a thread's connection closes when the thread
    ends, and `JobStore.close` closes the ones still open."""


class JobStore:
    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "files").mkdir(exist_ok=True)
        (self.data_dir / "runs").mkdir(exist_ok=True)
        self.path = self.data_dir / "agentrft.sqlite"
        self._local = threading.local()
        self._opened: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._migrate()

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "db", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False,  # close() runs on any thread
                                   factory=_Connection)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.db = conn
            with self._lock:
                self._opened.add(conn)
        return conn

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, "
                        "applied_at INTEGER NOT NULL)")
        done = {r["name"] for r in self.db.execute("SELECT name FROM migrations")}
        for name, migrate in MIGRATIONS:
            if name in done:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            try:
                migrate(self.db)
                self.db.execute("INSERT INTO migrations VALUES (?, ?)", (name, int(time.time())))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            opened, self._opened = list(self._opened), weakref.WeakSet()
        for conn in opened:
            conn.close()
        self._local = threading.local()

    # --- files ---------------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        file_id = new_id("file")
        path = self.data_dir / "files" / file_id
        path.write_bytes(content)
        self.db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
                        (file_id, filename, purpose, len(content), int(time.time()), str(path)))
        return self.get_file(file_id)

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            return None
        return {"id": row["id"], "object": "file", "bytes": row["bytes"],
                "created_at": row["created_at"], "filename": row["filename"],
                "purpose": row["purpose"], "status": "processed", "_path": row["path"]}

    # --- jobs ----------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = new_id("ftjob")
        run_dir = self.data_dir / "runs" / job_id
        self.db.execute(
            "INSERT INTO jobs (id, status, model, created_at, body, metadata, suffix, seed, run_dir)"
            " VALUES (?, 'validating_files', ?, ?, ?, ?, ?, ?, ?)",
            (job_id, body["model"], int(time.time()), json.dumps(body),
             json.dumps(body.get("metadata")) if body.get("metadata") is not None else None,
             body.get("suffix"), body.get("seed"), str(run_dir)))
        return self.get_job(job_id)

    def get_job_body(self, job_id: str) -> dict[str, Any]:
        """The create request as given, secrets included: for the worker only."""
        return json.loads(self.job_row(job_id)["body"])

    def job_row(self, job_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        row = self.job_row(job_id)
        return None if row is None else self._job_object(row)

    def list_jobs(self, *, after: str | None = None, limit: int = 20,
                  metadata: dict[str, str] | None = None, status: str | None = None
                  ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first; `after` is a job id (the page continues past it); `status` keeps the
        jobs in that status only."""
        where, args = [], []
        if after:
            row = self.job_row(after)
            where.append("seq < ?")
            args.append(row["seq"] if row is not None else -1)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        query = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        query += " ORDER BY seq DESC"
        rows = [r for r in self.db.execute(query, args)
                if not metadata or all((json.loads(r["metadata"] or "{}")).get(k) == v
                                       for k, v in metadata.items())]
        return [self._job_object(r) for r in rows[:limit]], len(rows) > limit

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [json.dumps(v) if k == "error" and v is not None else v for k, v in fields.items()]
        self.db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))

    def set_status(self, job_id: str, status: str, *, expect: tuple[str, ...] | None = None,
                   **fields: Any) -> bool:
        """Move a job to `status` (and set `fields`), atomically. With `expect`, only from one
        of those statuses: False when the job is elsewhere (e.g. cancelled meanwhile), nothing
        changed. Raises InvalidTransition when `TRANSITIONS` has no such move from the job's
        status, and ValueError for an unknown status or job."""
        if status not in STATUSES:
            raise ValueError(f"unknown job status {status!r}; one of {', '.join(STATUSES)}")
        if status in TERMINAL:
            fields.setdefault("finished_at", int(time.time()))
        sets = ", ".join(["status = ?"] + [f"{k} = ?" for k in fields])
        values = [status] + [json.dumps(v) if k == "error" and v is not None else v
                             for k, v in fields.items()]
        while True:
            row = self.db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise ValueError(f"no job with id {job_id!r}")
            current = row["status"]
            if expect and current not in expect:
                return False
            if not can_move(current, status):
                raise InvalidTransition(job_id, current, status, TRANSITIONS.get(current, ()))
            # compare-and-set: if another process moved the job since the read, look again
            query = f"UPDATE jobs SET {sets} WHERE id = ? AND status = ?"
            if self.db.execute(query, [*values, job_id, current]).rowcount == 1:
                return True

    def next_job(self, statuses: tuple[str, ...] = ("queued",)) -> dict[str, Any] | None:
        row = self.db.execute(
            f"SELECT * FROM jobs WHERE status IN ({', '.join('?' * len(statuses))}) "
            "ORDER BY seq LIMIT 1", statuses).fetchone()
        return None if row is None else self._job_object(row)

    def running_jobs(self) -> list[tuple[str, int | None]]:
        """(job id, worker pid) of every running job, oldest first."""
        rows = self.db.execute("SELECT id, worker_pid FROM jobs WHERE status = 'running' "
                               "ORDER BY seq").fetchall()
        return [(r["id"], r["worker_pid"]) for r in rows]

    def take_over(self, job_id: str, from_pid: int | None, to_pid: int) -> bool:
        """Hand a running job from a dead worker to `to_pid`; False if another worker (or a
        status change) got there first: compare-and-set on (status, worker_pid)."""
        return self.db.execute(
            "UPDATE jobs SET worker_pid = ? WHERE id = ? AND status = 'running' "
            "AND worker_pid IS ?", (to_pid, job_id, from_pid)).rowcount == 1

    def _job_object(self, row: sqlite3.Row) -> dict[str, Any]:
        body = json.loads(row["body"])
        method = body.get("method") or {}
        hp = ((method.get("reinforcement") or {}).get("hyperparameters")) or {}
        return {
            "id": row["id"], "object": "fine_tuning.job", "model": row["model"],
            "created_at": row["created_at"], "finished_at": row["finished_at"],
            "fine_tuned_model": row["fine_tuned_model"], "organization_id": "org-local",
            "result_files": [], "status": row["status"],
            "training_file": body.get("training_file"),
            "validation_file": body.get("validation_file"),
            "hyperparameters": {k: hp.get(k, "auto") for k in ("n_epochs", "batch_size")},
            "method": redact(method), "trained_tokens": None,
            "error": json.loads(row["error"]) if row["error"] else None,
            "seed": row["seed"], "suffix": row["suffix"],
            "metadata": json.loads(row["metadata"]) if row["metadata"] else None,
            "estimated_finish": None, "integrations": [],
        }

    # --- events and checkpoints ------------------------------------------------------------------

    def add_event(self, job_id: str, message: str, *, level: str = "info", type: str = "message",
                  data: dict[str, Any] | None = None, step: int | None = None) -> None:
        """A metrics event for a step replaces any earlier one for that step (a redone step)."""
        if type == "metrics" and step is not None:
            self.db.execute("DELETE FROM events WHERE job_id = ? AND type = 'metrics' AND step = ?",
                            (job_id, step))
        self.db.execute(
            "INSERT INTO events (id, job_id, created_at, level, type, message, data, step) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id("ftevent"), job_id, int(time.time()), level, type, message,
             json.dumps(data) if data is not None else None, step))

    def drop_metrics_after(self, job_id: str, step: int) -> None:
        """On resume from a checkpoint at `step`: steps after it will be redone."""
        self.db.execute("DELETE FROM events WHERE job_id = ? AND type = 'metrics' AND step > ?",
                        (job_id, step))
        self.db.execute("DELETE FROM checkpoints WHERE job_id = ? AND step > ?", (job_id, step))

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20
                    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, like OpenAI's; `after` is an event id."""
        query, args = "SELECT * FROM events WHERE job_id = ?", [job_id]
        if after:
            row = self.db.execute("SELECT seq FROM events WHERE id = ?", (after,)).fetchone()
            query += " AND seq < ?"
            args.append(row["seq"] if row else -1)
        rows = self.db.execute(query + " ORDER BY seq DESC LIMIT ?", (*args, limit + 1)).fetchall()
        return [{"id": r["id"], "object": "fine_tuning.job.event", "created_at": r["created_at"],
                 "level": r["level"], "message": r["message"], "type": r["type"],
                 "data": json.loads(r["data"]) if r["data"] else {}} for r in rows[:limit]], \
            len(rows) > limit

    def events_of_type(self, job_id: str, type: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The job's events of one type (e.g. "warning"), newest first."""
        rows = self.db.execute("SELECT * FROM events WHERE job_id = ? AND type = ? "
                               "ORDER BY seq DESC LIMIT ?", (job_id, type, limit)).fetchall()
        return [{"id": r["id"], "object": "fine_tuning.job.event", "created_at": r["created_at"],
                 "level": r["level"], "message": r["message"], "type": r["type"],
                 "data": json.loads(r["data"]) if r["data"] else {}} for r in rows]

    def latest_metrics(self, job_id: str) -> dict[str, Any] | None:
        """The data of the job's metrics event with the highest step."""
        row = self.db.execute("SELECT data FROM events WHERE job_id = ? AND type = 'metrics' "
                              "ORDER BY step DESC LIMIT 1", (job_id,)).fetchone()
        return json.loads(row["data"]) if row is not None and row["data"] else None

    def add_checkpoint(self, job_id: str, step: int, metrics: dict[str, Any], path: str,
                       model_name: str) -> None:
        self.db.execute("DELETE FROM checkpoints WHERE job_id = ? AND step = ?", (job_id, step))
        self.db.execute(
            "INSERT INTO checkpoints (id, job_id, step, created_at, metrics, path, model_name) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new_id("ftckpt"), job_id, step, int(time.time()), json.dumps(metrics), path, model_name))

    def delete_checkpoint(self, job_id: str, step: int) -> None:
        self.db.execute("DELETE FROM checkpoints WHERE job_id = ? AND step = ?", (job_id, step))

    def checkpoint_rows(self, job_id: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM checkpoints WHERE job_id = ? ORDER BY step",
                               (job_id,)).fetchall()

    def list_checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10
                         ) -> tuple[list[dict[str, Any]], bool]:
        query, args = "SELECT * FROM checkpoints WHERE job_id = ?", [job_id]
        if after:
            row = self.db.execute("SELECT seq FROM checkpoints WHERE id = ?", (after,)).fetchone()
            query += " AND seq < ?"
            args.append(row["seq"] if row else -1)
        rows = self.db.execute(query + " ORDER BY seq DESC LIMIT ?", (*args, limit + 1)).fetchall()
        return [{"id": r["id"], "object": "fine_tuning.job.checkpoint",
                 "created_at": r["created_at"], "fine_tuning_job_id": job_id,
                 "fine_tuned_model_checkpoint": r["model_name"], "step_number": r["step"],
                 "metrics": json.loads(r["metrics"])} for r in rows[:limit]], len(rows) > limit

    def resolve_model_name(self, name: str) -> str | None:
        """The directory of a checkpoint named `ft:...` (a job's model or one of its checkpoints)."""
        row = self.db.execute("SELECT path FROM checkpoints WHERE model_name = ?", (name,)).fetchone()
        if row is not None:
            return row["path"]
        job = self.db.execute("SELECT id FROM jobs WHERE fine_tuned_model = ?", (name,)).fetchone()
        if job is None:
            return None
        rows = self.checkpoint_rows(job["id"])
        return rows[-1]["path"] if rows else None
