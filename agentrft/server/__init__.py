"""The HTTP API (OpenAI's fine-tuning paths) over a job store; see `app.py`."""

from agentrft.server.app import create_app

__all__ = ["create_app"]
