"""FinQA-lite's verify tasks (examples/finqa_lite/verify.py): the same questions as the search
task, demonstrations that open the top hit's report before answering; and the probe's
split of rollouts by whether they opened a report (bench/finqa_task_probe.py)."""

import importlib.util
import json
from pathlib import Path

import pytest

from examples.finqa_lite.corpus import generate_corpus
from examples.finqa_lite.demo import config
from examples.finqa_lite.questions import SYSTEM_PROMPT, TASKS, make_rows
from examples.finqa_lite.server import FinqaTools, cat_output
from examples.finqa_lite.verify import CONFIRM, HINT, VARIANTS


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(seed=0)


def _split(messages):
    """(system, demonstration messages, question) of a row's messages."""
    return messages[0], messages[1:-1], messages[-1]


def _cats(demos):
    return [c for m in demos for c in m.get("tool_calls") or [] if c["function"]["name"] == "cat"]


def rows_asking_the_search_tasks_questions(corpus, task):
    """`task`'s (train, valid) rows, checked to hold the search task's questions and reference
    data: a prompt variant changes the system prompt and demonstrations only."""
    base = make_rows(corpus, n_train=12, n_valid=8)
    rows = make_rows(corpus, n_train=12, n_valid=8, task=task)
    for b_split, split in zip(base, rows):
        assert [{k: v for k, v in r.items() if k != "messages"} for r in split] == \
               [{k: v for k, v in r.items() if k != "messages"} for r in b_split]
        assert [r["messages"][-1] for r in split] == [r["messages"][-1] for r in b_split]
    return rows


@pytest.mark.parametrize("task", sorted(VARIANTS))
def test_verify_tasks_ask_the_search_tasks_questions(corpus, task):
    rows = rows_asking_the_search_tasks_questions(corpus, task)
    verifies, hint = VARIANTS[task]
    system, demos, _ = _split(rows[1][0]["messages"])
    assert system["content"] == SYSTEM_PROMPT + (HINT if hint else "")
    assert len(_cats(demos)) == sum(verifies)


def test_a_verifying_demonstration_cats_the_top_hit_and_shows_what_cat_shows(corpus, tmp_path):
    _, demos, _ = _split(make_rows(corpus, n_train=4, n_valid=4, task="verify")[1][0]["messages"])
    assert [m["role"] for m in demos] == ["user", "assistant", "tool", "assistant", "tool",
                                          "assistant"] * 2
    for i in (0, 6):
        search_output, confirm, report, answer = demos[i + 2], demos[i + 3], demos[i + 4], demos[i + 5]
        path = json.loads(confirm["tool_calls"][0]["function"]["arguments"])["path"]
        assert search_output["content"].startswith(path + ": ")
        assert confirm["content"] == CONFIRM
        assert report["tool_call_id"] == confirm["tool_calls"][0]["id"]
        assert report["content"] == cat_output(corpus.documents[path])
        figure = answer["content"].rsplit("Final answer: ", 1)[1]
        assert figure in report["content"] and figure in search_output["content"].splitlines()[0]
    # what the tool server's cat returns for that path, read from a written report
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(corpus.documents[path], encoding="utf-8")
    assert FinqaTools(tmp_path).cat(path) == demos[10]["content"]


def test_verify_last_verifies_only_the_second_demonstration(corpus):
    _, demos, _ = _split(make_rows(corpus, n_train=4, n_valid=4, task="verify-last")[0][0]["messages"])
    assert [m["role"] for m in demos[:4]] == ["user", "assistant", "tool", "assistant"]
    assert not _cats(demos[:4]) and len(_cats(demos[4:])) == 1


def test_cat_output_truncates_long_documents_only():
    assert cat_output("abc", 3) == "abc"
    assert cat_output("abcdef", 4) == "abcd\n\n[truncated: 2 more characters]"


def test_unknown_task_is_a_clear_error(corpus):
    with pytest.raises(ValueError, match="unknown FinQA-lite task 'verfy'"):
        make_rows(corpus, n_train=2, n_valid=2, task="verfy")
    with pytest.raises(ValueError, match="unknown FinQA-lite task 'verfy'"):
        config(task="verfy")
    assert config(task="search").task == "search" and config().task == "verify"


def _probe():
    path = Path(__file__).resolve().parents[1] / "bench" / "finqa_task_probe.py"
    spec = importlib.util.spec_from_file_location("finqa_task_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(row, reward, answer, *names):
    return {"row_index": row, "status": "completed", "reward": reward,
            "grader": {"sub_rewards": {"answer": answer, "found": 1.0}},
            "tool_calls": [{"name": n} for n in names], "completion_tokens": 10 * len(names),
            "total_tokens": 100}


def test_probe_splits_rollouts_by_whether_they_opened_a_report():
    records = [_record(0, 1.0, 1.0, "search"), _record(0, 0.2, 0.0, "search", "cat"),
               _record(1, 0.2, 0.0, "search", "cat"), _record(1, 0.2, 0.0, "search", "cat"),
               _record(2, 0.0, 0.0, "(malformed)", "(malformed)"), _record(2, 1.0, 1.0, "search"),
               {**_record(2, None, 0.0, "search"), "status": "discarded"}]
    s = _probe().call_pattern_stats(records)
    assert s["rollouts"] == 6
    assert s["cat_share"] == pytest.approx(3 / 6)
    assert s["tool_calls_per_rollout"] == pytest.approx(10 / 6)
    assert s["tool_calls_per_rollout.(malformed)"] == pytest.approx(2 / 6)
    assert s["reward_mean_with_cat"] == pytest.approx(0.2)
    assert s["reward_mean_without_cat"] == pytest.approx(2 / 3)
    assert s["answer_mean_without_cat"] == pytest.approx(2 / 3)
    assert s["rows_mixing_cat_share"] == pytest.approx(1 / 3)  # row 0 only
    assert s["rows_with_varied_call_counts_share"] == pytest.approx(2 / 3)  # rows 0 and 2
    assert s["paired_gain_without_cat"] == pytest.approx(0.8)


def test_demo_command_offers_every_task():
    from agentrft.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo", "--task", "search"]).task == "search"
    assert parser.parse_args(["demo"]).task == "verify"
    demo = next(a for a in parser._subparsers._group_actions[0].choices["demo"]._actions
                if a.dest == "task")
    assert tuple(demo.choices) == TASKS
