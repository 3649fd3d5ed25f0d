"""`ft:` model names: the fine-tuned models of the jobs service, resolved to their checkpoints.

    ft:<base>:<suffix>:<job id>                 a job's model: its newest checkpoint
    ft:<base>:<suffix>:<job id>:ckpt-step-N     one of its checkpoints (`service.model_name`)

`models/` loads directories and knows nothing of jobs, so every entry point that takes a model
reference from a user turns an `ft:` name into its directory here, before anything loads it:
the CLI (`train`, `eval`, `serve`, `export`), the worker building a job's spec, and the
server's model look-up (`server/app.py`, through its own store). Rank subprocesses and Ray
workers are handed the spec already resolved.

    resolve_fine_tuned("ft:base:demo:ftjob-abc")    # "/data/runs/ftjob-abc/checkpoints/step_000002"
    resolve_fine_tuned("bundled:smollm2-135m-instruct")   # not an ft: name: returned as it is
    resolve_spec_model(job)                          # the spec with its `model` resolved

Names are looked up in the store of `data_dir` (default: AGENTRFT_DATA_DIR, see
`store.default_data_dir`), or in the `store` given.
"""

from __future__ import annotations

from pathlib import Path

from agentrft.errors import ModelLoadError
from agentrft.jobs.store import JobStore, default_data_dir
from agentrft.spec.job import JobSpec

PREFIX = "ft:"


def resolve_fine_tuned(ref: str, data_dir: str | Path | None = None, *,
                       store: JobStore | None = None) -> str:
    """The checkpoint directory an `ft:` name stands for; any other reference unchanged.
    Raises ModelLoadError for an `ft:` name the store does not know."""
    if not ref.startswith(PREFIX):
        return ref
    if store is not None:
        return _look_up(store, ref, hint="")
    where = Path(data_dir) if data_dir is not None else default_data_dir()
    hint = " (set AGENTRFT_DATA_DIR to the server's --data-dir)"
    if not (where / "agentrft.sqlite").is_file():  # no store there: do not create one to ask
        raise ModelLoadError(f"no fine-tuned model {ref!r} in {where}{hint}")
    opened = JobStore(where)
    try:
        return _look_up(opened, ref, hint=hint)
    finally:
        opened.close()


def resolve_spec_model(job: JobSpec, data_dir: str | Path | None = None, *,
                       store: JobStore | None = None) -> JobSpec:
    """`job` with an `ft:` model replaced by its checkpoint directory (a copy; `job` itself
    when there is nothing to resolve). Only the spec a run is given holds the directory: a
    job object keeps its `ft:` name. Checkpoints written by that run record the directory as
    their `base_model`, so they are self-contained: loading them needs no jobs database."""
    path = resolve_fine_tuned(job.model, data_dir, store=store)
    return job if path == job.model else job.model_copy(update={"model": path})


def _look_up(store: JobStore, name: str, *, hint: str) -> str:
    path = store.resolve_model_name(name)
    if path is None:
        raise ModelLoadError(f"no fine-tuned model {name!r} in {store.data_dir}{hint}")
    return path
