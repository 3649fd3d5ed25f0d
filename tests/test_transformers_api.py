"""Our calls into transformers use its current API: generation in both engines, the streaming
server's sampler and the shared-prefix training path (padded, packed, checkpointed) run with
FutureWarning and DeprecationWarning raised as errors, and transformers logs no deprecation
note. (Deprecated names such as `past_key_values` warn per call and then disappear.)"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import pytest
import torch

from agentrft.engines.base import SamplingParams
from agentrft.engines.static_engine import StaticEngine
from agentrft.engines.transformers_engine import MIN_SHARED_PREFIX, TransformersEngine
from agentrft.models.kv_cache import CACHE_ARG
from agentrft.serving.stream import stream_tokens
from agentrft.train.checkpointing import checkpointed_layers
from agentrft.train.loss import TrainSequence, backbone_and_head, collate, token_logprobs
from agentrft.train.shared_prefix import MIN_SHARED_TOKENS, SharedPrefix
from tests.tiny_model import ENGINE_PROMPTS, PAD_ID, tiny_llama

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Notes(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextmanager
def no_deprecation_notes():
    """Deprecation warnings raise; transformers' logged deprecation notes are collected and
    must be none. Its `warning_once` notes are cached per process, so the cache is cleared
    first: a note another test already triggered must show here again."""
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()
    notes = _Notes()
    root = logging.getLogger("transformers")
    root.addHandler(notes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            yield
    finally:
        root.removeHandler(notes)
    deprecated = [m for m in notes.messages if "deprecat" in m.lower()]
    assert not deprecated, deprecated


def test_the_installed_transformers_names_its_cache_argument_cache():
    """The version we install (and test with) has the new name; if this fails, the helpers in
    agentrft/models/kv_cache.py fell back to `past_key_values` and the tests below say whether
    that still runs quietly."""
    assert CACHE_ARG == "cache"


def test_engines_generate_without_deprecation_notes():
    model = tiny_llama(seed=0)
    head = [3 + (i * 7) % 90 for i in range(MIN_SHARED_PREFIX + 4)]
    prompts = ENGINE_PROMPTS + [head + [40 + i] for i in range(3)]
    params = SamplingParams(temperature=1.0, max_new_tokens=5)
    with no_deprecation_notes():
        plain = TransformersEngine(model, pad_token_id=PAD_ID).generate(prompts, params)
        shared = TransformersEngine(model, pad_token_id=PAD_ID).generate(prompts[-3:], params)
        static = StaticEngine(model, pad_token_id=PAD_ID, max_slots=2, max_len=64).generate(prompts, params)
        streamed = list(stream_tokens(model, prompts[0], 2, params, generator=None,
                                      pad_token_id=PAD_ID, top_k=2))
    assert len(plain) == len(static) == len(prompts) and len(shared) == 3
    assert all(len(o.token_ids) == 5 for o in plain + shared + static)
    assert len(streamed) == 5


@pytest.mark.parametrize("packed", [False, True])
def test_shared_prefix_training_without_deprecation_notes(packed):
    model = tiny_llama(seed=2).train()
    head = [(7 * i) % 90 + 5 for i in range(MIN_SHARED_TOKENS + 2)]
    tails = [TrainSequence([11, 12, 21, 2], [0, 0, 1, 1], 1.0), TrainSequence([13, 22, 23], [0, 1, 1], -0.5)]
    with no_deprecation_notes(), checkpointed_layers(model):
        prefix = SharedPrefix(backbone_and_head(model)[0], head, "cpu")
        batch = collate(tails, PAD_ID)
        logp = token_logprobs(model, batch, prefix=prefix, packed=packed)
        (logp * batch.loss_mask_BT * batch.advantages_B[:, None]).sum().backward()
        prefix.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)
