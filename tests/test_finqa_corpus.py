"""FinQA-lite data: the generated corpus (determinism, consistency) and the question rows."""

from __future__ import annotations

import json
import re

import pytest

from agentrft.spec.dataset import DatasetRow
from examples.finqa_lite import corpus as corpus_mod
from examples.finqa_lite.corpus import (METRICS, YEARS, content_sha256, generate_corpus,
                                        report_path, write_corpus)
from examples.finqa_lite.questions import TOOLS, make_rows, split_companies, write_rows
from examples.graders.numeric import grade, last_number


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(0)


@pytest.fixture(scope="module")
def rows(corpus):
    return make_rows(corpus)


def table_of(text: str) -> dict[str, str]:
    """label -> value string, from a report's markdown table."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\| ([^|]+) \| ([^|]+) \| ([^|]+) \|", line)
        if m and m[1] != "Metric" and not m[1].startswith("-"):
            out[m[1]] = m[2]
    return out


def num(s: str) -> float:
    return float(s.replace(",", "").rstrip("%"))


# --- determinism ---------------------------------------------------------------------------

def test_same_seed_gives_byte_identical_corpus(corpus):
    again = generate_corpus(0)
    assert list(again.documents) == list(corpus.documents)
    assert all(again.documents[p].encode() == corpus.documents[p].encode() for p in corpus.documents)
    assert again.facts == corpus.facts and again.companies == corpus.companies
    assert again.sha256 == corpus.sha256


def test_different_seed_gives_a_different_corpus(corpus):
    other = generate_corpus(1)
    assert other.sha256 != corpus.sha256
    assert {c.name for c in other.companies} != {c.name for c in corpus.companies}


def test_write_corpus_is_idempotent_and_matches_its_manifest(tmp_path, corpus):
    out = write_corpus(tmp_path / "c", seed=0)
    files = sorted((out / "reports").glob("*/*.md"))
    assert len(files) == 2800
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == {"format": 1, "seed": 0, "companies": 200, "years": [2011, 2024],
                        "documents": 2800, "sha256": corpus.sha256}
    on_disk = {f.relative_to(out).as_posix(): f.read_text(encoding="utf-8") for f in files}
    assert content_sha256(on_disk) == manifest["sha256"]

    write_corpus(out, seed=0)  # skipped: nothing is rewritten
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before

    (out / files[0].relative_to(out)).unlink()  # a missing report is noticed and rewritten
    write_corpus(out, seed=0)
    assert {f: f.read_bytes() for f in files} == {f: b for f, (b, _) in before.items()}


def test_rewriting_with_another_seed_leaves_no_stale_reports(tmp_path):
    out = write_corpus(tmp_path / "c", seed=0)
    write_corpus(out, seed=1)
    on_disk = {f.relative_to(out).as_posix() for f in (out / "reports").glob("*/*.md")}
    assert on_disk == set(generate_corpus(1).documents)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1


def test_cli_writes_the_corpus(tmp_path, capsys):
    corpus_mod.main([str(tmp_path / "c"), "--seed", "0"])
    assert "2800 reports" in capsys.readouterr().out
    assert (tmp_path / "c" / "manifest.json").is_file()


# --- shape and consistency -----------------------------------------------------------------

def test_corpus_shape(corpus):
    assert len(corpus.documents) == 2800 and len(corpus.companies) == 200
    assert set(corpus.documents) == {report_path(c.slug, y) for c in corpus.companies for y in YEARS}
    names = [c.name for c in corpus.companies]
    assert len(set(names)) == 200
    stems = [c.stem.lower() for c in corpus.companies]
    assert not [(a, b) for a in stems for b in stems if a != b and b.startswith(a)]
    for c in corpus.companies:
        assert c.slug == re.sub(r"[^a-z0-9]+", "-", c.name.lower()) and c.name.startswith(c.stem)
    words = [len(t.split()) for t in corpus.documents.values()]
    assert 120 <= min(words) and max(words) <= 200


def test_title_and_sector_lines(corpus):
    for c in corpus.companies[:20]:
        for y in YEARS:
            lines = corpus.documents[report_path(c.slug, y)].splitlines()
            assert lines[0] == f"# {c.name} — Fiscal {y} annual report"
            assert lines[2].startswith(f"Sector: {c.sector} · ")


def test_tables_match_facts(corpus):
    labels = {label: (key, unit) for key, label, unit in METRICS}
    for (slug, year), facts in corpus.facts.items():
        table = table_of(corpus.documents[report_path(slug, year)])
        assert set(table) == set(labels)
        for label, value in table.items():
            assert num(value) == facts[labels[label][0]], (slug, year, label)


def test_narrative_matches_table(corpus):
    for (slug, year), f in corpus.facts.items():
        text = corpus.documents[report_path(slug, year)]
        story = text.split("\n\n")[2]
        m = re.search(r"(rose|grew|increased|climbed|fell|declined|decreased|slipped|up|down) "
                      r"(\d+\.\d)%", story)
        sign = 1 if m[1] in ("rose", "grew", "increased", "climbed", "up") else -1
        assert sign * float(m[2]) == f["revenue_growth"]
        for key in ("revenue", "operating_income", "net_income", "total_assets"):
            assert f"${f[key]:,.1f} million" in story
        assert f"${f['eps']:.2f} per share" in story
        assert f"{int(f['employees']):,d} employees" in story
        if year > YEARS[0]:  # the stated growth is the growth between the two tables
            prev = corpus.facts[(slug, year - 1)]["revenue"]
            assert f["revenue_growth"] == round((f["revenue"] / prev - 1) * 100, 1)
            assert abs(f["revenue"] - prev * (1 + f["revenue_growth"] / 100)) \
                <= prev * 0.0005 + 0.05 + 1e-9


# --- questions -----------------------------------------------------------------------------

def test_rows_are_deterministic_and_written_byte_identical(tmp_path, corpus, rows):
    assert make_rows(corpus) == rows
    a = write_rows(tmp_path / "a", corpus)
    b = write_rows(tmp_path / "b", corpus)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert len(a[0].read_text().splitlines()) == 300 and len(a[1].read_text().splitlines()) == 60
    assert make_rows(corpus, seed=1) != rows


def test_rows_are_valid_dataset_rows(rows):
    for row in rows[0] + rows[1]:
        parsed = DatasetRow.model_validate(row)
        assert set(parsed.item) == {"question", "reference_answer", "unit", "kind", "company",
                                    "years", "metric", "source_paths"}
        assert [t["function"]["name"] for t in row["tools"]] == ["search", "list", "cat"]
    assert TOOLS[0]["function"]["parameters"]["required"] == ["query"]


def test_kind_mix(rows):
    for split, n in zip(rows, (300, 60)):
        kinds = [r["kind"] for r in split]
        assert len(split) == n and kinds.count("lookup") == round(0.6 * n)
        assert set(kinds) == {"lookup", "growth", "ratio", "difference", "percent_change"}
        assert len({r["question"] for r in split}) == n


def paths_in(row: dict) -> set[str]:
    """Every report a row touches: its sources and any named in its messages (the demo)."""
    text = " ".join(m.get("content") or "" for m in row["messages"])
    return set(row["source_paths"]) | set(re.findall(r"reports/[a-z0-9-]+/fy\d{4}\.md", text))


def test_train_and_validation_use_disjoint_reports(corpus, rows):
    train, valid = rows
    train_paths = set().union(*map(paths_in, train))
    valid_paths = set().union(*map(paths_in, valid))
    assert train_paths and valid_paths and not train_paths & valid_paths
    train_c, valid_c = split_companies(corpus)
    assert (len(train_c), len(valid_c)) == (160, 40)
    assert {r["company"] for r in valid} <= {c.name for c in valid_c}


def test_messages_hold_the_demonstrations_then_the_question(rows):
    from examples.finqa_lite.questions import DEMO_HITS, DEMOS

    for row in rows[0] + rows[1]:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system"] + ["user", "assistant", "tool", "assistant"] * DEMOS + ["user"]
        system, question = row["messages"][0], row["messages"][-1]
        assert "annual reports" in system["content"] and question["content"] == row["question"]
        for i in range(DEMOS):
            demo_q, call, result, answer = row["messages"][1 + 4 * i: 5 + 4 * i]
            (tc,) = call["tool_calls"]
            assert tc["function"]["name"] == "search" and result["tool_call_id"] == tc["id"]
            query = json.loads(tc["function"]["arguments"])["query"]
            assert row["company"] not in demo_q["content"] and row["company"] not in query
            lines = result["content"].splitlines()
            assert len(lines) == DEMO_HITS and all(
                re.match(r"reports/[a-z0-9-]+/fy\d{4}\.md: ", ln) for ln in lines)
            # The demo answers with the figure from the first hit, and ends with it.
            figure = lines[0].split(": ")[-1]
            assert last_number(answer["content"]).bare == last_number(figure).bare
            assert answer["content"].rstrip().split()[-1][0].isdigit()
        call_ids = [m["tool_calls"][0]["id"] for m in row["messages"] if m.get("tool_calls")]
        assert len(set(call_ids)) == DEMOS


def test_answers_recomputed_from_facts(corpus, rows):
    slug = {c.name: c.slug for c in corpus.companies}
    seen = set()
    for row in rows[0] + rows[1]:
        f = {y: corpus.facts[(slug[row["company"]], y)] for y in row["years"]}
        ref, kind, metric, years = row["reference_answer"], row["kind"], row["metric"], row["years"]
        seen.add(kind)
        if kind == "lookup":
            expected = f[years[0]][metric]
            assert num(ref) == expected and row["unit"] in ("$ million", "count", "$ per share")
        elif kind == "growth":
            y0, y1 = years
            assert y1 == y0 + 1 and ref.endswith("%")
            expected = round((f[y1]["revenue"] / f[y0]["revenue"] - 1) * 100, 1)
            assert num(ref) == expected == f[y1]["revenue_growth"]
        elif kind == "ratio":
            (y,) = years
            if metric == "assets_to_revenue":
                assert num(ref) == round(f[y]["total_assets"] / f[y]["revenue"], 2)
            else:
                top = {"operating_margin": "operating_income", "net_margin": "net_income"}[metric]
                assert num(ref) == round(f[y][top] / f[y]["revenue"] * 100, 1)
        elif kind == "difference":
            y0, y1 = years
            assert y0 < y1 and abs(num(ref) - (f[y1][metric] - f[y0][metric])) < 0.051
        elif kind == "percent_change":
            y0, y1 = years
            expected = (f[y1][metric] / f[y0][metric] - 1) * 100
            assert y0 < y1 and abs(num(ref) - expected) <= 0.05 + 1e-9
        else:
            raise AssertionError(kind)
        # Every needed report is named, and the reference grades as correct.
        assert all(p in corpus.documents for p in row["source_paths"])
        assert grade({"output_text": f"Final answer: {ref}"}, row) == 1.0
        assert grade({"output_text": "Final answer: 0"}, row) == 0.0
    assert seen == {"lookup", "growth", "ratio", "difference", "percent_change"}
