"""The dashboard: static pages at `/`, and the JSON they poll under `/dashboard/api`.

    GET  /                                        the single-page dashboard (index.html)
    GET  /dashboard/static/{name}                 its script and styles; plotly.min.js comes
                                                  from the installed `plotly` package (no CDN)
    POST /dashboard/login                         form field `key`: sets the session cookie
    POST /dashboard/logout
    GET  /dashboard/api/session                   {"auth_required", "authorized"} (always open)
    GET  /dashboard/api/jobs                      jobs with status and progress, newest first
    GET  /dashboard/api/jobs/{id}                 the job page's data: metrics per step, the
                                                  tool-call distribution, checkpoints, events,
                                                  warnings (the reward-hacking alarm)
    GET  /dashboard/api/jobs/{id}/steps           steps and evals holding rollouts
    GET  /dashboard/api/jobs/{id}/rows?step=&phase=          rows of one step, with rewards
    GET  /dashboard/api/jobs/{id}/trace?step=&phase=&row=    the rollouts of one row
    GET  /dashboard/api/jobs/{id}/trace?trace_id=            one rollout
    GET  /dashboard/api/jobs/{id}/compare?a=&b=  eval step a vs b (default: first vs last):
                                                 Δreward vs Δtool calls per row, quadrants

Run dirs written outside the jobs service (`agentrft server --runs DIR`) are listed beside
the jobs under ids `run:<path>` and read the same way (dashboard_runs.py).

Everything is read from the store (job, events, checkpoints) and the job's run directory
(`metrics.jsonl`; `rollouts.jsonl` through a `RolloutIndex`, so opening a trace of a
50,000-rollout run seeks to a handful of lines). Auth: see `middleware.py`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from agentrft.analysis.compare import EvalRun, compare, rows_of
from agentrft.analysis.report import build_summary
from agentrft.analysis.traces import (PHASES, MetricsFile, RolloutIndex, StepInfo,
                                      tool_call_distribution)
from agentrft.jobs.service import NotFound, get_job
from agentrft.jobs.store import JobStore
from agentrft.server.dashboard_runs import RunDirs
from agentrft.train.records import RunDir
from agentrft.web.errors import APIError
from agentrft.web.middleware import SESSION_COOKIE, session_token

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
EVENTS_SHOWN = 200
RUNS_CACHED = 16
QUESTION_CHARS = 160


def static_dir() -> Path:
    return Path(str(resources.files("agentrft.server") / "dashboard"))


def plotly_js() -> Path:
    """plotly.js as the `plotly` Python package ships it."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the installed plotly package lacks plotly.min.js")
    return path


