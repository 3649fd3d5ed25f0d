"""`POST /v1/embeddings` on both apps, through the official `openai` SDK over a real socket,
against vectors computed directly with the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from agentrft.cli import main
from agentrft.loopback import LoopbackServer
from agentrft.models.embedding import SentenceEncoder, bundled_minilm, minilm_dir
from agentrft.server import create_app
from agentrft.serving.embeddings import EmbeddingModels

TEXTS = ["Revenue grew 10% in 2023.", "Net income", "The cat sat on the mat, and then it slept."]


@pytest.fixture(scope="module")
def direct():
    return bundled_minilm().embed(TEXTS).numpy()


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory):
    from agentrft.jobs.store import JobStore

    store = JobStore(tmp_path_factory.mktemp("data"))
    models = EmbeddingModels({"text-embedding-3-small": "all-minilm-l6-v2"})
    with LoopbackServer(create_app(store, embedding_models=models), name="jobs") as server:
        yield server
    store.close()


def sdk(server) -> OpenAI:
    return OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0)


def test_sdk_default_is_base64_and_decodes_to_the_models_vectors(jobs_server, direct):
    seen = []
    client = OpenAI(base_url=jobs_server.url("/v1"), api_key="unused", max_retries=0,
                    http_client=httpx.Client(event_hooks={"request": [seen.append]}))
    out = client.embeddings.create(model="text-embedding-3-small", input=TEXTS)
    assert json.loads(seen[0].content)["encoding_format"] == "base64"  # what the SDK sends
    assert out.object == "list" and out.model == "text-embedding-3-small"
    assert [d.index for d in out.data] == [0, 1, 2] and out.data[0].object == "embedding"
    got = np.array([d.embedding for d in out.data], dtype=np.float32)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, direct, atol=1e-5)  # same order as the input, though sorted inside
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    tokenizer = bundled_minilm()._model()[0]
    assert out.usage.prompt_tokens == out.usage.total_tokens == sum(
        len(tokenizer(t)["input_ids"]) for t in TEXTS)


def test_float_and_raw_base64_bytes_are_little_endian_float32(jobs_server, direct):
    client = sdk(jobs_server)
    out = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS[0], encoding_format="float")
    np.testing.assert_allclose(out.data[0].embedding, direct[0], atol=1e-5)
    raw = httpx.post(jobs_server.url("/v1/embeddings"), json={
        "model": "all-MiniLM-L6-v2", "input": [TEXTS[1]], "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, direct[1], atol=1e-5)
    same = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS[0], dimensions=384)
    assert len(same.data[0].embedding) == 384


def test_bad_requests_are_openai_errors_naming_the_field(jobs_server):
    client = sdk(jobs_server)
    cases = [
        (dict(model="all-minilm-l6-v2", input="x", dimensions=256), "dimensions", "384"),
        (dict(model="all-minilm-l6-v2", input=[1, 2, 3]), "input[0]", "token-id"),
        (dict(model="all-minilm-l6-v2", input=[[1, 2], [3]]), "input[0]", "token-id"),
        (dict(model="all-minilm-l6-v2", input=["ok", ""]), "input[1]", "empty"),
        (dict(model="all-minilm-l6-v2", input=[]), "input", "non-empty"),
    ]
    for kwargs, param, words in cases:
        with pytest.raises(BadRequestError) as e:
            client.embeddings.create(**kwargs, encoding_format="float")
        assert e.value.status_code == 400 and e.value.body["param"] == param, e.value.body
        assert words in e.value.body["message"]
    with pytest.raises(NotFoundError) as e:
        client.embeddings.create(model="text-embedding-ada-002", input="x")
    assert "--embedding-model text-embedding-ada-002=" in e.value.body["message"]
    r = httpx.post(jobs_server.url("/v1/embeddings"),
                   json={"model": "all-minilm-l6-v2", "input": "x", "encoding": "float"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "encoding"
    r = httpx.post(jobs_server.url("/v1/embeddings"),
                   json={"model": "all-minilm-l6-v2", "input": "x", "encoding_format": "int8"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "encoding_format"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_a_local_directory_is_a_model_with_its_own_recipe(tmp_path, direct):
    """A sentence-transformers folder without the Normalize module: unnormalised mean pooling,
    exactly what the folder's recipe says (files linked from the bundled model)."""
    src = minilm_dir()
    local = tmp_path / "minilm-raw"
    local.mkdir()
    for f in src.iterdir():
        (local / f.name).symlink_to(f)
    (local / "modules.json").unlink()
    modules = [m for m in json.loads((src / "modules.json").read_text())
               if not m["type"].endswith("Normalize")]
    (local / "modules.json").write_text(json.dumps(modules))
    encoder = SentenceEncoder(local)
    assert (encoder.pooling, encoder.normalize, encoder.max_tokens) == ("mean", False, 256)
    store_dir = tmp_path / "data"
    from agentrft.jobs.store import JobStore

    store = JobStore(store_dir)
    try:
        with LoopbackServer(create_app(store), name="jobs") as server:
            out = sdk(server).embeddings.create(model=str(local), input=TEXTS)
    finally:
        store.close()
    got = np.array([d.embedding for d in out.data], dtype=np.float32)
    norms = np.linalg.norm(got, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(got / norms[:, None], direct, atol=1e-5)


def test_serve_answers_embeddings_too(tiny_model_dir, direct):
    from agentrft.serving.app import create_app as create_serving_app
    from agentrft.serving.host import ModelHost

    host = ModelHost.load(str(tiny_model_dir), name="tiny")
    models = EmbeddingModels({"text-embedding-3-large": "all-minilm-l6-v2"})
    with LoopbackServer(create_serving_app(host, embedding_models=models), name="serve") as server:
        out = sdk(server).embeddings.create(model="text-embedding-3-large", input=TEXTS)
    np.testing.assert_allclose(np.array([d.embedding for d in out.data]), direct, atol=1e-5)


def test_bad_mappings_fail_at_start(tmp_path, capsys):
    assert main(["server", "--embedding-model", "no-equals-sign"]) == 2
    assert "NAME=TARGET" in capsys.readouterr().err
    assert main(["serve", "bundled:smollm2-135m-instruct",
                 "--embedding-model", f"x={tmp_path / 'missing'}"]) == 2
    assert "neither all-minilm-l6-v2 nor a model directory" in capsys.readouterr().err
