"""What the API can do to jobs, as plain functions over the store: create (with the
`validating_files` stage), pause, resume, cancel. HTTP lives in `agentrft.server`; the
worker process (`agentrft.jobs.worker`) does the training.

State machine:

    validating_files ──► queued ──► running ──► succeeded | failed | cancelled
          │                ▲  │        │  ▲
          └──► failed      │  └─► cancelled (asked while queued or paused)
                           │           ▼  │
                        paused ◄── (pause asked; the worker checkpoints and stops)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentrft.errors import AgentRFTError, SpecError
from agentrft.jobs.store import TERMINAL, JobStore
from agentrft.spec.errors import spec_error_from
from agentrft.spec.job import JobSpec
from agentrft.train.setup import build_tools, preflight, validate_job


class JobStateError(AgentRFTError):
    """The job's status does not allow the request (e.g. resuming a running job)."""


class NotFound(AgentRFTError):
    """No such file, job or checkpoint."""


def get_job(store: JobStore, job_id: str) -> dict[str, Any]:
    """The job object; NotFound when there is no such job."""
    job = store.get_job(job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    return job


def get_file(store: JobStore, file_id: str) -> dict[str, Any]:
    """The file record; NotFound when there is no such file."""
    record = store.get_file(file_id)
    if record is None:
        raise NotFound(f"no file with id {file_id!r}")
    return record


def spec_from_body(store: JobStore, body: dict[str, Any]) -> JobSpec:
    """The create body as a JobSpec whose files are local paths. Raises SpecError (the body is
    malformed: a 400) or NotFound (a file id that does not exist)."""
    try:
        spec = JobSpec.model_validate(body)
    except ValidationError as e:
        raise spec_error_from(e, file=None) from None
    updates = {}
    for key in ("training_file", "validation_file"):
        file_id = getattr(spec, key)
        if file_id is None:
            continue
        record = store.get_file(file_id)
        if record is None:
            raise NotFound(f"{key}: no file with id {file_id!r}")
        updates[key] = record["_path"]
    return spec.model_copy(update=updates)


def model_name(store: JobStore, job_id: str, step: int | None = None) -> str:
    """`ft:<base>:<suffix>:<job id>[:ckpt-step-N]`: how `agentrft eval` and serving find it."""
    row = store.job_row(job_id)
    base = str(row["model"]).replace(":", "-")
    name = f"ft:{base}:{row['suffix'] or ''}:{job_id}"
    return name if step is None else f"{name}:ckpt-step-{step}"


def create_job(store: JobStore, body: dict[str, Any]) -> dict[str, Any]:
    """Check the body's shape and files now (errors raise); the job starts in validating_files."""
    spec_from_body(store, body)
    return store.create_job(body)


async def validate_files(store: JobStore, job_id: str) -> None:
    """The validating_files stage: every dataset line, the grader and the tools (each server
    must answer). Moves the job to queued, or to failed with an error naming file, line, field."""
    body = store.get_job_body(job_id)
    try:
        spec = spec_from_body(store, body)
        validate_job(spec)
        tools = build_tools(spec.rl.tools)
        try:
            await preflight(tools)
        finally:
            for t in tools.values():
                await t.aclose()
    except Exception as e:  # noqa: BLE001 - bad input or a bug: either way this job fails
        error = error_object(e)
        store.set_status(job_id, "failed", expect=("validating_files",), error=error)
        store.add_event(job_id, f"validation failed: {error['message']}", level="error")
        return
    if store.set_status(job_id, "queued", expect=("validating_files",)):
        store.add_event(job_id, "files validated; job queued")


def validate_files_sync(store: JobStore, job_id: str) -> None:
    asyncio.run(validate_files(store, job_id))


def error_object(e: Exception) -> dict[str, Any]:
    """A job's `error` field: OpenAI's {code, message, param}; param names file:line:field."""
    param, message = None, str(e)
    if isinstance(e, SpecError):
        parts = [p for p in (Path(e.file).name if e.file else None,
                             str(e.line) if e.line is not None else None, e.field) if p]
        param = ":".join(parts) or None
        if e.file:  # name the uploaded file by its id, not by where the server keeps it
            message = message.replace(e.file, Path(e.file).name)
    code = type(e).__name__ if isinstance(e, AgentRFTError) else "internal_error"
    return {"code": code, "message": message, "param": param}


def request(store: JobStore, job_id: str, action: str) -> dict[str, Any]:
    """pause | resume | cancel, as the API asks them. Returns the job object."""
    row = store.job_row(job_id)
    if row is None:
        raise NotFound(f"no job with id {job_id!r}")
    status = row["status"]
    if action == "cancel":
        if status in TERMINAL:
            raise JobStateError(f"job {job_id} is already {status}")
        if status == "running":
            store.update_job(job_id, requested="cancel")
        else:
            store.set_status(job_id, "cancelled", expect=(status,))
            store.add_event(job_id, "job cancelled")
    elif action == "pause":
        if status == "running":
            store.update_job(job_id, requested="pause")
        elif status in ("queued", "validating_files"):
            store.set_status(job_id, "paused", expect=(status,))
            store.add_event(job_id, "job paused before it started")
        else:
            raise JobStateError(f"only a running or queued job can be paused; job is {status}")
    elif action == "resume":
        if status != "paused":
            raise JobStateError(f"only a paused job can be resumed; job is {status}")
        store.set_status(job_id, "queued", expect=("paused",), requested=None)
        store.add_event(job_id, "job resumed; queued")
    else:
        raise ValueError(action)
    return store.get_job(job_id)
