"""`endpoint` grader: the score comes from the user's own HTTP service.

    {"type": "endpoint", "name": "judge", "url": "https://grader.internal/score",
     "headers": {"Authorization": "Bearer ..."}, "rate_limit": 20, "pass_threshold": 0.5,
     "timeout_s": 60}

Each grade is `POST url` with the configured headers plus `Content-Type: application/json`
and the body `{"sample": {...}, "item": {...}, "trace_id": "trace_..."}` (the same
trace_id the rollout's tool calls carried); the reply is `{"score": <number>}`.

Outcomes (`grade` never raises; a failure is a result with a flag, and an unexpected
exception inside this module, a bug rather than the endpoint's doing, is `other_error`):
- 2xx with a finite number `score`: reward = score clipped to [0, 1]; the unclipped value
  is `metadata.scores.raw`. `passed` = reward ≥ pass_threshold when one is configured.
- 5xx, 408, 429, timeout, connection error, a reply that is not JSON or has no finite
  numeric `score` (booleans and numeric strings do not count): retried up to `max_retries`
  (3) times with exponential backoff (a 429's `Retry-After` is honoured, up to 60 s);
  then reward 0 with `unresponsive_reward_error`. That flag is in DISCARD_FLAGS: the
  rollout is discarded, never scored 0 for the grader's failure.
- [decision] any other 4xx, or a 1xx/3xx (redirects are not followed): no retry (the same
  request would get the same answer), `unresponsive_reward_error` at once. The flag has no
  detail key in OpenAI's shape, so what went wrong is in `metadata.scores`:
  `error` (text), `status_code` (last HTTP status, or None) and `attempts`.
- `timeout_s` (default 600) bounds each attempt as a whole, not each socket read.

`rate_limit` (requests per second) spaces requests evenly, at least 1/rate_limit s apart,
retries included. [decision] The limiter is shared by every endpoint grader in the process
with the same url and rate_limit, so all rollouts of a job (train and eval graders, a url
named twice inside a `multi`) draw on one budget; it is a min-interval limiter (no bursts),
the simplest thing that never exceeds the rate in any window of 1/rate_limit seconds.

Header values (API keys) of 8 characters or more never appear in results: error texts are
scrubbed of them (an error page may echo the request), and URL passwords are dropped.
"""

from __future__ import annotations

import asyncio
import json
import math
import numbers
import threading
import time
import weakref
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, BeforeValidator

from agentrft.httpio import describe_error, read_capped, redact, secrets_of
from agentrft.errors import SpecError
from agentrft.graders.base import Grader, GraderResult
from agentrft.graders.config import GraderConfig, Number, PositiveNumber, invalid, read_config
from agentrft.retry import Again, GaveUp, retry

MAX_REPLY_BYTES = 1_000_000  # a score reply is tiny; more than this is not a score
PREVIEW_CHARS = 200  # how much of an unusable reply goes into the error text
MAX_RETRY_AFTER_S = 60.0
_RETRYABLE_4XX = (408, 429)


class RateLimiter:
    """At most `rate` acquisitions per second, spaced 1/rate apart; safe across event loops.

    Each caller reserves the next free slot synchronously (under a thread lock, no await in
    between) and then sleeps until it, so no asyncio primitive ties it to one loop.
    """

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    async def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


