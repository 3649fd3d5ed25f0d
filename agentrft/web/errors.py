"""Every failure the API returns, in OpenAI's error shape, so the `openai` SDK raises its
usual exception classes (BadRequestError, NotFoundError, ...) against our server:

    {"error": {"message": str, "type": str, "param": str | None, "code": str | None}}

Status → type: 401 `authentication_error`, 404 `not_found_error`, 5xx `server_error`,
every other 4xx `invalid_request_error`.

Domain errors map to statuses here, once, so routes stay plain:

    SpecError        400  param = the field it names (`method.reinforcement.grader.type`)
    NotFound         404
    JobStateError    400  code `invalid_job_state` (OpenAI answers 400 to e.g. cancelling a
                          finished job; 409 would be more precise but breaks SDK callers
                          that catch BadRequestError)
    validation       400  FastAPI's RequestValidationError (query, path, body); param from loc
    anything else    500  logged with its traceback; the body never carries one
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentrft.errors import SpecError
from agentrft.jobs.service import JobStateError, NotFound
from agentrft.web.encoding import SafeJSONResponse
from agentrft.spec.errors import field_path

log = logging.getLogger("agentrft.server")

_LOCATIONS = ("body", "query", "path", "header", "cookie")


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(status: int, message: str, *, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param,
                      "code": code}}


def error_response(status: int, message: str, *, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None
                   ) -> SafeJSONResponse:
    return SafeJSONResponse(error_body(status, message, param=param, code=code),
                            status_code=status, headers=headers)


class APIError(Exception):
    """Raised by a route for an HTTP-level failure that no domain error describes."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


async def _api_error(request: Request, e: APIError) -> SafeJSONResponse:
    return error_response(e.status, e.message, param=e.param, code=e.code)


async def _http_exception(request: Request, e: StarletteHTTPException) -> SafeJSONResponse:
    """The framework's own: unknown route (404), wrong method (405), unparseable body (400)."""
    message = e.detail if isinstance(e.detail, str) else str(e.detail)
    if e.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    return error_response(e.status_code, message, code=_HTTP_CODES.get(e.status_code),
                          headers=getattr(e, "headers", None))


def _param_of(loc: tuple[Any, ...]) -> str | None:
    rest = loc[1:] if loc and loc[0] in _LOCATIONS else loc
    return field_path(tuple(rest)) or None


async def _validation_error(request: Request, e: RequestValidationError) -> SafeJSONResponse:
    errors = e.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    loc = tuple(first.get("loc") or ())
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        reason = ctx.get("error", "decode error")
        return error_response(400, f"the body is not valid JSON: {reason}", code="invalid_json")
    param = _param_of(loc)
    msg = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden" and param:
        msg = f"unknown key {str(loc[-1])!r}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    where = param or ("request body" if loc[:1] == ("body",) else None)
    return error_response(400, f"{where}: {msg}" if where else msg, param=param,
                          code="invalid_value")


async def _spec_error(request: Request, e: SpecError) -> SafeJSONResponse:
    return error_response(400, str(e), param=e.field, code="invalid_value")


async def _not_found(request: Request, e: NotFound) -> SafeJSONResponse:
    return error_response(404, str(e), code="not_found")


async def _job_state(request: Request, e: JobStateError) -> SafeJSONResponse:
    return error_response(400, str(e), code="invalid_job_state")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SpecError, _spec_error)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(JobStateError, _job_state)


class CatchAllMiddleware:
    """The last line: an unexpected exception is logged with its traceback and answered with
    a 500 in the same shape. (Starlette's own handler would re-raise after answering, so the
    server logs it twice and the test client raises instead of showing the response.)"""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:  # after the response began (a background task) there is no one to tell
                response = error_response(500, "internal server error (see the server log)",
                                          code="internal_error")
                await response(scope, receive, send)
