"""One retry loop with exponential backoff, for every client that talks to something that can
be briefly down: HTTP and MCP tools, endpoint and model graders, the remote engine.

Each client writes one *attempt*: it returns its result, raises what must not be retried (a
4xx: the request is wrong, asking again gives the same answer), or returns `Again(reason)`
for a transient failure (5xx, timeout, lost connection). `retry` runs the attempts, sleeping
`backoff_s`, 2 × `backoff_s`, 4 × ... between them (at least `Again.wait_at_least_s`, a 429's
Retry-After), and after `1 + max_retries` of them hands back `GaveUp` with the last reason;
what to raise then (and how to word it) stays the client's business.

    async def attempt(n: int):            # n: attempts made before this one (0, 1, ...)
        try:
            resp = await client.post(url, json=body)
        except httpx.TransportError as e:
            return Again(describe_error(e))
        if resp.status_code >= 500:
            return Again(f"HTTP {resp.status_code}")
        return resp                       # anything but Again ends the loop

    result = await retry(attempt, max_retries=3, backoff_s=0.5)
    if isinstance(result, GaveUp):
        raise ToolInfraFailure(f"failed after {result.attempts} attempts; last error: {result.last}")

`retry_sync` is the same loop for blocking code (`time.sleep` between attempts).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Again:
    """An attempt's transient failure: try again (if attempts are left)."""

    reason: str
    wait_at_least_s: float | None = None  # e.g. the server's Retry-After


@dataclass(frozen=True)
class GaveUp:
    """Every attempt failed transiently; `last` is the last one's reason."""

    attempts: int
    last: str


def backoff_delay(retries_so_far: int, backoff_s: float, wait_at_least_s: float | None = None) -> float:
    """Seconds to wait before the retry that follows `retries_so_far` failed attempts (>= 1)."""
    delay = backoff_s * 2 ** (retries_so_far - 1)
    return delay if wait_at_least_s is None else max(delay, wait_at_least_s)


async def retry(attempt: Callable[[int], Awaitable[T | Again]], *, max_retries: int,
                backoff_s: float) -> T | GaveUp:
    """Run `attempt(0)`, `attempt(1)`, ... until one returns something other than `Again`
    (returned as is) or `1 + max_retries` attempts have failed (`GaveUp`)."""
    again = Again("no attempt made")
    for n in range(1 + max_retries):
        if n:
            await asyncio.sleep(backoff_delay(n, backoff_s, again.wait_at_least_s))
        result = await attempt(n)
        if not isinstance(result, Again):
            return result
        again = result
    return GaveUp(attempts=1 + max_retries, last=again.reason)


def retry_sync(attempt: Callable[[int], T | Again], *, max_retries: int,
               backoff_s: float) -> T | GaveUp:
    """`retry` for blocking code."""
    again = Again("no attempt made")
    for n in range(1 + max_retries):
        if n:
            time.sleep(backoff_delay(n, backoff_s, again.wait_at_least_s))
        result = attempt(n)
        if not isinstance(result, Again):
            return result
        again = result
    return GaveUp(attempts=1 + max_retries, last=again.reason)
