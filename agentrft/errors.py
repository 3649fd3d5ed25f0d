"""Every error agentrft raises on purpose derives from `AgentRFTError`.

    AgentRFTError
    ├── SpecError              a job file, dataset or config is wrong; names file, line and field
    │   └── SandboxUnavailable the job needs a sandbox (python grader code) this machine lacks
    ├── ModelLoadError         a model reference cannot be resolved or loaded
    ├── ToolError
    │   ├── ToolUnreachable    preflight: a tool server does not answer before training starts
    │   └── ToolInfraFailure   retries exhausted (5xx, timeout, connection): the rollout is discarded
    │       └── SandboxError   a rollout's sandbox cannot start or died (agentrft.sandbox)
    ├── GraderError
    │   └── GraderInfraFailure the grader could not produce a score: the rollout is discarded
    ├── EngineError            an inference server failed or answered something unusable
    ├── CheckpointError        a checkpoint is missing or unreadable on --resume
    ├── RankError              a rank of a distributed update step failed or died
    ├── JobStateError          a job's status does not allow the request (resuming a succeeded job)
    │   └── InvalidTransition  a status change the job store's transition table does not have
    └── TrainingPaused         `train()` only: the run paused itself (too many rollouts discarded)

Model-caused tool errors (a 4xx, bad arguments, a malformed call) are *not* exceptions:
they are shown to the model as the tool's output (see `agentrft.tools.base.ToolOutcome`).
"""

from __future__ import annotations


class AgentRFTError(Exception):
    """Root of agentrft's own errors."""


class SpecError(AgentRFTError):
    """A user-written input is invalid. The message says where: file, line and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ""
        if file:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        if field:
            where += f"{field}: "
        super().__init__(where + message)


class SandboxUnavailable(SpecError):
    """Untrusted code (a `python` grader's source) would run here without isolation, and the
    operator did not opt in to that. A SpecError so that every entry point (CLI, job
    validation, graders/run) refuses the config with the reason, as for any other bad field."""


class ModelLoadError(AgentRFTError):
    """A model reference cannot be resolved or loaded."""


class ToolError(AgentRFTError):
    """Base of tool failures that are not the model's fault."""


class ToolUnreachable(ToolError):
    """A tool server did not answer the preflight check."""


class ToolInfraFailure(ToolError):
    """A tool call failed for infrastructure reasons after all retries; discard the rollout.
    `attempts`: how many were made, where the client counts them."""

    def __init__(self, message: str, *, attempts: int | None = None):
        super().__init__(message)
        self.attempts = attempts


class SandboxError(ToolInfraFailure):
    """A per-rollout sandbox cannot start or died: an infrastructure failure, so the rollout is
    discarded, never scored 0. (A command failing inside a sandbox is the model's business.)"""


class RankError(AgentRFTError):
    """A rank of a distributed update step (`agentrft.train.distributed`) raised or died; the
    other ranks are stopped with it, since they would wait for it in the next collective."""


class GraderError(AgentRFTError):
    """Base of grader failures."""


class GraderInfraFailure(GraderError):
    """The grader could not produce a score (after retries); discard the rollout."""


class EngineError(AgentRFTError):
    """A remote inference server failed after retries, or refused or garbled a request."""


class CheckpointError(AgentRFTError):
    """A checkpoint is missing or unreadable."""


class JobStateError(AgentRFTError):
    """The job's status does not allow the request (e.g. resuming a running job). The API
    answers 400 with code `invalid_job_state`."""


class InvalidTransition(JobStateError):
    """The job store refused to move a job between two statuses its transition table does not
    connect (`agentrft.jobs.store.TRANSITIONS`): a bug in the caller, or a request that lost a
    race with the worker."""

    def __init__(self, job_id: str, current: str, new: str, allowed: tuple[str, ...]):
        self.job_id, self.current, self.new = job_id, current, new
        nexts = ", ".join(allowed) if allowed else "no other status (it is finished)"
        super().__init__(f"job {job_id} is {current}; it cannot become {new} "
                         f"(from {current} it can become: {nexts})")


class TrainingPaused(AgentRFTError):
    """The run paused itself: a step discarded more rollouts than allowed (tools, grader or
    engine failing), so it saved a checkpoint and stopped rather than train on what is left.
    `Trainer.run_async` reports it as a value (`outcome` "paused", `pause_reason`), as it does
    a requested pause; `agentrft.train.loop.train` (and so `agentrft train`) raises this.

    `reason` says what happened; how to resume depends on who runs the job, so the message
    appends a hint: the CLI's `--resume` by default, the jobs API's resume path (`api_hint`)."""

    CLI_HINT = "fix the cause, then run again with --resume"

    def __init__(self, reason: str, hint: str = CLI_HINT):
        self.reason, self.hint = reason, hint
        super().__init__(f"{reason}; {hint}")

    @staticmethod
    def api_hint(job_id: str) -> str:
        return (f"fix the cause, then POST /v1/fine_tuning/jobs/{job_id}/resume "
                f"(or: agentrft jobs resume {job_id})")

    def with_hint(self, hint: str) -> "TrainingPaused":
        return TrainingPaused(self.reason, hint)

    def __reduce__(self):  # pickles (Ray, multiprocessing) with reason and hint kept apart
        return (TrainingPaused, (self.reason, self.hint))
