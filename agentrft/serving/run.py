"""`agentrft serve MODEL_OR_CHECKPOINT`: load the model once, then serve it with uvicorn.

Without an API key the server binds to loopback only, whatever --host says (as `agentrft
server` does): it runs a model for anyone who can reach it.
"""

from __future__ import annotations

import os
import sys

from agentrft.web import LOOPBACK


def serve_model(model: str, *, host: str = "127.0.0.1", port: int = 8001,
                api_keys: list[str] | None = None, device: str = "cpu",
                served_model_name: str | None = None, seed: int = 0,
                max_batch_size: int = 64, max_model_len: int | None = None,
                embedding_models: dict[str, str] | None = None) -> None:
    import uvicorn

    from agentrft.serving.app import create_app
    from agentrft.serving.embeddings import EmbeddingModels
    from agentrft.serving.host import ModelHost

    keys = [k for k in (api_keys or []) if k]
    if not keys and host not in LOOPBACK:
        print(f"agentrft serve: no API key given (--api-key or AGENTRFT_API_KEY): binding to "
              f"127.0.0.1 instead of {host}", file=sys.stderr)
        host = "127.0.0.1"
    embeddings = EmbeddingModels(embedding_models)  # a bad mapping fails before the model loads
    loaded = ModelHost.load(model, name=served_model_name or model, device=device, seed=seed,
                            max_batch_size=max_batch_size, max_model_len=max_model_len)
    print(f"agentrft serve: {loaded.name!r} at http://{host}:{port}/v1 on {device} "
          f"(pid {os.getpid()})", file=sys.stderr, flush=True)
    uvicorn.run(create_app(loaded, api_keys=keys, embedding_models=embeddings), host=host,
                port=port, log_level="warning")
