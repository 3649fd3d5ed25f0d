"""What the API can do to jobs, as plain functions over the store: create (with the
`validating_files` stage), pause, resume, cancel. HTTP lives in `agentrft.server`; the
worker process (`agentrft.jobs.worker`) does the training.

State machine: `agentrft.jobs.store.TRANSITIONS`, enforced by `JobStore.set_status`. A pause
or cancel of a running job is a request the worker acts on at the next step boundary; every
other move happens here or in the worker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentrft.errors import AgentRFTError, JobStateError, SpecError
from agentrft.jobs.store import JobStore, can_move
from agentrft.spec.errors import spec_error_from
from agentrft.spec.job import JobSpec
from agentrft.train.setup import open_tools, validate_job


__all__ = ["JobStateError", "NotFound"]  # JobStateError lives in agentrft.errors


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
        async with open_tools(spec.rl.tools):
            pass  # every tool answered
    except Exception as e:  # noqa: BLE001 - bad input or a bug: either way this job fails
        error = error_object(e)
        store.set_status(job_id, "failed", expect=("validating_files",), error=error)
        store.add_event(job_id, f"validation failed: {error['message']}", level="error")
        return
    if store.set_status(job_id, "queued", expect=("validating_files",)):
        store.add_event(job_id, "files validated; job queued")
    # a pause asked while the files were being checked takes effect now that they passed
    if store.job_row(job_id)["requested"] == "pause" and \
            store.set_status(job_id, "paused", expect=("queued",), requested=None):
        store.add_event(job_id, "job paused before it started")


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


# What each action asks for, and what to say when the job's status does not allow it.
ACTIONS: dict[str, tuple[str, str]] = {
    "cancel": ("cancelled", "it has finished and cannot be cancelled"),
    "pause": ("paused", "only running, queued or validating jobs can be paused"),
    "resume": ("queued", "only paused jobs can be resumed"),
}


def request(store: JobStore, job_id: str, action: str) -> dict[str, Any]:
    """pause | resume | cancel, as the API asks them. Returns the job object; raises NotFound,
    or JobStateError when the job's status does not allow the action."""
    if action not in ACTIONS:
        raise ValueError(action)
    target, refusal = ACTIONS[action]
    while True:
        row = store.job_row(job_id)
        if row is None:
            raise NotFound(f"no job with id {job_id!r}")
        status = row["status"]
        if status == "running" and action in ("pause", "cancel"):
            # the worker checkpoints (pause) or stops (cancel) at its next step boundary
            store.update_job(job_id, requested=action)
            return store.get_job(job_id)
        if status == "validating_files" and action == "pause":
            # a paused job has passed validation: the validation stage pauses it once it does
            store.update_job(job_id, requested=action)
            if store.job_row(job_id)["status"] == "validating_files":
                return store.get_job(job_id)
            continue  # validation finished meanwhile: decide again on the job's new status
        if not can_move(status, target):
            raise JobStateError(f"job {job_id} is {status}; {refusal}")
        # a resumed job's last pause reason is history (the events keep it), not its error
        cleared = {"error": None} if action == "resume" else {}
        if store.set_status(job_id, target, expect=(status,), requested=None, **cleared):
            break
        # the worker or the validation stage moved the job meanwhile: decide again
    store.add_event(job_id, {"cancel": "job cancelled", "pause": "job paused before it started",
                             "resume": "job resumed; queued"}[action])
    return store.get_job(job_id)