_LIMITERS: "weakref.WeakValueDictionary[tuple[str, float], RateLimiter]" = \
    weakref.WeakValueDictionary()
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(url: str, rate: float) -> RateLimiter:
    """The process-wide limiter for `url` at `rate` (alive while some grader holds it)."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get((url, rate))
        if limiter is None:
            limiter = _LIMITERS[(url, rate)] = RateLimiter(rate)
        return limiter


class EndpointGrader(Grader):
    type = "endpoint"

    def __init__(self, name: str, url: str, headers: dict[str, str] | None = None,
                 rate_limit: float | None = None, pass_threshold: float | None = None,
                 timeout_s: float = 600.0, max_retries: int = 3, backoff_s: float = 0.5,
                 client: httpx.AsyncClient | None = None):
        parsed = _parse_url(url)
        self.name, self.url = name, url
        self.pass_threshold = pass_threshold
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.rate_limit = rate_limit
        self._limiter = shared_limiter(url, float(rate_limit)) if rate_limit else None
        # Ours wins over a configured Content-Type: the body is always JSON.
        self._headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
        self._headers["Content-Type"] = "application/json"
        self._secrets = secrets_of(headers)
        self._safe_url = str(parsed.copy_with(username=None, password=None)) if parsed.userinfo \
            else url
        self._given_client = client
        # An httpx client belongs to the event loop it first ran on; keep one per loop.
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    async def grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str) -> GraderResult:
        start = time.perf_counter()
        try:
            return await self._grade(sample, item, trace_id, start)
        except Exception as exc:  # never raise: a grader failure is a flagged result
            return self._failure(f"unexpected {type(exc).__name__}: {exc}", None, 0, start,
                                 flag="other_error")

    async def _grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str,
                     start: float) -> GraderResult:
        body = json.dumps({"sample": sample, "item": item, "trace_id": trace_id},
                          ensure_ascii=False, default=str).encode()
        status: int | None = None  # the last attempt's HTTP status (None: no answer)

        async def attempt(before: int) -> GraderResult | Again:
            nonlocal status
            if self._limiter is not None:
                await self._limiter.acquire()
            try:
                # asyncio.timeout bounds the whole attempt; httpx's timeout is per read.
                async with asyncio.timeout(self.timeout_s):
                    status, raw, retry_after = await self._post(body)
            except (httpx.HTTPError, OSError, TimeoutError) as exc:
                status = None
                return Again(describe_error(exc))
            if status >= 500 or status in _RETRYABLE_4XX:
                return Again(f"HTTP {status}: {_preview(raw)}", wait_at_least_s=retry_after)
            if not 200 <= status < 300:
                what = "redirects are not followed; point url at the final URL" \
                    if 300 <= status < 400 else "not retried"
                return self._failure(f"HTTP {status} ({what}): {_preview(raw)}", status,
                                     before + 1, start)
            score, problem = _read_score(raw)
            if problem:
                return Again(problem)
            reward = min(1.0, max(0.0, score))
            return GraderResult.make(
                reward, name=self.name, type=self.type,
                execution_time=time.perf_counter() - start,
                scores={"raw": score, "attempts": before + 1},
                passed=None if self.pass_threshold is None else reward >= self.pass_threshold)

        result = await retry(attempt, max_retries=self.max_retries, backoff_s=self.backoff_s)
        if isinstance(result, GaveUp):
            return self._failure(f"no score after {result.attempts} attempts; last error: "
                                 f"{result.last}", status, result.attempts, start)
        return result

    async def _post(self, body: bytes) -> tuple[int, bytes, float | None]:
        """One attempt: (status, at most MAX_REPLY_BYTES + 1 bytes of reply, Retry-After s)."""
        async with self._client_for_loop().stream("POST", self.url, content=body,
                                                  headers=self._headers,
                                                  timeout=self.timeout_s) as resp:
            raw = await read_capped(resp, MAX_REPLY_BYTES + 1)
            return resp.status_code, raw, _retry_after(resp)

    def _failure(self, error: str, status: int | None, attempts: int, start: float,
                 flag: str = "unresponsive_reward_error") -> GraderResult:
        message = self._redact(f"endpoint grader {self.name!r} at {self._safe_url}: {error}")
        return GraderResult.make(
            0.0, name=self.name, type=self.type, errors={flag: True},
            execution_time=time.perf_counter() - start,
            scores={"error": message, "status_code": status, "attempts": attempts},
            passed=None if self.pass_threshold is None else False)

    def _client_for_loop(self) -> httpx.AsyncClient:
        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # No pool limit: the rollout scheduler (and rate_limit) bound concurrency, and
            # waiting for a pool slot here would turn queueing into spurious timeouts.
            self._client = httpx.AsyncClient(timeout=self.timeout_s,
                                             limits=httpx.Limits(max_connections=None))
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool this grader opened (not a client it was given)."""
        if self._client is not None:
            client, self._client, self._client_loop = self._client, None, None
            await client.aclose()

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def _unit_interval(value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        invalid(f"must be in [0, 1], got {value}")
    return value


class EndpointConfig(GraderConfig):
    """The `endpoint` grader's config. Header values are strings and never echoed in errors
    (they may be secrets); an empty or null `headers`, `rate_limit`, ... is as good as absent."""

    name: str
    url: str
    headers: Annotated[dict[str, str], BeforeValidator(lambda v: v or {})] = {}
    rate_limit: PositiveNumber | None = None
    timeout_s: PositiveNumber | None = None
    pass_threshold: Annotated[Number | None, AfterValidator(_unit_interval)] = None


def build_endpoint_grader(config: dict[str, Any]) -> EndpointGrader:
    """The `endpoint` factory for `register_grader_type`."""
    typed = read_config(EndpointConfig, config)
    return EndpointGrader(typed.name, typed.url, headers=dict(typed.headers),
                          rate_limit=typed.rate_limit, pass_threshold=typed.pass_threshold,
                          timeout_s=600.0 if typed.timeout_s is None else typed.timeout_s)


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise SpecError(f"invalid URL: {exc}", field="grader.url") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SpecError("url must be an absolute http:// or https:// URL", field="grader.url")
    return parsed


def _read_score(raw: bytes) -> tuple[float, str]:
    """(score, "") or (0, what is wrong with the reply)."""
    if len(raw) > MAX_REPLY_BYTES:
        return 0.0, f"reply larger than {MAX_REPLY_BYTES} bytes"
    try:
        data = json.loads(raw)
    except ValueError:
        return 0.0, f"reply is not JSON: {_preview(raw)}"
    if not isinstance(data, dict) or "score" not in data:
        return 0.0, f"reply has no 'score' field: {_preview(raw)}"
    score = data["score"]
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        return 0.0, f"'score' is not a number: {_preview(raw)}"
    if not math.isfinite(float(score)):
        return 0.0, f"'score' is {score} (not a finite number)"
    return float(score), ""


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


def _preview(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text[:PREVIEW_CHARS] + (" …(truncated)" if len(text) > PREVIEW_CHARS else "")
