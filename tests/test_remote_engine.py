"""The remote engine against a real `agentrft serve` on loopback: token-in/token-out sampling,
adapters pushed between steps, and the tiny job trained through it next to the in-process
engine."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from agentrft.engines.base import SamplingParams
from agentrft.engines.remote import RemoteEngine, _completion
from agentrft.errors import EngineError, SpecError
from agentrft.models.loading import load_model
from agentrft.spec.job import EngineDecl
from agentrft.train.loop import Trainer
from tests.serving_fixtures import ServeProcess
from tests.test_train_tiny import make_job
from tests.tiny_model import full_forward_logprobs

STEPS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("serve-remote")
    proc = ServeProcess(str(tiny_model_dir), tmp, "--max-model-len", "4096")
    yield proc
    proc.stop()


def test_remote_generate_returns_the_servers_exact_tokens_and_logprobs(server, tiny_model_dir):
    engine = RemoteEngine(server.base_url, seed=5)
    assert engine.model == str(tiny_model_dir)  # the first model the server lists
    prompts = [[1, 520, 9531, 198], [4093, 198], [1, 520, 9531, 198]]
    params = SamplingParams(temperature=1.0, max_new_tokens=8, stop_token_ids=(2, 198))
    outs = engine.generate(prompts, params)
    model = load_model(str(tiny_model_dir))
    assert len(outs) == 3
    for prompt, c in zip(prompts, outs):
        assert 1 <= len(c.token_ids) == len(c.logprobs) <= 8
        assert c.logprobs == pytest.approx(full_forward_logprobs(model, prompt + c.token_ids,
                                                                 len(prompt)), abs=1e-4)
        stopped = c.token_ids[-1] in params.stop_token_ids
        assert c.finish_reason == ("stop" if stopped else "length")
        assert not set(c.token_ids[:-1]) & set(params.stop_token_ids)
    # request seeds come from the engine's generator: the same seed samples the same again
    again = RemoteEngine(server.base_url, seed=5).generate(prompts, params)
    assert [c.token_ids for c in again] == [c.token_ids for c in outs]


def run_job(tmp_path, tiny_model_dir, base_url: str | None, served: list | None = None):
    job = make_job(tmp_path, tiny_model_dir, max_steps=STEPS)
    job.hp.learning_rate_multiplier = 25.0  # big updates: stale weights on the server would show
    if base_url:
        job.rl.engine = EngineDecl(type="remote", base_url=base_url)

    def on_step(report) -> None:  # what the server holds after each step, while the job runs
        if served is not None:
            served.append([m["id"] for m in httpx.get(f"{base_url}/models").json()["data"]])

    trainer = Trainer(job, tmp_path / "run", on_step=on_step)
    metrics = asyncio.run(trainer.run_async())
    return trainer, metrics


def test_the_tiny_job_trains_through_serve_like_the_in_process_engine(server, tmp_path, tiny_model_dir):
    local_trainer, local = run_job(tmp_path / "local", tiny_model_dir, None)
    served: list[list[str]] = []
    remote_trainer, remote = run_job(tmp_path / "remote", tiny_model_dir, server.base_url, served)
    assert [m["step"] for m in remote] == [m["step"] for m in local] == list(range(STEPS + 1))

    # Every step sampled from the weights the trainer had just written: the server's
    # log-probs agree with the trainer's own forward pass (they would not after these
    # learning-rate-25 updates had the adapter not been pushed).
    mismatch = [m["logprob_mismatch_mean"] for m in remote[1:]]
    assert len(mismatch) == STEPS and max(mismatch) < 1e-3, mismatch
    engine = remote_trainer.engine
    assert engine.pushes == 1 + STEPS  # the starting adapter, then one per update
    # one adapter at a time: each step's replaces the last
    assert [len(ids) for ids in served] == [2] * (1 + STEPS) and len({ids[1] for ids in served}) == 1 + STEPS
    assert all(ids[0] == engine.base_model for ids in served)

    # Same job, same seed, different sampler RNG streams: the reward trajectories agree
    # within sampling noise (8 rollouts a step of a reward spread over [0, 1]).
    for key in ("train_reward_mean", "valid_reward_mean"):
        a = [m[key] for m in local if key in m]
        b = [m[key] for m in remote if key in m]
        assert len(a) == len(b) >= STEPS
        assert abs(sum(a) / len(a) - sum(b) / len(b)) < 0.3, (key, a, b)  # ~3 standard errors
    assert all(m["discarded_rollouts"] == 0 for m in remote[1:])
    # the job closed its engine: the last adapter is unloaded and its folder gone
    served_after = httpx.get(f"{server.base_url}/models").json()["data"]
    assert [m["id"] for m in served_after] == [engine.base_model]
    assert not engine.adapter_dir.exists()
    engine.close()  # idempotent


def test_remote_engine_spec_errors_name_the_field(tmp_path, tiny_model_dir, monkeypatch):
    from agentrft.spec.job import parse_job

    job = make_job(tmp_path, tiny_model_dir, max_steps=1)
    data = json.loads(job.model_dump_json())
    data["method"]["reinforcement"]["engine"] = {"type": "remote"}
    with pytest.raises(SpecError) as e:
        parse_job(data)
    assert e.value.field == "method.reinforcement.engine" and "base_url" in str(e.value)
    data["method"]["reinforcement"]["engine"] = {"type": "remote", "base_url": "http://x/v1",
                                                 "bogus": 1}
    with pytest.raises(SpecError) as e:
        parse_job(data)
    assert e.value.field == "method.reinforcement.engine.bogus"

    from agentrft.train.setup import validate_job

    data["method"]["reinforcement"]["engine"] = {"type": "remote", "base_url": "http://x/v1",
                                                 "api_key_env": "AGENTRFT_TEST_NO_SUCH_KEY"}
    monkeypatch.delenv("AGENTRFT_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(SpecError) as e:
        validate_job(parse_job(data))
    assert e.value.field == "method.reinforcement.engine.api_key_env"
    data["method"]["reinforcement"]["hyperparameters"]["finetune"] = "full"
    with pytest.raises(SpecError) as e:
        validate_job(parse_job(data))
    assert e.value.field == "method.reinforcement.engine.type" and "lora" in str(e.value)


def test_completions_from_servers_without_token_ids_or_stop_tokens():
    params = SamplingParams(stop_token_ids=(2, 7))
    vllm_style = {"index": 0, "finish_reason": "stop", "stop_reason": 7,
                  "logprobs": {"tokens": ["token_id:11", "token_id:12"], "token_logprobs": [-1.0, -0.5]}}
    c = _completion(vllm_style, params)
    assert c.token_ids == [11, 12, 7] and c.logprobs[:2] == [-1.0, -0.5] and c.finish_reason == "stop"
    assert math.isnan(c.logprobs[2])  # not reported: unknown, not log-prob 0
    unreported = _completion({"index": 0, "finish_reason": "length", "token_ids": [4, 5],
                              "logprobs": {"token_logprobs": [None, -0.3]}}, params)
    assert math.isnan(unreported.logprobs[0]) and unreported.logprobs[1] == -0.3
    eos = _completion({"index": 0, "finish_reason": "stop", "token_ids": [4, 2],
                       "logprobs": {"token_logprobs": [-0.1, -0.2]}}, params)
    assert eos.token_ids == [4, 2] and eos.logprobs == [-0.1, -0.2]
    with pytest.raises(EngineError, match="log-probabilities"):
        _completion({"index": 0, "finish_reason": "length", "token_ids": [4, 5]}, params)
    with pytest.raises(EngineError, match="token_ids"):
        _completion({"index": 0, "finish_reason": "length",
                     "logprobs": {"tokens": ["hello"], "token_logprobs": [-1.0]}}, params)


def test_server_failures_are_retried_then_raised_and_4xx_is_not_retried():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        if json.loads(request.content)["max_tokens"] == 1:
            return httpx.Response(400, json={"error": {"message": "max_tokens too small"}})
        return httpx.Response(503, text="overloaded")

    engine = RemoteEngine("http://engine.test/v1", transport=httpx.MockTransport(handler),
                          backoff_s=0.0)
    with pytest.raises(EngineError, match="after 4 attempts.*503"):
        engine.generate([[1, 2]], SamplingParams(max_new_tokens=4))
    assert calls.count("/v1/completions") == 4
    with pytest.raises(EngineError, match="400: max_tokens too small"):
        engine.generate([[1, 2]], SamplingParams(max_new_tokens=1))
    assert calls.count("/v1/completions") == 5


def test_seeds_are_sent_unless_the_server_is_vllms_cpu_build():
    bodies, version = [], {"version": "0.32.0"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        if request.url.path == "/version":
            return httpx.Response(200, json=version)
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"index": 0, "finish_reason": "length",
                                                      "token_ids": [5], "logprobs": {"token_logprobs": [-0.5]}}]})

    params = SamplingParams(max_new_tokens=1)
    gpu = RemoteEngine("http://engine.test/v1", transport=httpx.MockTransport(handler))
    gpu.generate([[1, 2]], params)
    assert gpu.send_seeds and isinstance(bodies[-1]["seed"], int) and gpu.take_events() == []
    version["version"] = "0.32.0+cpu"
    cpu = RemoteEngine("http://engine.test/v1", transport=httpx.MockTransport(handler))
    cpu.generate([[1, 2]], params)
    assert not cpu.send_seeds and "seed" not in bodies[-1]
    (message, level, _), = cpu.take_events()  # said once
    assert "without per-request seeds" in message and level == "warn" and cpu.take_events() == []
    forced = RemoteEngine("http://engine.test/v1", transport=httpx.MockTransport(handler),
                          send_seeds=False)
    forced.generate([[1, 2]], params)
    assert "seed" not in bodies[-1]
    # the generator advances either way: a checkpoint's RNG state means the same with or without
    assert forced.rng_state().equal(gpu.rng_state())
