"""The HTTP API: OpenAI's fine-tuning, files and graders paths over a `JobStore`.

    POST /v1/files                                  upload a JSONL dataset (multipart)
    GET  /v1/files/{file_id}
    POST /v1/fine_tuning/jobs                       create (starts in validating_files)
    GET  /v1/fine_tuning/jobs                       ?after= &limit= &metadata[k]=v
    GET  /v1/fine_tuning/jobs/{job_id}
    POST /v1/fine_tuning/jobs/{job_id}/cancel|pause|resume
    GET  /v1/fine_tuning/jobs/{job_id}/events       ?after= &limit=
    GET  /v1/fine_tuning/jobs/{job_id}/checkpoints  ?after= &limit=
    POST /v1/fine_tuning/alpha/graders/run
    POST /v1/fine_tuning/alpha/graders/validate
    POST /v1/fine_tuning/alpha/tool/run             one tool call as training makes it (tool_run.py)
    POST /v1/embeddings                             (agentrft.serving.embeddings)
    GET  /v1/models, /v1/models/{model}           bundled, ft: models and their checkpoints
    POST /v1/responses, /v1/chat/completions, /v1/completions   inference (with `inference`)
    GET  /health                                    (no API key needed)
    GET  /, /dashboard/...                          the dashboard (see dashboard_api.py)

Routes are thin: the work is `agentrft.jobs.service` and `agentrft.graders.api`; the error
shape and the status of each domain error are in `errors.py`; the API key and body caps in
`middleware.py`. The worker process trains; nothing here does. Inference runs here, in
this process, over a `ModelPool` (`agentrft/serving/pool.py`): the training worker is
another process, so a training step never holds a request's Python thread or model.

    app = create_app(JobStore("data"), api_keys=["sk-local"])
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, FastAPI, File, Form, Query, Request
from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from agentrft import __version__
from agentrft.errors import SpecError
from agentrft.graders.api import run_grader, validate_grader
from agentrft.jobs import service
from agentrft.jobs.store import JobStore
from agentrft.models.bundled import BUNDLED
from agentrft.server.dashboard_api import install_dashboard
from agentrft.web.encoding import SafeJSONResponse, StrictJSONRoute
from agentrft.web.errors import APIError, CatchAllMiddleware, install_error_handlers, log
from agentrft.web.middleware import GuardMiddleware, key_matches
from agentrft.server.tool_run import ToolRunRequest, run_tool_call
from agentrft.serving.embeddings import EmbeddingModels, embeddings_router

if TYPE_CHECKING:  # agentrft.serving imports agentrft.server's errors: imported when used
    from agentrft.serving.pool import ModelPool

MiB = 2**20
GiB = 2**30
UPLOAD_PATH = "/v1/files"
MULTIPART_SLACK = MiB  # boundaries and part headers around an upload at the cap
SQLITE_INT_MAX = 2**63 - 1
_METADATA_KEY = re.compile(r"metadata\[(.+)\]")

Limit = Annotated[int, Query(ge=1, le=100)]


class GraderRunRequest(BaseModel):
    """OpenAI's graders-run body; `model_sample` may also be a full sample object. `trace_id`
    (sent by OpenAI's Agent RFT helpers) reaches endpoint graders and model judges, so a
    grader server can join the call to the rollout's tool calls."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    grader: dict[str, Any]
    model_sample: str | dict[str, Any]
    item: dict[str, Any] | None = None
    trace_id: str | None = None


class GraderValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grader: dict[str, Any]
    trace_id: str | None = None  # the helpers may send the run body's; nothing to trace here


def public_file(record: dict[str, Any]) -> dict[str, Any]:
    """The store's file record without its local path (never sent to a client)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def page(data: list[dict[str, Any]], has_more: bool, **extra: Any) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, **extra}


def path_scrubber(store: JobStore):
    """A function replacing the store's local file paths in any string of an object by the
    file ids they end in: a validation error names `file-abc:3`, not `/srv/data/files/...`."""
    prefix = str(store.data_dir / "files") + os.sep

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(prefix, "") if prefix in value else value
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return scrub


def validate_job_files(store: JobStore, job_id: str) -> None:
    """The validating_files stage. A crash in it (a bug, not a bad input: those fail the job
    with a message) fails the job too, rather than leaving it in validating_files forever."""
    try:
        service.validate_files_sync(store, job_id)
    except Exception as e:  # noqa: BLE001 - logged with its traceback; the job says why
        log.exception("validating files of %s crashed", job_id)
        error = {"code": "internal_error", "param": None,
                 "message": f"file validation crashed: {type(e).__name__}: {e}"}
        if store.set_status(job_id, "failed", expect=("validating_files",), error=error):
            store.add_event(job_id, error["message"], level="error")


def create_app(store: JobStore, *, api_keys: list[str] | None = None,
               validate_in_background: bool = True, max_body_bytes: int = 10 * MiB,
               max_upload_bytes: int = 512 * MiB, run_root: str | Path | None = None,
               embedding_models: EmbeddingModels | None = None,
               inference: "ModelPool | None" = None) -> FastAPI:
    """The API over `store`. `api_keys`: when non-empty, every /v1 route wants one as a
    bearer token. `run_root`: a folder of run dirs (`agentrft train --out ...`) the dashboard
    shows beside the jobs. `validate_in_background=False` validates a new job's files before the
    create request returns (deterministic, for tests). Bodies over `max_body_bytes` and
    uploads over `max_upload_bytes` are refused with a 413. `embedding_models`: the names
    `/v1/embeddings` answers for (default: the bundled all-MiniLM-L6-v2 and local paths).
    `inference`: the models inference requests are answered with (see `model_pool`); None
    serves no inference."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # jobs a stopped server left in validating_files would otherwise wait forever
        stuck = [j["id"] for j in store.list_jobs(limit=10**9, status="validating_files")[0]]
        if stuck:
            log.info("validating the files of %d job(s) left in validating_files", len(stuck))
            revalidate = lambda: [validate_job_files(store, job_id) for job_id in stuck]  # noqa: E731
            if validate_in_background:
                threading.Thread(target=revalidate, daemon=True, name="revalidate").start()
            else:
                await run_in_threadpool(revalidate)
        yield

    app = FastAPI(title="agentrft", version=__version__, redirect_slashes=False,
                  default_response_class=SafeJSONResponse, lifespan=lifespan)
    install_error_handlers(app)
    session_secret = secrets.token_bytes(32)  # dashboard cookies; a restart signs out
    app.add_middleware(GuardMiddleware, api_keys=list(api_keys or []),
                       max_body_bytes=max_body_bytes, upload_path=UPLOAD_PATH,
                       max_upload_body_bytes=max_upload_bytes + MULTIPART_SLACK,
                       session_secret=session_secret)
    app.add_middleware(CatchAllMiddleware)  # added last: outermost
    api = APIRouter(prefix="/v1", route_class=StrictJSONRoute)
    scrub = path_scrubber(store)  # job errors and events name files by their local paths

    def job_or_404(job_id: str) -> dict[str, Any]:
        return scrub(service.get_job(store, job_id))

    # --- files -----------------------------------------------------------------------------

    @api.post("/files")
    def upload_file(file: UploadFile = File(...), purpose: str = Form(...)) -> dict[str, Any]:
        if purpose != "fine-tune":
            raise APIError(400, f"purpose must be 'fine-tune' (got {purpose!r})",
                           param="purpose", code="invalid_value")
        content = file.file.read(max_upload_bytes + 1)
        if len(content) > max_upload_bytes:
            raise APIError(413, f"file too large (the limit is {max_upload_bytes} bytes)",
                           param="file", code="file_too_large")
        return public_file(store.add_file(file.filename or "upload.jsonl", purpose, content))

    @api.get("/files/{file_id}")
    def get_file(file_id: str) -> dict[str, Any]:
        return public_file(service.get_file(store, file_id))

    # --- jobs ------------------------------------------------------------------------------

    @api.post("/fine_tuning/jobs")
    def create_job(background: BackgroundTasks, body: dict[str, Any] = Body(...)
                   ) -> dict[str, Any]:
        seed = body.get("seed")
        if isinstance(seed, int) and not -SQLITE_INT_MAX - 1 <= seed <= SQLITE_INT_MAX:
            # JobSpec takes any int; the store's SQLite column cannot hold this one
            raise SpecError("must fit in 64 bits", field="seed")
        try:
            job = service.create_job(store, body)
        except service.NotFound as e:
            # OpenAI answers an unknown file id with a 400 that names the field
            param = next((k for k in ("training_file", "validation_file")
                          if isinstance(body.get(k), str) and store.get_file(body[k]) is None),
                         None)
            raise APIError(400, str(e), param=param, code="file_not_found") from None
        if validate_in_background:
            background.add_task(validate_job_files, store, job["id"])
            return scrub(job)
        validate_job_files(store, job["id"])
        return job_or_404(job["id"])

    @api.get("/fine_tuning/jobs")
    def list_jobs(request: Request, after: str | None = None, limit: Limit = 20
                  ) -> dict[str, Any]:
        metadata = {m.group(1): v for k, v in request.query_params.multi_items()
                    if (m := _METADATA_KEY.fullmatch(k))}
        data, has_more = store.list_jobs(after=after, limit=limit, metadata=metadata or None)
        return page(scrub(data), has_more)

    @api.get("/fine_tuning/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_or_404(job_id)

    def action(name: str):
        def handler(job_id: str) -> dict[str, Any]:
            return scrub(service.request(store, job_id, name))

        handler.__name__ = f"{name}_job"
        return handler

    for name in ("cancel", "pause", "resume"):
        api.post(f"/fine_tuning/jobs/{{job_id}}/{name}")(action(name))

    @api.get("/fine_tuning/jobs/{job_id}/events")
    def list_events(job_id: str, after: str | None = None, limit: Limit = 20
                    ) -> dict[str, Any]:
        job_or_404(job_id)
        data, has_more = store.list_events(job_id, after=after, limit=limit)
        return page(scrub(data), has_more)

    @api.get("/fine_tuning/jobs/{job_id}/checkpoints")
    def list_checkpoints(job_id: str, after: str | None = None,
                         limit: Limit = 10) -> dict[str, Any]:
        job_or_404(job_id)
        data, has_more = store.list_checkpoints(job_id, after=after, limit=limit)
        return page(data, has_more, first_id=data[0]["id"] if data else None,
                    last_id=data[-1]["id"] if data else None)

    # --- graders ---------------------------------------------------------------------------

    @api.post("/fine_tuning/alpha/graders/run")
    def grader_run(body: GraderRunRequest) -> dict[str, Any]:
        # a fresh event loop in this worker thread: a slow grader holds no other request
        return asyncio.run(run_grader(body.grader, body.model_sample, body.item, body.trace_id))

    @api.post("/fine_tuning/alpha/graders/validate")
    def grader_validate(body: GraderValidateRequest) -> dict[str, Any]:
        validate_grader(body.grader)
        return {"grader": body.grader}

    # --- tools -----------------------------------------------------------------------------

    @api.post("/fine_tuning/alpha/tool/run")
    async def tool_run(body: ToolRunRequest) -> dict[str, Any]:
        return await run_tool_call(body)

    # --- models ----------------------------------------------------------------------------

    embeddings = embedding_models or EmbeddingModels()

    def models() -> list[dict[str, Any]]:
        out = [{"id": name, "object": "model", "created": 0, "owned_by": "agentrft"}
               for name in [*BUNDLED, *(n for n in embeddings.names() if n not in BUNDLED)]]
        jobs, _ = store.list_jobs(limit=10**9)
        for j in jobs:
            if j["status"] == "succeeded" and j["fine_tuned_model"]:
                out.append({"id": j["fine_tuned_model"], "object": "model",
                            "created": j["finished_at"] or j["created_at"],
                            "owned_by": j["organization_id"]})
            # checkpoints as they appear, of running jobs too (pruned ones disappear)
            out += [{"id": r["model_name"], "object": "model", "created": r["created_at"],
                     "owned_by": j["organization_id"]} for r in store.checkpoint_rows(j["id"])]
        return out

    @api.get("/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": models()}

    if inference is not None:
        from agentrft.serving.app import inference_routes

        async def serving_for(model: str):
            return await run_in_threadpool(inference.serving_for, model)

        inference_routes(api, serving_for)

    @api.get("/models/{model:path}")
    def get_model(model: str) -> dict[str, Any]:
        found = next((m for m in models() if m["id"] == model), None)
        if found is None:
            raise service.NotFound(f"no model named {model!r}")
        return found

    app.include_router(api)
    app.include_router(embeddings_router(embeddings))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    keys = [k.encode() for k in api_keys or [] if k]
    install_dashboard(app, store, auth_required=bool(keys), session_secret=session_secret,
                      run_root=Path(run_root) if run_root is not None else None,
                      key_ok=lambda key: key_matches(key, keys))

    return app


def model_pool(store: JobStore, *, device: str = "cpu", memory_budget_bytes: int = 8 * GiB
               ) -> "ModelPool":
    """The inference models of a jobs server: bundled models, the base models of its jobs,
    and its ft: models and checkpoints (looked up in `store`, not AGENTRFT_DATA_DIR)."""
    from agentrft.models.bundled import bundled_model_dir
    from agentrft.models.loading import resolve_model_dir
    from agentrft.serving.pool import ModelPool

    def resolve(name: str) -> Path | None:
        if name in BUNDLED:
            return bundled_model_dir(name)
        if name.startswith("ft:"):
            path = store.resolve_model_name(name)
            return Path(path) if path else None
        if any(j["model"] == name for j in store.list_jobs(limit=10**9)[0]):
            return resolve_model_dir(name)
        return None

    return ModelPool(resolve, device=device, memory_budget_bytes=memory_budget_bytes)
