"""`agentrft graders run|validate` print OpenAI-shaped JSON; bad input is a clear error."""

import json

from agentrft.cli import main
from agentrft.graders.base import ERROR_KEYS

GRADER = {"type": "multi", "name": "answer", "calculate_output": "0.75 * num + 0.25 * polite",
          "graders": {"num": {"type": "python", "name": "num",
                              "callable": "examples.graders.numeric:grade"},
                      "polite": {"type": "string_check", "name": "polite",
                                 "input": "{{sample.output_text}}", "reference": "thanks",
                                 "operation": "ilike"}}}


def write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def run_json(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_run_with_a_plain_text_sample(tmp_path, capsys):
    g = write(tmp_path / "g.json", GRADER)
    i = write(tmp_path / "i.json", {"answer": "4,200,000"})
    s = write(tmp_path / "s.txt", "Revenue was $4.2 million.\n")
    code, out, _ = run_json(capsys, ["graders", "run", "--grader", g, "--item", i, "--sample", s])
    assert code == 0
    assert out["reward"] == 0.75 and out["sub_rewards"] == {"num": 1.0, "polite": 0.0}
    assert set(out) == {"reward", "sub_rewards", "metadata", "model_grader_token_usage_per_model"}
    assert out["metadata"]["name"] == "answer" and out["metadata"]["type"] == "multi"
    assert set(ERROR_KEYS) <= set(out["metadata"]["errors"])


def test_run_with_a_sample_object_and_inline_text(tmp_path, capsys):
    g = write(tmp_path / "g.json", GRADER)
    i = write(tmp_path / "i.json", {"answer": "12"})
    s = write(tmp_path / "s.json", {"output_text": "12, thanks!"})
    assert run_json(capsys, ["graders", "run", "--grader", g, "--item", i, "--sample", s])[1]["reward"] == 1.0
    out = run_json(capsys, ["graders", "run", "--grader", g, "--item", i, "--sample-text", "13"])[1]
    assert out["reward"] == 0.0


def test_validate_prints_the_grader_or_names_the_field(tmp_path, capsys):
    g = write(tmp_path / "g.json", GRADER)
    code, out, _ = run_json(capsys, ["graders", "validate", "--grader", g])
    assert code == 0 and out == {"grader": GRADER}
    bad = dict(GRADER, calculate_output="0.75 * num + polit")
    code, _, err = run_json(capsys, ["graders", "validate", "--grader", write(tmp_path / "b.json", bad)])
    assert code == 2 and "grader.calculate_output" in err and "polit" in err


def test_unreadable_inputs_are_errors_not_tracebacks(tmp_path, capsys):
    g = write(tmp_path / "g.json", "{not json")
    code, _, err = run_json(capsys, ["graders", "validate", "--grader", g])
    assert code == 2 and "invalid JSON" in err and "Traceback" not in err
    code, _, err = run_json(capsys, ["graders", "run", "--grader", str(tmp_path / "missing.json")])
    assert code == 2 and "cannot read grader" in err
