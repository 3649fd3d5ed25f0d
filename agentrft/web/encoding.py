"""JSON in and out of the API, stricter than Python's `json` on the way in and safer on the
way out.

In: request bodies must be RFC 8259 JSON. Python's parser also accepts `NaN`/`Infinity` and
lone UTF-16 surrogates (`"\\ud800"`); both would pass validation and then break later (a
NaN cannot be rendered back in a response, a surrogate cannot be stored in SQLite), so they
are rejected here, as a 400 naming the problem.

Out: a float that is not finite (a metric that divided by zero, a grader's NaN) is sent as
`null` rather than turning a read of the job's events into a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Coroutine

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def _walk(value: Any):
    """Every value in a parsed JSON document, iteratively (the document may be deep)."""
    stack = [value]
    while stack:
        v = stack.pop()
        yield v
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def loads_strict(body: bytes) -> Any:
    """Parse a request body; anything that is not RFC 8259 JSON raises JSONDecodeError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise json.JSONDecodeError(f"the body is not UTF-8 ({e.reason})", "", e.start) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    for v in _walk(data):
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise json.JSONDecodeError("a string holds a lone UTF-16 surrogate",
                                           "", 0) from None
    return data


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """FastAPI parses bodies through `request.json()`; this route hands it the strict one."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def finite(value: Any) -> Any:
    """A copy with NaN and ±inf replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # a non-finite float somewhere: the rare path pays for the copy
            return super().render(finite(content))