class RunView:
    """One run dir as the dashboard reads it; the index and tool-call distribution are
    refreshed incrementally and cached until the file grows."""

    def __init__(self, run_dir: Path, cache_dir: Path | None = None):
        self.run_dir = run_dir
        cache = None
        if cache_dir is not None:
            key = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:32]
            cache = cache_dir / f"{key}.json"
        self.index = RolloutIndex(RunDir.existing(run_dir).rollouts, cache=cache)
        self.metrics = MetricsFile(run_dir)
        self._dist: tuple[int, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def refresh(self) -> None:
        self.index.refresh()

    def distribution(self) -> dict[str, Any]:
        with self._lock:
            n = len(self.index.entries)
            if self._dist is None or self._dist[0] != n:
                self._dist = (n, tool_call_distribution(self.index, "train"))
            return self._dist[1]


def _step_dict(s: StepInfo) -> dict[str, Any]:
    return {"step": s.step, "phase": s.phase, "rollouts": s.rollouts, "rows": s.rows}


def _question(record: dict[str, Any]) -> str:
    users = [m for m in record.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    text = str(content or "")
    return text if len(text) <= QUESTION_CHARS else text[:QUESTION_CHARS] + "…"


def _job_row(job: dict[str, Any], latest: dict[str, Any],
             warnings: list[dict[str, Any]]) -> dict[str, Any]:
    """A job (or run dir) in the jobs list: its status, progress and newest warning."""
    return {**{k: job[k] for k in ("id", "status", "model", "suffix", "created_at",
                                   "finished_at", "fine_tuned_model")},
            "step": latest.get("step"), "total_steps": latest.get("total_steps"),
            "train_reward_mean": latest.get("train_reward_mean"),
            "valid_reward_mean": latest.get("valid_reward_mean"),
            "warning": warnings[0]["message"] if warnings else None, "error": job["error"]}


def install_dashboard(app: FastAPI, store: JobStore, *, auth_required: bool,
                      session_secret: bytes, key_ok, run_root: Path | None = None) -> None:
    """Add the dashboard's routes to `app`. `key_ok(key)` says whether an API key is valid;
    `run_root`: run dirs written outside the jobs service, shown too (dashboard_runs.py)."""
    runs: collections.OrderedDict[str, RunView] = collections.OrderedDict()
    runs_lock = threading.Lock()
    run_dirs = RunDirs(run_root) if run_root is not None else None

    def run_path(job_id: str) -> Path | None:
        """A run dir's path when `job_id` names one (`run:...`), else None."""
        return run_dirs.path(job_id) if run_dirs is not None else None

    def job_or_404(job_id: str) -> dict[str, Any]:
        if (path := run_path(job_id)) is not None:
            return run_dirs.job_object(job_id, path)
        return get_job(store, job_id)

    def run_of(job_id: str) -> RunView:
        job_or_404(job_id)
        return view_of(job_id)

    def view_of(job_id: str) -> RunView:
        """The (cached, refreshed) view of a job known to exist."""
        with runs_lock:
            view = runs.get(job_id)
            if view is None:
                path = run_path(job_id)
                view = RunView(path if path is not None else Path(store.job_row(job_id)["run_dir"]),
                               cache_dir=store.data_dir / "dashboard-cache")
                runs[job_id] = view
                while len(runs) > RUNS_CACHED:
                    runs.popitem(last=False)
            runs.move_to_end(job_id)
        view.refresh()
        return view

    def check_phase(phase: str) -> None:
        if phase not in PHASES:
            raise APIError(400, f"phase must be one of {list(PHASES)} (got {phase!r})",
                           param="phase", code="invalid_value")

    # --- pages -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name == "plotly.min.js":
            return FileResponse(plotly_js(), media_type="text/javascript",
                                headers={"Cache-Control": "max-age=86400"})
        if name not in STATIC:
            raise NotFound(f"no dashboard file {name!r}")
        return FileResponse(static_dir() / name, media_type=STATIC[name],
                            headers={"Cache-Control": "no-cache"})

    @app.post("/dashboard/login", include_in_schema=False)
    def login(key: str = Form(...)) -> Response:
        if not auth_required:
            return RedirectResponse("/", status_code=303)
        if not key_ok(key):
            raise APIError(401, "invalid API key", code="invalid_api_key")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, session_token(session_secret, key), httponly=True,
                            samesite="strict", path="/")
        return response

    @app.post("/dashboard/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- data --------------------------------------------------------------------------------

    api = APIRouter(prefix="/dashboard/api")

    @api.get("/session")
    def session() -> dict[str, Any]:
        # the guard lets this path through only when authorized (or when no keys are set)
        return {"auth_required": auth_required, "authorized": True}

    @api.get("/jobs")
    def jobs(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        data, has_more = store.list_jobs(limit=limit)
        out = [_job_row(j, store.latest_metrics(j["id"]) or {},
                        store.events_of_type(j["id"], "warning", limit=1))
               for j in data]
        for run_id in run_dirs.ids() if run_dirs is not None else []:
            path = run_dirs.path(run_id)
            metrics = MetricsFile(path).read()
            out.append(_job_row(run_dirs.job_object(run_id, path),
                                {**(metrics[-1] if metrics else {}), "total_steps": None},
                                run_dirs.warnings(path)))
        return {"object": "list", "data": out, "has_more": has_more}

    @api.get("/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        view = view_of(job_id)
        if (path := run_path(job_id)) is not None:
            total_steps = None
            events = run_dirs.events(path, limit=EVENTS_SHOWN)
            checkpoints = run_dirs.checkpoints(path)
            warnings = run_dirs.warnings(path)
        else:
            total_steps = (store.latest_metrics(job_id) or {}).get("total_steps")
            events, _ = store.list_events(job_id, limit=EVENTS_SHOWN)
            checkpoints = [{"step": r["step"], "model_name": r["model_name"],
                            "created_at": r["created_at"], "metrics": json.loads(r["metrics"])}
                           for r in store.checkpoint_rows(job_id)]
            warnings = store.events_of_type(job_id, "warning")
        for e in events:  # the log shows messages; metrics are in `metrics`, warnings below
            e.pop("data", None)
        return {"job": job, "total_steps": total_steps, "metrics": view.metrics.read(),
                "tool_calls": view.distribution(), "checkpoints": checkpoints,
                "events": events, "warnings": warnings}

    @api.get("/jobs/{job_id}/steps")
    def steps(job_id: str) -> dict[str, Any]:
        view = run_of(job_id)
        return {"object": "list", "data": [_step_dict(s) for s in view.index.steps()]}

    @api.get("/jobs/{job_id}/rows")
    def rows(job_id: str, step: Annotated[int, Query(ge=0)],
             phase: str = "train") -> dict[str, Any]:
        check_phase(phase)
        view = run_of(job_id)
        entries = view.index.entries_of(step, phase)
        if not entries:
            raise NotFound(f"no {phase} rollouts at step {step}")
        by_row: dict[int, list] = {}
        for e in entries:
            by_row.setdefault(e.row_index, []).append(e)
        firsts = view.index.read([members[0] for members in by_row.values()])
        out = []
        for (row, members), first in zip(by_row.items(), firsts):
            rewards = [e.reward for e in members if e.reward is not None]
            out.append({"row_index": row, "rollouts": len(members),
                        "mean_reward": sum(rewards) / len(rewards) if rewards else None,
                        "best_reward": max(rewards) if rewards else None,
                        "tool_calls_mean": sum(e.tool_calls for e in members) / len(members),
                        "question": _question(first)})
        out.sort(key=lambda r: r["row_index"])
        return {"object": "list", "step": step, "phase": phase, "data": out}

    @api.get("/jobs/{job_id}/trace")
    def trace(job_id: str, step: Annotated[int | None, Query(ge=0)] = None,
              phase: str = "train", row: Annotated[int | None, Query(ge=0)] = None,
              trace_id: str | None = None) -> dict[str, Any]:
        check_phase(phase)
        view = run_of(job_id)
        if trace_id is not None:
            entry = view.index.entry_of_trace(trace_id)
            if entry is None:
                raise NotFound(f"no rollout with trace_id {trace_id!r}")
            entries = [entry]
            step, phase, row = entry.step, entry.phase, entry.row_index
        else:
            if step is None or row is None:
                raise APIError(400, "give step and row (and phase), or trace_id",
                               param="step" if step is None else "row", code="missing_value")
            entries = view.index.entries_of(step, phase, row)
            if not entries:
                raise NotFound(f"no {phase} rollouts of row {row} at step {step}")
        return {"step": step, "phase": phase, "row_index": row,
                "rollouts": view.index.read(entries)}

    @api.get("/jobs/{job_id}/compare")
    def compare_evals(job_id: str, a: Annotated[int | None, Query(ge=0)] = None,
                      b: Annotated[int | None, Query(ge=0)] = None) -> dict[str, Any]:
        """Eval step `a` (default: the first, the baseline) against eval step `b` (default:
        the last): per-row Δreward and Δtool calls, quadrants, tool use, top examples."""
        view = run_of(job_id)
        evals = [s.step for s in view.index.steps() if s.phase == "eval"]
        if not evals:
            raise NotFound("no eval rollouts yet")
        a = evals[0] if a is None else a
        b = evals[-1] if b is None else b
        for name, step in (("a", a), ("b", b)):
            if step not in evals:
                raise APIError(404, f"no eval at step {step} (evals at steps {evals})",
                               param=name, code="not_found")
        runs = [EvalRun(source=f"{job_id} eval step {step}", step=step,
                        rows=rows_of(view.index.records(step, "eval"))) for step in (a, b)]
        summary = build_summary(compare(*runs), title=f"{job_id}: step {a} vs step {b}")
        return {"a": a, "b": b, "evals": evals, **summary}

    app.include_router(api)
