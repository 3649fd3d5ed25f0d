"""FinQA-lite search: the report a question needs is in the top 5 of `search(question)`.

The index embeds 19,600 chunks with the real all-MiniLM-L6-v2: ~30 s on a 2-core CPU with
AMX (bfloat16), ~70 s without. It is built once per session and cached in pytest's cache
dir (`.pytest_cache/d/finqa-lite-embeddings`, keyed by the corpus hash), so later runs
load it in under a second.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from examples.finqa_lite.corpus import generate_corpus, write_corpus
from examples.finqa_lite.questions import make_rows
from examples.finqa_lite.search import Hit, SearchIndex, chunk_report, format_results

RECALL_FLOOR = 0.8


@pytest.fixture(scope="session")
def finqa_corpus():
    return generate_corpus(0)


@pytest.fixture(scope="session")
def cache_dir(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return cache.mkdir("finqa-lite-embeddings") if cache else tmp_path_factory.mktemp("emb")


@pytest.fixture(scope="session")
def index(finqa_corpus, cache_dir):
    return SearchIndex(finqa_corpus, cache_dir=cache_dir)


def recall(index: SearchIndex, rows: list[dict], **kw) -> tuple[float, float]:
    """(question recall, path recall) at top 5, the question text as the query.

    A question counts as found when EVERY report in its `source_paths` is in the top 5
    (both years for two-report questions); path recall counts each needed report apart.
    """
    found = paths = needed = 0
    results = index.search_batch([row["question"] for row in rows], top_k=5, **kw)
    for row, result in zip(rows, results):
        got = {h.path for h in result}
        hits = [p in got for p in row["source_paths"]]
        found += all(hits)
        paths += sum(hits)
        needed += len(hits)
    return found / len(rows), paths / needed


def test_needed_reports_are_in_the_top_5(index, finqa_corpus):
    """Measured (seed 0): 100% of the 60 validation questions and of a 100-question train
    sample have all their reports in the top 5 (path recall 100%). Embeddings alone (no
    company/year boost) reach 70% / 72% of questions (path recall 75% / 75%)."""
    train, valid = make_rows(finqa_corpus)
    sample = random.Random(0).sample(train, 100)
    for rows in (valid, sample):
        by_question, by_path = recall(index, rows)
        assert by_question >= RECALL_FLOOR and by_path >= RECALL_FLOOR, (by_question, by_path)


def test_the_demonstration_starts_with_what_search_ranks_first(index, finqa_corpus):
    """The demo's (index-free) search output leads with the report and the figure that the
    real search puts first for the demo's query. Measured over all 360 rows: always the same
    report; the real top snippet is the table line for 349 and the narrative for 11."""
    train, valid = make_rows(finqa_corpus)
    rows = valid + train[::5]
    queries = [json.loads(r["messages"][2]["tool_calls"][0]["function"]["arguments"])["query"]
               for r in rows]
    for row, (top,) in zip(rows, index.search_batch(queries, top_k=1)):
        shown = row["messages"][3]["content"].splitlines()[0]
        figure = row["messages"][4]["content"].rsplit("Final answer: ", 1)[1]
        assert shown.startswith(top.path + ": ") and figure in top.snippet


def test_search_finds_a_company_without_its_suffix_and_in_any_case(index, finqa_corpus):
    c = finqa_corpus.companies[7]
    fact = finqa_corpus.facts[(c.slug, 2017)]
    (hit,) = index.search(f"{c.stem.lower()} net income fy2017", top_k=1)
    assert hit.path == f"reports/{c.slug}/fy2017.md"
    assert hit.snippet == f"{c.name} FY2017 — Net income: ${fact['net_income']:,.1f} million"


def test_hits_are_distinct_reports_and_top_k_is_clamped(index):
    hits = index.search("revenue growth driven by cloud subscriptions", top_k=50)
    assert len(hits) == 20 == len({h.path for h in hits})
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(index.search("anything", top_k=0)) == 1


def test_cache_reload_and_corpus_dir_give_the_same_index(index, finqa_corpus, cache_dir,
                                                         tmp_path):
    start = time.perf_counter()
    again = SearchIndex(write_corpus(tmp_path / "corpus"), cache_dir=cache_dir)
    assert time.perf_counter() - start < 10  # mostly reading 2,800 files; no embedding
    assert again.sha256 == finqa_corpus.sha256 == index.sha256
    assert (again.vectors_ND == index.vectors_ND).all()
    q = f"total assets of {finqa_corpus.companies[0].name} in 2020"
    assert again.search(q) == index.search(q) == index.search_batch([q, "x"])[0]


def test_chunks_and_format():
    doc = generate_corpus(0).documents
    path = next(iter(doc))
    chunks = chunk_report(path, doc[path])
    assert len(chunks) == 7 and all(c.path == path for c in chunks)
    name = doc[path].splitlines()[0][2:].split(" — ")[0]
    assert all(c.text.startswith(f"{name} FY2011 — ") for c in chunks)
    assert [c.text.split(" — ")[1].split(":")[0] for c in chunks[1:]] == \
        ["Revenue", "Operating income", "Net income", "Total assets", "Employees",
         "EPS (earnings per share)"]
    assert "Sector:" not in chunks[0].text and "%" in chunks[0].text
    assert format_results([Hit("reports/a/fy2011.md", "A FY2011 — EPS: $1.00 per share", 0.9)]) \
        == "reports/a/fy2011.md: A FY2011 — EPS: $1.00 per share"
    assert format_results([]) == "No results."
