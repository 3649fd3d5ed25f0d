"""The lookup job that tests train on the tiny model, written in one place.

`lookup_job` writes the lookup task's data and a job.yaml under `tmp_path` and loads it: the
python `lookup` tool, two tool-calling turns, and a python grader (by default the tiny
trainer's `length_grade`, which varies with the random output so groups have variance to
learn from). Each test passes the seed and the hyperparameters it depends on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agentrft.spec import load_job
from agentrft.spec.job import JobSpec
from examples.lookup import task

LENGTH_GRADE = "tests.test_train_tiny:length_grade"


def lookup_job(tmp_path: Path, model_dir: Path | str, *, seed: int, grader: str = LENGTH_GRADE,
               training: dict[str, Any] | None = None, **hyperparameters: Any) -> JobSpec:
    task.write(tmp_path)
    reinforcement: dict[str, Any] = {
        "grader": {"type": "python", "name": "len", "callable": grader},
        "tools": [{"name": "lookup", "python": "examples.lookup.task:lookup"}],
        "max_episode_steps": 2,
    }
    if training is not None:
        reinforcement["training"] = training
    reinforcement["hyperparameters"] = hyperparameters
    raw = {"model": str(model_dir), "training_file": "train.jsonl",
           "validation_file": "valid.jsonl", "seed": seed,
           "method": {"type": "reinforcement", "reinforcement": reinforcement}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_job(path)
