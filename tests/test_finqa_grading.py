import asyncio

from agentrft.graders.api import run_grader
from examples.finqa_lite.grading import GRADER, found_sources


def sample(text, outputs):
    return {"output_text": text, "trajectory": {"messages": [], "status": "completed", "tool_calls": [
        {"name": "search", "arguments": "{}", "output": o, "is_error": False} for o in outputs]}}


ITEM = {"reference_answer": "1,234.5", "unit": "$ million",
        "source_paths": ["reports/acme/fy2019.md", "reports/acme/fy2020.md"]}


def test_found_counts_each_source_report_once():
    assert found_sources(sample("", []), ITEM) == 0
    assert found_sources(sample("", ["reports/acme/fy2019.md: Revenue ..."]), ITEM) == 0.5
    assert found_sources(sample("", ["reports/acme/fy2019.md", "reports/acme/fy2020.md x"]), ITEM) == 1


def test_answer_and_found_combine():
    full = asyncio.run(run_grader(GRADER, sample("It was $1,234.5 million.",
                                                 ["reports/acme/fy2019.md", "reports/acme/fy2020.md"]), ITEM))
    assert full["reward"] == 1.0
    answer_only = asyncio.run(run_grader(GRADER, sample("1234.5", []), ITEM))
    assert answer_only["reward"] == 0.8
    searched_only = asyncio.run(run_grader(GRADER, sample("I don't know", ["reports/acme/fy2019.md"]), ITEM))
    assert abs(searched_only["reward"] - 0.1) < 1e-9
