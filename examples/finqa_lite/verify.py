"""FinQA-lite with careful demonstrations: search, then open the top hit's report to confirm.

The questions, tools, server and grader are the search task's (questions.py); only the
prompt differs. Each verifying demonstration exchange reads

    user        What was the net income of X in fiscal 2019, in $ million?
    assistant   <search "X net income 2019">
    tool        reports/x/fy2019.md: X FY2019 net income: 14.3 $ million   (+ two more lines)
    assistant   Let me open the report to confirm.  <cat "reports/x/fy2019.md">
    tool        # X — Fiscal 2019 annual report … (the whole report, as cat shows it)
    assistant   The net income of X in fiscal 2019 was $14.3 million.
                Final answer: 14.3

a habit a production team plausibly writes into its examples. The snippet already holds the
figure, so the `cat` costs a call and ~250 tokens of context and adds nothing the grader
pays for (the report's path is already in the search output, so `found` is the same):
what RL can learn to drop. Variants (`TASKS` in questions.py):

    verify            both demonstrations verify
    verify-last       only the second (the model copies the last demonstration most)
    verify-hint       both verify; the system prompt says to confirm figures when unsure
    verify-last-hint  only the second verifies; the same hint
    search-hint       no demonstration verifies; the hint only
"""

from __future__ import annotations

import json

from examples.finqa_lite.corpus import Corpus
from examples.finqa_lite.questions import rework_exchanges
from examples.finqa_lite.server import cat_output

HINT = " When you are unsure of a figure, confirm it in the report with cat before answering."
CONFIRM = "Let me open the report to confirm."

VARIANTS = {  # task -> (which demonstration exchanges verify, system prompt hint?)
    "verify": ((True, True), False),
    "verify-last": ((False, True), False),
    "verify-hint": ((True, True), True),
    "verify-last-hint": ((False, True), True),
    "search-hint": ((False, False), True),
}


def apply(task: str, demos: list[dict], corpus: Corpus, system: str) -> tuple[list[dict], str]:
    """The search task's demonstrations and system prompt, turned into `task`'s."""
    verifies, hint = VARIANTS[task]
    demos = rework_exchanges(task, demos, verifies, lambda ex, i: verified(ex, corpus, i))
    return demos, system + (HINT if hint else "")


def verified(exchange: list[dict], corpus: Corpus, index: int) -> list[dict]:
    """A search demonstration with a `cat` of its top hit between the search and the answer."""
    question, search_call, search_output, answer = exchange
    top_path = search_output["content"].splitlines()[0].split(": ", 1)[0]
    call_id = f"call_demo{index}_cat"
    cat_call = {"id": call_id, "type": "function",
                "function": {"name": "cat", "arguments": json.dumps({"path": top_path})}}
    return [question, search_call, search_output,
            {"role": "assistant", "content": CONFIRM, "tool_calls": [cat_call]},
            {"role": "tool", "tool_call_id": call_id,
             "content": cat_output(corpus.documents[top_path])},
            answer]
