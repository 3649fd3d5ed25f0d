"""What every request passes before a route sees it: the API key, then the body size.

The API key guards /v1 (as a bearer token) and the dashboard's data under /dashboard/api
(a bearer token, or the session cookie `POST /dashboard/login` sets, so a browser can read
it). The dashboard's pages and scripts hold no data and stay open. The cookie holds an HMAC
of the key under a secret made when the server starts: never the key itself, and a
restart signs everyone out.

Both answer in OpenAI's error shape themselves (they run outside FastAPI's exception
handlers), and both run before any body byte is read: a client without a key cannot make
the server buffer a large upload, and a declared Content-Length over the cap is refused
without reading it. A body that does not declare its length (chunked) is counted as it
arrives and refused once it passes the cap.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentrft.web.errors import error_response


class _TooLarge(Exception):
    pass


SESSION_COOKIE = "agentrft_session"


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def is_dashboard_data_path(path: str) -> bool:
    return path == "/dashboard/api" or path.startswith("/dashboard/api/")


def session_token(secret: bytes, key: str | bytes) -> str:
    """The dashboard cookie's value for an API key."""
    raw = key.encode() if isinstance(key, str) else key
    return hmac.new(secret, raw, hashlib.sha256).hexdigest()


def key_matches(key: str | bytes, keys: list[bytes]) -> bool:
    """Whether `key` is one of `keys`. Compared with every key, so the time taken does not
    say which one came close."""
    raw = key.encode() if isinstance(key, str) else key
    return any([hmac.compare_digest(raw, k) for k in keys])


def _cookie(scope: Scope, name: str) -> bytes:
    for k, v in scope["headers"]:
        if k == b"cookie":
            for part in v.split(b";"):
                n, _, value = part.strip().partition(b"=")
                if n == name.encode():
                    return value
    return b""


class GuardMiddleware:
    """`api_keys` (empty: no auth) guards every /v1 path; `/health` and the docs stay open.
    Bodies are capped at `max_body_bytes`, except uploads to `upload_path`."""

    def __init__(self, app: ASGIApp, *, api_keys: list[str], max_body_bytes: int,
                 upload_path: str, max_upload_body_bytes: int, session_secret: bytes = b""):
        self.app = app
        self.keys = [k.encode() for k in api_keys if k]
        self.sessions = [session_token(session_secret, k).encode() for k in self.keys]
        self.max_body_bytes = max_body_bytes
        self.upload_path = upload_path
        self.max_upload_body_bytes = max_upload_body_bytes

    def authorized(self, scope: Scope) -> bool:
        path = scope["path"]
        dashboard = is_dashboard_data_path(path)
        if not self.keys or not (dashboard or is_api_path(path)):
            return True
        if dashboard and (cookie := _cookie(scope, SESSION_COOKIE)):
            return key_matches(cookie, self.sessions)
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return key_matches(token.strip(), self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.authorized(scope):
            response = error_response(
                401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return

        limit = (self.max_upload_body_bytes if scope["path"] == self.upload_path
                 else self.max_body_bytes)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await error_response(400, "invalid Content-Length header",
                                     code="invalid_header")(scope, receive, send)
                return
            if length > limit:
                await self._too_large(scope, receive, send, limit)
                return

        received, too_large, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:  # the route turned our _TooLarge into some other answer: ours wins
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not too_large:  # whatever the route made of our _TooLarge, the answer is 413
                raise
        if too_large and not started:
            await self._too_large(scope, receive, send, limit)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        await error_response(413, f"request body too large (the limit here is {limit} bytes)",
                             code="request_too_large")(scope, receive, send)
