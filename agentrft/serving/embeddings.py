"""`POST /v1/embeddings`, OpenAI's shape, for both `agentrft serve` and `agentrft server`.

    {"model", "input": str | [str, ...], "encoding_format"?: "float" | "base64",
     "dimensions"?: int, "user"?: str}
      │  EmbeddingModels.resolve(model) ──► SentenceEncoder (loaded once, on first use)
      ▼  texts sorted by length, batches of `batch_size` (less padding), in a worker thread
    {"object": "list", "model",
     "data": [{"object": "embedding", "index": i, "embedding": [floats] | "<base64>"}],
     "usage": {"prompt_tokens", "total_tokens"}}

Model names: `all-minilm-l6-v2` (also `all-MiniLM-L6-v2` and
`sentence-transformers/all-MiniLM-L6-v2`) is the bundled all-MiniLM-L6-v2, 384 dimensions;
any local sentence-transformers directory is its own name (its path). An operator maps other
names, e.g. the ones a notebook hard-codes, with `--embedding-model NAME=TARGET` (TARGET a
name above or a directory): `text-embedding-3-small=all-minilm-l6-v2`.

`base64` is the vector as little-endian float32 bytes, which the `openai` SDK decodes (and
asks for by default). `dimensions` must equal the model's size (no truncation: these models
are not trained for shorter prefixes). Token-id inputs are refused: the ids would be OpenAI's
tokenizer's, not the model's. Inputs over the model's length (256 tokens for MiniLM) are
truncated, as sentence-transformers does; `usage` counts the tokens embedded.

    router = embeddings_router(EmbeddingModels({"text-embedding-3-small": "all-minilm-l6-v2"}))
    app.include_router(router)
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from agentrft.errors import ModelLoadError, SpecError
from agentrft.models.embedding import SentenceEncoder, encoder_for, minilm_dir
from agentrft.web.encoding import StrictJSONRoute
from agentrft.web.errors import APIError

BUNDLED_NAME = "all-minilm-l6-v2"
BUILTIN_NAMES = (BUNDLED_NAME, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
MAX_INPUTS = 2048  # OpenAI's limit on the list


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    input: Any  # checked by `texts_of`, for messages that say what is wrong
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def parse_mapping(items: list[str]) -> dict[str, str]:
    """`["NAME=TARGET", ...]` (the CLI's `--embedding-model`) as a dict; SpecError if bad."""
    out = {}
    for item in items:
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise SpecError(f"expected NAME=TARGET (e.g. text-embedding-3-small={BUNDLED_NAME}), "
                            f"got {item!r}", field="--embedding-model")
        out[name.strip()] = target.strip()
    return out


class EmbeddingModels:
    """Model name → encoder. `aliases` maps extra names to a built-in name or a directory."""

    def __init__(self, aliases: dict[str, str] | None = None, *, batch_size: int = 32):
        self.batch_size = batch_size
        self.aliases: dict[str, str] = {}
        for name, target in (aliases or {}).items():
            if target not in BUILTIN_NAMES and not (Path(target).expanduser() / "config.json").is_file():
                raise SpecError(f"{target!r} is neither {BUNDLED_NAME} nor a model directory",
                                field=f"--embedding-model {name}")
            self.aliases[name] = target

    def names(self) -> list[str]:
        return [BUNDLED_NAME, *self.aliases]

    def resolve(self, name: str) -> SentenceEncoder:
        target = self.aliases.get(name, name)
        try:
            if target in BUILTIN_NAMES:
                return encoder_for(minilm_dir())
            path = Path(target).expanduser()
            if (path / "config.json").is_file():
                return encoder_for(path)
        except ModelLoadError as e:
            raise APIError(400, str(e), param="model", code="model_not_loadable") from None
        raise APIError(404, f"no embedding model named {name!r}: known are "
                            f"{', '.join(self.names())} or the path of a local "
                            f"sentence-transformers directory; map other names with "
                            f"--embedding-model {name}={BUNDLED_NAME}",
                       param="model", code="model_not_found")

    def embed(self, req: EmbeddingRequest) -> dict[str, Any]:
        texts = texts_of(req.input)
        encoder = self.resolve(req.model)
        try:
            encoder.load()
        except ModelLoadError as e:
            raise APIError(400, str(e), param="model", code="model_not_loadable") from None
        if req.dimensions is not None and req.dimensions != encoder.dim:
            raise APIError(400, f"dimensions {req.dimensions} is not supported by {req.model!r}, "
                                f"whose vectors have {encoder.dim}; leave it out or give "
                                f"{encoder.dim}", param="dimensions", code="invalid_value")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths: less padding
        vectors_ND, counts = encoder.encode([texts[i] for i in order], batch_size=self.batch_size)
        vectors = np.empty((len(texts), vectors_ND.shape[1]), dtype="<f4")
        vectors[order] = vectors_ND.numpy()
        tokens = sum(counts)
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.tobytes()).decode("ascii")
                 if req.encoding_format == "base64" else v.tolist()}
                for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": req.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def texts_of(value: Any) -> list[str]:
    """OpenAI's `input` as a list of non-empty strings; APIError 400 naming what is wrong."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise APIError(400, "input must be a non-empty string or a non-empty list of strings",
                       param="input", code="invalid_value")
    if len(value) > MAX_INPUTS:
        raise APIError(400, f"input holds {len(value)} items; at most {MAX_INPUTS} per request",
                       param="input", code="invalid_value")
    for i, text in enumerate(value):
        if isinstance(text, (int, list)) and not isinstance(text, bool):
            raise APIError(400, "token-id inputs are not supported (they would be ids of another "
                                "model's tokenizer); send the text", param=f"input[{i}]",
                           code="invalid_value")
        if not isinstance(text, str):
            raise APIError(400, f"expected a string, got {type(text).__name__}",
                           param=f"input[{i}]", code="invalid_value")
        if not text:
            raise APIError(400, "input cannot be an empty string", param=f"input[{i}]",
                           code="invalid_value")
    return value


def embeddings_router(models: EmbeddingModels) -> APIRouter:
    api = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

    @api.post("/embeddings")
    async def create_embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        return await run_in_threadpool(models.embed, body)

    return api
