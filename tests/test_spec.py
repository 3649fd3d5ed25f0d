"""Bad input gets a clear error naming file, line and field."""

import json
import socket
import time

import pytest

from agentrft.cli import main
from agentrft.errors import SpecError, ToolUnreachable
from agentrft.spec import load_dataset, load_job
from agentrft.train.loop import Trainer

ROW = {"messages": [{"role": "user", "content": "room of Ann?"}],
       "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
       "answer": "12"}


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def job_yaml(tmp_path, extra_hp="", tools='[{name: lookup, python: "examples.lookup.task:lookup"}]',
             grader='{type: string_check, name: g, input: "{{sample.output_text}}", reference: "{{item.answer}}", operation: eq}'):
    write_rows(tmp_path / "train.jsonl", [ROW, ROW])
    path = tmp_path / "job.yaml"
    path.write_text(f"""model: bundled:smollm2-135m-instruct
training_file: train.jsonl
method:
  type: reinforcement
  reinforcement:
    grader: {grader}
    tools: {tools}
    hyperparameters:
      batch_size: 2{extra_hp}
""")
    return path


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [ROW, ROW, '{"messages": [', ROW])
    with pytest.raises(SpecError) as e:
        load_dataset(path)
    assert f"{path}:3:" in str(e.value) and "invalid JSON" in str(e.value)


def test_bad_row_field_names_line_and_field(tmp_path):
    bad = {"messages": [{"role": "wizard", "content": "x"}]}
    path = write_rows(tmp_path / "d.jsonl", [ROW, bad])
    with pytest.raises(SpecError) as e:
        load_dataset(path)
    assert e.value.line == 2 and e.value.field == "messages[0].role"


def test_reference_keys_become_the_item(tmp_path):
    rows = load_dataset(write_rows(tmp_path / "d.jsonl", [ROW]))
    assert rows[0].item == {"answer": "12"}


def test_unknown_key_in_job_file_names_key_and_line(tmp_path):
    path = job_yaml(tmp_path, extra_hp="\n      learning_rate: 0.1")
    with pytest.raises(SpecError) as e:
        load_job(path)
    msg = str(e.value)
    assert "learning_rate" in msg and "method.reinforcement.hyperparameters" in msg
    assert e.value.line == 10


def test_job_paths_resolve_against_the_job_file(tmp_path):
    job = load_job(job_yaml(tmp_path))
    assert job.training_file == str(tmp_path / "train.jsonl")
    assert job.hp.group_size == 4 and job.hp.rows_per_step == 2


def test_compute_multiplier_scales_group_size(tmp_path):
    job = load_job(job_yaml(tmp_path, extra_hp="\n      compute_multiplier: 2.0"))
    assert job.hp.group_size == 8


def test_bad_grader_config_names_the_field(tmp_path):
    path = job_yaml(tmp_path, grader='{type: string_check, name: g, input: "x", reference: "y", operation: eq, refrence: z}')
    with pytest.raises(SpecError) as e:
        Trainer(load_job(path), tmp_path / "run")
    assert e.value.field == "method.reinforcement.grader.refrence"


def test_row_tool_without_job_declaration_is_an_error(tmp_path):
    path = job_yaml(tmp_path, tools="[]")
    with pytest.raises(SpecError) as e:
        Trainer(load_job(path), tmp_path / "run")
    assert "lookup" in str(e.value) and e.value.line == 1


def test_unreachable_tool_server_fails_before_training(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = job_yaml(tmp_path, tools=f'[{{name: lookup, server_url: "http://127.0.0.1:{port}/lookup"}}]')
    trainer = Trainer(load_job(path), tmp_path / "run")
    t0 = time.perf_counter()
    with pytest.raises(ToolUnreachable):
        import asyncio

        asyncio.run(trainer.run_async())
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_cli_reports_spec_errors_without_traceback(tmp_path, capsys):
    path = job_yaml(tmp_path, extra_hp="\n      n_epoch: 2")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "n_epoch" in err and "Traceback" not in err


def test_bad_python_tool_target_is_a_validation_error(tmp_path, capsys):
    path = job_yaml(tmp_path, tools='[{name: lookup, python: "examples.lookup.task:nope"}]')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "method.reinforcement.tools[0].python: " in err and "nope" in err
    assert err.count("tools.lookup.python") == 0


def test_response_format_is_checked_with_the_line_of_its_key(tmp_path, capsys):
    path = job_yaml(tmp_path)
    text = path.read_text()
    bad = "    response_format: {type: json_schema, json_schema: {name: a}}\n"
    path.write_text(text.replace("    tools:", bad + "    tools:"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "method.reinforcement.response_format" in err and "needs a schema" in err
    assert f"{path}:7" in err  # the line of the key
    good = ("    response_format: {type: json_schema, json_schema: {name: a, schema: "
            "{type: object}}}\n")
    path.write_text(text.replace("    tools:", good + "    tools:"))
    assert load_job(path).rl.response_format["type"] == "json_schema"
    for harmless in ("{type: text}", "null"):
        path.write_text(text.replace("    tools:", f"    response_format: {harmless}\n    tools:"))
        assert load_job(path).rl.response_format in ({"type": "text"}, None)
