"""The one retry loop (agentrft/retry.py): results end it, `Again` retries with doubling
backoff (or longer when the server asks), exceptions pass through, and `GaveUp` carries the
attempt count and the last reason."""

from __future__ import annotations

import asyncio

import pytest

from agentrft import retry as retry_module
from agentrft.retry import Again, GaveUp, backoff_delay, retry, retry_sync


def scripted(answers):
    """An attempt function answering from `answers` in order, recording the `n` it was given."""
    seen = []

    def attempt(n):
        seen.append(n)
        answer = answers[len(seen) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return attempt, seen


@pytest.fixture
def sleeps(monkeypatch):
    """The delays `retry` and `retry_sync` slept, without sleeping them."""
    slept = []

    async def fake_async_sleep(s):
        slept.append(s)

    monkeypatch.setattr(retry_module.asyncio, "sleep", fake_async_sleep)
    monkeypatch.setattr(retry_module.time, "sleep", slept.append)
    return slept


def run_async(attempt, **kw):
    async def wrapped(n):
        return attempt(n)

    return asyncio.run(retry(wrapped, **kw))


@pytest.mark.parametrize("runner", [run_async, retry_sync])
def test_a_result_after_transient_failures_is_returned_with_doubling_backoff(runner, sleeps):
    attempt, seen = scripted([Again("HTTP 503"), Again("timed out"), "ok"])
    assert runner(attempt, max_retries=3, backoff_s=0.5) == "ok"
    assert seen == [0, 1, 2]
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize("runner", [run_async, retry_sync])
def test_giving_up_reports_the_attempts_and_the_last_reason(runner, sleeps):
    attempt, seen = scripted([Again("HTTP 502"), Again("HTTP 503"), Again("connection refused")])
    assert runner(attempt, max_retries=2, backoff_s=0.25) == GaveUp(attempts=3, last="connection refused")
    assert seen == [0, 1, 2] and sleeps == [0.25, 0.5]


@pytest.mark.parametrize("runner", [run_async, retry_sync])
def test_an_exception_is_not_retried(runner, sleeps):
    attempt, seen = scripted([Again("HTTP 500"), ValueError("HTTP 404: no such model"), "never"])
    with pytest.raises(ValueError, match="404"):
        runner(attempt, max_retries=3, backoff_s=0.5)
    assert seen == [0, 1] and sleeps == [0.5]


@pytest.mark.parametrize("runner", [run_async, retry_sync])
def test_no_retries_means_one_attempt_and_no_sleep(runner, sleeps):
    attempt, seen = scripted([Again("HTTP 503")])
    assert runner(attempt, max_retries=0, backoff_s=0.5) == GaveUp(attempts=1, last="HTTP 503")
    assert seen == [0] and sleeps == []


@pytest.mark.parametrize("runner", [run_async, retry_sync])
def test_a_servers_retry_after_lengthens_only_the_wait_that_follows_it(runner, sleeps):
    attempt, _ = scripted([Again("HTTP 429", wait_at_least_s=3.0), Again("HTTP 429", wait_at_least_s=0.1),
                           Again("HTTP 503"), None])
    assert runner(attempt, max_retries=3, backoff_s=0.5) is None  # None is a result too
    assert sleeps == [3.0, 1.0, 2.0]


def test_backoff_delay():
    assert [backoff_delay(n, 0.5) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(1, 0.5, wait_at_least_s=7.0) == 7.0
    assert backoff_delay(3, 0.5, wait_at_least_s=0.1) == 2.0
