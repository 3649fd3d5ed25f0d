"""FinQA-lite's browse tasks (examples/finqa_lite/browse.py): the search task's questions, with
one demonstration that lists the company's reports and cats one instead of searching."""

import json

import pytest

from examples.finqa_lite.browse import VARIANTS
from examples.finqa_lite.corpus import generate_corpus
from examples.finqa_lite.questions import SYSTEM_PROMPT, make_rows
from examples.finqa_lite.server import FinqaTools
from tests.test_finqa_verify import rows_asking_the_search_tasks_questions


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(seed=0)


def _calls(messages):
    return [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]


@pytest.mark.parametrize("task", sorted(VARIANTS))
def test_browse_tasks_ask_the_search_tasks_questions(corpus, task):
    messages = rows_asking_the_search_tasks_questions(corpus, task)[1][0]["messages"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    first, second = (["list", "cat"], ["search"]) if task == "browse" else (["search"], ["list", "cat"])
    demos = messages[1:-1]
    split_at = [i for i, m in enumerate(demos) if m["role"] == "user"][1]
    assert _calls(demos[:split_at]) == first and _calls(demos[split_at:]) == second


def test_the_browsing_demonstration_shows_what_the_tool_server_returns(corpus, tmp_path):
    demos = make_rows(corpus, n_train=4, n_valid=4, task="browse")[1][0]["messages"][1:7]
    assert [m["role"] for m in demos] == ["user", "assistant", "tool", "assistant", "tool",
                                          "assistant"]
    folder = json.loads(demos[1]["tool_calls"][0]["function"]["arguments"])["path"]
    report = json.loads(demos[3]["tool_calls"][0]["function"]["arguments"])["path"]
    assert report.startswith(folder + "/") and report in demos[2]["content"].splitlines()
    assert [m["tool_call_id"] for m in (demos[2], demos[4])] == \
           [m["tool_calls"][0]["id"] for m in (demos[1], demos[3])]
    figure = demos[5]["content"].rsplit("Final answer: ", 1)[1]
    assert figure in demos[4]["content"]
    # the same outputs as the real tools over the company's written reports
    for path, text in corpus.documents.items():
        if path.startswith(folder + "/"):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(text, encoding="utf-8")
    tools = FinqaTools(tmp_path)
    assert tools.list(folder) == demos[2]["content"]
    assert tools.cat(report) == demos[4]["content"]
