"""`ft:` model names resolve at the entry points (`agentrft.jobs.models`), never in `models/`:
the CLI through the jobs database of AGENTRFT_DATA_DIR, the worker through its own store; a
run on an `ft:` model writes checkpoints that name the directory as their base."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agentrft.errors import ModelLoadError
from agentrft.jobs.models import resolve_fine_tuned
from agentrft.jobs.store import JobStore
from agentrft.models.loading import resolve_model_dir
from tests.test_train_tiny import make_job


def register(store: JobStore, directory) -> str:
    """A finished job of `store` whose model (and checkpoint 1) is `directory`; its ft: name."""
    parent = store.create_job({"model": "base"})
    name = f"ft:base:parent:{parent['id']}"
    store.add_checkpoint(parent["id"], 1, {}, str(directory), f"{name}:ckpt-step-1")
    store.update_job(parent["id"], fine_tuned_model=name)
    return name


def base_model_of(checkpoint) -> str:
    return json.loads((checkpoint / "agentrft_checkpoint.json").read_text())["base_model"]


def test_models_refuses_an_ft_name_without_opening_a_database(tmp_path, tiny_model_dir,
                                                              monkeypatch):
    store = JobStore(tmp_path / "data")
    name = register(store, tiny_model_dir)  # a database that knows the name...
    store.close()
    monkeypatch.setenv("AGENTRFT_DATA_DIR", str(tmp_path / "data"))

    def no_database(*args, **kwargs):
        raise AssertionError("models/ opened a database")

    monkeypatch.setattr(sqlite3, "connect", no_database)
    with pytest.raises(ModelLoadError, match="resolve it through the jobs service"):
        resolve_model_dir(name)  # ...is not asked: models/ knows nothing of jobs


def test_an_unknown_name_is_an_error_naming_the_data_dir_and_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError, match="no fine-tuned model 'ft:a:b:ftjob-x' in .*nowhere"):
        resolve_fine_tuned("ft:a:b:ftjob-x", missing)
    assert not missing.exists()
    assert resolve_fine_tuned("bundled:smollm2-135m-instruct", missing) == \
        "bundled:smollm2-135m-instruct"


def test_cli_train_and_eval_resolve_ft_names_through_the_data_dir(tmp_path, tiny_model_dir,
                                                                 monkeypatch, capsys):
    from agentrft.cli import main

    store = JobStore(tmp_path / "data")
    name = register(store, tiny_model_dir)
    store.close()
    monkeypatch.setenv("AGENTRFT_DATA_DIR", str(tmp_path / "data"))
    make_job(tmp_path, name, max_steps=1)  # job.yaml: `model: ft:base:parent:ftjob-…`
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "job.yaml"), "--out", str(run), "--quiet"]) == 0
    # the checkpoint is self-contained: its base is the directory, not the ft: name
    assert base_model_of(run / "checkpoints" / "step_000001") == str(tiny_model_dir)

    capsys.readouterr()
    assert main(["eval", str(tmp_path / "job.yaml"), "--model", f"{name}:ckpt-step-1",
                 "--samples", "1", "--out", str(tmp_path / "eval")]) == 0
    assert f"model {name}:ckpt-step-1:" in capsys.readouterr().out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["model"] == f"{name}:ckpt-step-1" and summary["rows"] > 0

    assert main(["eval", str(tmp_path / "job.yaml"), "--model", "ft:base:parent:ftjob-none",
                 "--out", str(tmp_path / "eval2")]) == 2
    assert "no fine-tuned model 'ft:base:parent:ftjob-none'" in capsys.readouterr().err


def test_the_worker_trains_a_job_on_an_ft_model_from_its_directory(store, tiny_model_dir):
    from agentrft.jobs import service
    from agentrft.jobs.worker import claim_next, run_job
    from tests.test_jobs_worker import body

    name = register(store, tiny_model_dir)
    job = service.create_job(store, body(store, name, max_steps=1))
    service.validate_files_sync(store, job["id"])
    assert claim_next(store) == job["id"]
    assert run_job(store, job["id"]) == "succeeded", store.get_job(job["id"])["error"]
    done = store.get_job(job["id"])
    assert done["model"] == name  # what the job shows is the name it was given
    (checkpoint,) = store.checkpoint_rows(job["id"])
    assert base_model_of(Path(checkpoint["path"])) == str(tiny_model_dir)
