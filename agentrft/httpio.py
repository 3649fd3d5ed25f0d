"""Small pieces shared by every HTTP client of ours (tools, endpoint graders, model judges)."""

from __future__ import annotations

import httpx


def secrets_of(headers: dict[str, str] | None) -> list[str]:
    """Header values worth scrubbing from messages, longest first. Short values ("1",
    "json") are not secrets, and scrubbing them would mangle text."""
    return sorted({v for v in (headers or {}).values() if len(v) >= 8}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


async def read_capped(resp: httpx.Response, limit: int) -> bytes:
    """Read at most `limit` bytes (decoded), then stop: a huge reply costs no more than that."""
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def describe_error(exc: BaseException) -> str:
    """A transport error in words; httpx timeouts often have an empty message."""
    if isinstance(exc, TimeoutError):
        return "timeout (no complete reply in time)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
