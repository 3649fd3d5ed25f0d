"""Shared fixtures: the bundled tokenizer (real, from the local cache) and a tiny random Llama.

The first use of the bundled tokenizer on a fresh machine dequantises the bundled GGUF and
caches it (~20 s, once); later sessions load it from the cache in about two seconds.
"""

from __future__ import annotations

import pytest

from tests.system_parts import require_system


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_system"):
        require_system(*mark.args)


@pytest.fixture(scope="session")
def tokenizer():
    from agentrft.models.loading import load_tokenizer

    return load_tokenizer("bundled:smollm2-135m-instruct")


@pytest.fixture(scope="session")
def renderer(tokenizer):
    from agentrft.models.chat import ChatRenderer

    return ChatRenderer(tokenizer)


@pytest.fixture(scope="session")
def tiny_model():
    from tests.tiny_model import tiny_llama

    return tiny_llama(seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A Hugging Face directory holding the tiny random Llama and the bundled tokenizer:
    a real model reference for the trainer, a few MB and milliseconds per step."""
    from tests.tiny_model import tiny_llama

    path = tmp_path_factory.mktemp("tiny-model")
    model = tiny_llama(seed=0, vocab_size=len(tokenizer), hidden_size=32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def store(tmp_path):
    """An empty job store in a temp folder."""
    from agentrft.jobs.store import JobStore

    s = JobStore(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def one_torch_thread():
    """A tiny model is fastest on one thread; several threads crawl on a busy 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
