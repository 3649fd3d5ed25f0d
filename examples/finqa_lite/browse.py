"""FinQA-lite with one browsing demonstration: list the company's reports, cat one, answer.

The questions, tools, server and grader are the search task's (questions.py); only the
prompt differs. One demonstration exchange finds its figure the way a careless agent does,
by browsing instead of searching:

    user        What was the net income of X in fiscal 2019, in $ million?
    assistant   <list "reports/x">
    tool        reports/x/fy2011.md … reports/x/fy2024.md          (14 lines)
    assistant   <cat "reports/x/fy2019.md">
    tool        # X — Fiscal 2019 annual report … (the whole report, as cat shows it)
    assistant   The net income of X in fiscal 2019 was $14.3 million.
                Final answer: 14.3

and the other searches (question → search → snippet → answer), as in the search task. Both
are examples a production team plausibly writes. Browsing takes two calls where one search
does, and leaves the model to pick one figure out of a whole report (where the search
snippet puts the asked-for line first): the calls RL can learn to save, if the untrained
model mixes the two paths and the search path scores higher. Variants (`TASKS` in
questions.py):

    browse        the first demonstration browses, the second searches
    browse-last   the first searches, the second browses
"""

from __future__ import annotations

import json

from examples.finqa_lite.corpus import Corpus
from examples.finqa_lite.questions import rework_exchanges
from examples.finqa_lite.server import cat_output, list_output

VARIANTS = {  # task -> which demonstration exchanges browse
    "browse": (True, False),
    "browse-last": (False, True),
}


def apply(task: str, demos: list[dict], corpus: Corpus) -> list[dict]:
    """The search task's demonstrations, with `task`'s exchanges turned into browsing ones."""
    return rework_exchanges(task, demos, VARIANTS[task], lambda ex, i: browsed(ex, corpus, i))


def listing(corpus: Corpus, folder: str) -> str:
    """What the tool server's `list` shows for a company folder: its reports, by name."""
    return list_output(sorted(p for p in corpus.documents if p.startswith(folder + "/")))


def browsed(exchange: list[dict], corpus: Corpus, index: int) -> list[dict]:
    """A search demonstration redone as list → cat of the report the search ranked first."""
    question, _, search_output, answer = exchange
    report = search_output["content"].splitlines()[0].split(": ", 1)[0]
    folder = report.rsplit("/", 1)[0]
    list_id, cat_id = f"call_demo{index}_list", f"call_demo{index}_cat"
    return [question,
            _call(list_id, "list", {"path": folder}),
            {"role": "tool", "tool_call_id": list_id, "content": listing(corpus, folder)},
            _call(cat_id, "cat", {"path": report}),
            {"role": "tool", "tool_call_id": cat_id,
             "content": cat_output(corpus.documents[report])},
            answer]


def _call(call_id: str, name: str, arguments: dict) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": call_id, "type": "function",
         "function": {"name": name, "arguments": json.dumps(arguments)}}]}
