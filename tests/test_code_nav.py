"""The code navigation example: tasks from real installed packages, F1 grading, the job."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agentrft.graders.build import build_grader
from agentrft.spec import load_job
from agentrft.train.setup import validate_job
from examples.code_nav import grade, tasks

JOB = Path(__file__).parents[1] / "examples" / "code_nav" / "job.yaml"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("code_nav")
    counts = tasks.write(out)
    rows = {s: [json.loads(line) for line in (out / "data" / f"{s}.jsonl").open()]
            for s in ("train", "valid")}
    return out, counts, rows


def test_splits_use_disjoint_real_repositories(generated):
    out, counts, rows = generated
    assert counts["train"] >= 40 and counts["valid"] >= 12
    train_repos = {r["repo"] for r in rows["train"]}
    valid_repos = {r["repo"] for r in rows["valid"]}
    assert train_repos == set(tasks.TRAIN_REPOS) and valid_repos == set(tasks.VALID_REPOS)
    assert not train_repos & valid_repos
    # no demonstration names a task's repository or identifier
    demo_names = {name for name, _, _ in tasks.DEMO_CASES}
    assert not demo_names & {r["identifier"] for s in rows.values() for r in s}


def test_reference_files_are_what_grep_finds(generated):
    """The reference is reproducible by the tool the model has: `grep -rlw NAME .`."""
    out, _, rows = generated
    for row in rows["train"][:10] + rows["valid"][:10]:
        found = subprocess.run(["grep", "-rlw", row["identifier"], "."], cwd=out / "repos" / row["repo"],
                               capture_output=True, text=True).stdout.split()
        assert sorted(grade.normalize(f) for f in found) == row["files"], row["identifier"]
        assert 1 <= len(row["files"]) <= tasks.MAX_FILES
        assert f"`{row['identifier']}`" in row["messages"][-1]["content"]


def test_f1_grader():
    item = {"files": ["a.py", "pkg/b.py"]}

    def sample(text, calls=()):
        return {"output_text": text, "trajectory": {"tool_calls": list(calls)}}

    assert grade.grade(sample("./a.py\n./pkg/b.py"), item) == 1.0
    assert grade.grade(sample("Edit /workspace/a.py and `pkg/b.py`."), item) == 1.0
    assert grade.grade(sample("./a.py"), item) == pytest.approx(2 / 3)  # recall 1/2
    assert grade.grade(sample("./a.py ./pkg/b.py ./c.py ./d.py"), item) == pytest.approx(2 / 3)
    assert grade.grade(sample("I don't know"), item) == 0.0
    assert grade.grade(sample("./c.py"), item) == 0.0
    reads = [{"name": "read_file", "arguments": json.dumps({"path": "./a.py"}), "is_error": False},
             {"name": "shell", "arguments": json.dumps({"command": "cat pkg/b.py"}), "is_error": True}]
    assert grade.grade_with_reads(sample("./a.py", reads), item) == pytest.approx(0.8 * 2 / 3 + 0.2 * 0.5)
    # the process reward: a successful shell command naming the identifier as a word
    item = {**item, "identifier": "parse"}
    shell = lambda command, err=False: {"name": "shell", "is_error": err,  # noqa: E731
                                        "arguments": json.dumps({"command": command})}
    assert grade.searched(sample("", [shell("grep -rlw parse .")]), item) == 1.0
    assert grade.searched(sample("", [shell("grep -rlw parse .", err=True)]), item) == 0.0
    assert grade.searched(sample("", [shell("grep -rlw parser .")]), item) == 0.0


async def test_grader_runs_as_sandboxed_python_source():
    source = (Path(grade.__file__)).read_text()
    grader = build_grader({"type": "python", "name": "f1", "source": source})
    result = await grader.grade({"output_text": "./x.py", "trajectory": {"tool_calls": []}},
                                {"files": ["x.py", "y.py"]}, "trace_1")
    assert result.reward == pytest.approx(2 / 3), result


def test_job_validates_against_generated_data(generated, tmp_path):
    out, _, _ = generated
    job = load_job(JOB)
    job = job.model_copy(update={"training_file": str(out / "data" / "train.jsonl"),
                                 "validation_file": str(out / "data" / "valid.jsonl")})
    for t in job.rl.tools:
        t.sandbox.workspace = str(out / "repos") + "/{{item.repo}}"
    validated = validate_job(job)
    assert len(validated.train_rows) >= 40 and {t.name for t in job.rl.tools} == {"shell", "read_file"}


def test_turn_and_wall_time_penalties_shape_the_reward():
    from agentrft.rollout.types import Rollout
    from agentrft.train.loop import shape_rewards

    job = load_job(JOB)
    hp = job.hp.model_copy(update={"turn_penalty": 0.1, "soft_max_turns": 2, "wall_time_penalty": 0.01})
    job = job.model_copy(update={"method": job.method.model_copy(update={
        "reinforcement": job.rl.model_copy(update={"hyperparameters": hp})})})
    quick = Rollout("t1", 0, {}, turns=2, reward=1.0, timing={"rollout": 3.0})
    slow = Rollout("t2", 0, {}, turns=5, reward=1.0, timing={"rollout": 20.0})
    shape_rewards([quick, slow], job)
    assert quick.shaped_reward == pytest.approx(1.0 - 0.03)
    assert slow.shaped_reward == pytest.approx(1.0 - 0.3 - 0.2)
