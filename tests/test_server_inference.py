"""One base URL for training and inference: `agentrft server` (a real subprocess on loopback)
trains a job, then answers `responses`, `chat.completions` and `completions` for the base
model, the job's `ft:` model and its checkpoint, through the official SDK. And the
`ModelPool` behind it: one base in memory with adapters on top, eviction by budget."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from agentrft.models.loading import load_model, load_tokenizer
from agentrft.web.errors import APIError
from agentrft.serving.pool import ModelPool, host_bytes
from tests.serving_fixtures import free_port, train_tiny
from tests.test_server_sdk import KEY, Server, create, dataset, wait_for  # noqa: F401 - fixture
from tests.tiny_model import full_forward_logprobs

PROMPT = [1, 520, 9531, 198]


def test_a_finished_jobs_model_answers_on_the_same_base_url(tmp_path, dataset, tiny_model_dir):  # noqa: F811
    server = Server(tmp_path / "data", free_port())
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY,
                        max_retries=0, timeout=120)
        files = [client.files.create(file=open(dataset / n, "rb"), purpose="fine-tune").id
                 for n in ("train.jsonl", "valid.jsonl")]
        job = create(client, tiny_model_dir, files, steps=1)
        base = str(tiny_model_dir)
        # the base answers while the job is queued or training
        early = client.responses.create(model=base, input="Hi", max_output_tokens=4)
        assert early.usage.output_tokens >= 1
        done = wait_for(client, job.id, ("succeeded", "failed"))
        assert done.status == "succeeded", done.error
        (ckpt,) = client.fine_tuning.jobs.checkpoints.list(job.id).data
        ft, ckpt_name = done.fine_tuned_model, ckpt.fine_tuned_model_checkpoint
        assert ckpt_name == f"{ft}:ckpt-step-1"
        ids = [m.id for m in client.models.list()]
        assert ft in ids and ckpt_name in ids

        r = client.responses.create(model=ft, input="Where is Ada?", max_output_tokens=6,
                                    temperature=0, store=False)
        assert r.model == ft and r.status in ("completed", "incomplete")
        assert r.usage.output_tokens >= 1 and isinstance(r.output_text, str)
        chat = client.chat.completions.create(model=ckpt_name, max_tokens=3,
                                              messages=[{"role": "user", "content": "Hi"}])
        assert chat.choices[0].finish_reason in ("stop", "length")

        # the ft: model is the trained adapter on the base: its log-probs are the checkpoint's
        def sample(model: str):
            c = client.completions.create(model=model, prompt=[PROMPT], max_tokens=5, seed=2,
                                          temperature=1.0, logprobs=0,
                                          extra_body={"return_token_ids": True})
            return c.choices[0].model_extra["token_ids"], c.choices[0].logprobs.token_logprobs

        ids, logps = sample(ft)
        trained = full_forward_logprobs(load_model(ckpt_path(server, ckpt_name)), PROMPT + ids,
                                        len(PROMPT))
        assert logps == pytest.approx(trained, abs=1e-4)
        base_ids, base_logps = sample(base)
        assert base_logps == pytest.approx(full_forward_logprobs(
            load_model(base), PROMPT + base_ids, len(PROMPT)), abs=1e-4)

        with pytest.raises(openai.NotFoundError):
            client.responses.create(model="ft:nope:x:ftjob-none", input="Hi")
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).responses.create(
                model=ft, input="Hi")
    finally:
        server.stop()


def ckpt_path(server: Server, name: str) -> str:
    from agentrft.jobs.store import JobStore

    store = JobStore(server.data_dir)
    try:
        return store.resolve_model_name(name)
    finally:
        store.close()


def test_pool_keeps_one_base_with_adapters_and_evicts_by_budget(tmp_path, tiny_model_dir,
                                                                one_torch_thread):
    ckpt = train_tiny(tmp_path / "a", tiny_model_dir, finetune="lora")
    other = tmp_path / "other-base"
    load_model(str(tiny_model_dir)).save_pretrained(other)
    load_tokenizer(str(tiny_model_dir)).save_pretrained(other)
    names = {"base": tiny_model_dir, "other": other, "ft:a": ckpt, "ft:b": ckpt}
    pool = ModelPool(lambda n: names.get(n), max_adapters=1, memory_budget_bytes=1)

    base = pool.serving_for("base")
    assert pool.serving_for("ft:a").host is base.host  # the adapter sits on the same base
    assert pool.loaded() == {str(tiny_model_dir.resolve()): ["ft:a"]}
    a = pool.serving_for("ft:a")
    assert a._adapter("ft:a") is not None and base._adapter("base") is None
    pool.serving_for("ft:b")  # max_adapters=1: ft:a is unloaded
    assert pool.loaded() == {str(tiny_model_dir.resolve()): ["ft:b"]}
    with pytest.raises(APIError) as e:
        a._adapter("ft:a")
    assert e.value.status == 503

    pool.serving_for("other")  # past the budget: the least recently used base goes
    assert list(pool.loaded()) == [str(other.resolve())]
    assert host_bytes(pool.serving_for("other").host) > 0
    with pytest.raises(APIError) as e:
        pool.serving_for("missing")
    assert e.value.status == 404 and e.value.param == "model"
