"""Secrets in a job spec (tool headers, API keys) never leave it: every copy written to an
event, a log, a run directory or an API response goes through `redact`."""

from __future__ import annotations

from typing import Any

SECRET_KEYS = {"headers", "api_key", "authorization"}


def redact(value: Any) -> Any:
    """A copy with tool headers and keys replaced: they never leave the store."""
    if isinstance(value, dict):
        return {k: ("[redacted]" if k.lower() in SECRET_KEYS and value[k] else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
