"""Serving trained models over OpenAI's API (`agentrft serve`): see `app.py`."""
