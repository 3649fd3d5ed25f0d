"""The readiness gate and the stall alarm on a task the bundled model cannot do.

The task: the SHA-256 digest of a word, exact. SmolLM2-135M never writes the right 64 hex
digits, so every rollout scores 0, every group is flat and a policy gradient has nothing to
learn from. With the gate on, the job stops after the first step's rollouts, before any
update, with advice; with it off, the steps train nothing and the stall alarm warns.
"""

import asyncio
import hashlib
import json

import pytest

from agentrft.spec import load_job
from agentrft.train.loop import Trainer
from agentrft.train.readiness import NotReady

WORDS = ["harbor", "violet", "granite"]


def digest_grade(sample: dict, item: dict) -> float:
    return float(item["digest"] in sample["output_text"].lower())


def write_task(tmp_path, gate: bool, max_steps: int):
    def row(word):
        question = f"What is the SHA-256 digest of the word '{word}'? Answer with its 64 hex digits."
        return {"messages": [{"role": "user", "content": question}],
                "digest": hashlib.sha256(word.encode()).hexdigest()}

    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row(w)) + "\n" for w in WORDS[:2]))
    (tmp_path / "valid.jsonl").write_text(json.dumps(row(WORDS[2])) + "\n")
    (tmp_path / "job.yaml").write_text(f"""model: bundled:smollm2-135m-instruct
training_file: train.jsonl
validation_file: valid.jsonl
seed: 1
method:
  type: reinforcement
  reinforcement:
    grader: {{type: python, name: digest, callable: "tests.test_readiness_bundled:digest_grade"}}
    tools: [{{name: lookup, python: "examples.lookup.task:lookup"}}]
    max_episode_steps: 1
    hyperparameters: {{batch_size: 2, base_group_size: 3, max_new_tokens: 24, temperature: 1.0,
                      eval_interval: 100, eval_samples: 1, max_steps: {max_steps}, n_epochs: {max_steps},
                      readiness_gate: {str(gate).lower()}}}
""")
    return load_job(tmp_path / "job.yaml")


def events(run):
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_gate_stops_a_job_the_model_cannot_learn_with_advice(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(NotReady) as stopped:
        asyncio.run(Trainer(write_task(tmp_path, gate=True, max_steps=3), run).run_async())
    assert "never earns any reward" in str(stopped.value)
    assert "readiness_gate: false" in str(stopped.value)  # how to train anyway
    readiness = next(e for e in events(run) if e["message"].startswith("readiness over"))
    assert readiness["data"]["never_solved_share"] == 1.0
    assert readiness["data"]["best_of_n"] == 0.0
    assert not (run / "checkpoints" / "LATEST").exists()  # no update was made


@pytest.mark.slow
def test_training_on_nothing_raises_the_stall_warning(tmp_path):
    run = tmp_path / "run"
    metrics = asyncio.run(Trainer(write_task(tmp_path, gate=False, max_steps=3), run).run_async())
    assert [m["trained_sequences"] for m in metrics if m["step"] > 0] == [0, 0, 0]
    assert [m["zero_variance_groups"] for m in metrics if m["step"] > 0] == [2, 2, 2]
    warnings = [e for e in events(run) if e["type"] == "warning"]
    assert len(warnings) == 1 and "trained no sequence" in warnings[0]["message"]
