"""FinQA-lite questions: dataset rows with reference answers, from a corpus (`corpus.py`).

Kinds (60% lookups, so the bundled 135M model has a nonzero baseline; 10% each of the rest):

    lookup          1 report   What was the net income of X in fiscal 2019, in $ million?
                               → "156.7"
    growth          1 report   By what percentage did the revenue of X grow in fiscal 2019
                               compared with fiscal 2018? … → "8.2%" (FY2019's text states it)
    ratio           1 report   What was the operating margin (…) of X in fiscal 2019? …
                               → "18.9%"; also net margin, total assets / revenue ("1.85")
    difference      2 reports  By how much did the net income of X change from fiscal 2016
                               to fiscal 2019, in $ million? … → "-12.3"
    percent_change  2 reports  By what percentage did the total assets of X change from
                               fiscal 2014 to fiscal 2018? … → "-4.5%"

Row keys besides `messages`/`tools` (reference data for graders, e.g.
`examples.graders.numeric`): `question`, `reference_answer` (formatted like the reports:
"1,234.5", "4,321", "8.2%"), `unit` ("$ million", "count", "$ per share", "%", "ratio"),
`kind`, `company` (the name), `years`, `metric`, `source_paths` (the fewest reports that
hold every figure the answer needs).

Rounding: money differences to $0.1 million, percentages to 0.1 (computed from the table
values), ratios to 0.01; the question says so.

Messages: a system prompt, DEMOS (2) demonstration exchanges (lookups about two companies of
the split, the same for every row of the split and never asked about: question → `search`
call → the search tool's output → answer ending with the number), then the question. The demonstration's search output is built from the
report's own chunks in the format `search.format_results` prints, without running the
embedding model, so writing the dataset stays instant and byte-identical on every machine
(the index's float rounding differs between CPUs). Its first line names the report the
real search ranks first for that query, with the figure the real first snippet shows
(tests/test_finqa_retrieval.py checks; the real snippet is sometimes the narrative rather
than the table line); the next four lines are the same figure in the neighbouring years,
where the real search shows a mix of those lines and the narratives of those years.

Train and validation use disjoint companies (160 / 40), hence disjoint reports, demos
included::

    python -m examples.finqa_lite.questions OUT_DIR --seed 0   # train.jsonl, valid.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Callable

from examples.finqa_lite.corpus import Company, Corpus, YEARS, format_value, generate_corpus, \
    pct_change, report_path
from examples.finqa_lite.search import Hit, chunk_report, format_results

VALID_COMPANIES = 40
LOOKUP_SHARE = 0.6
COMPUTED_KINDS = ("growth", "ratio", "difference", "percent_change")

LOOKUP_METRICS = {  # metric -> (how the question names it, unit)
    "revenue": ("revenue", "$ million"),
    "operating_income": ("operating income", "$ million"),
    "net_income": ("net income", "$ million"),
    "total_assets": ("total assets", "$ million"),
    "employees": ("number of employees", "count"),
    "eps": ("earnings per share (EPS)", "$ per share"),
}
CHANGE_METRICS = ("revenue", "operating_income", "net_income", "total_assets", "employees")
RATIOS = {  # metric -> (question wording, numerator, denominator, as percent?)
    "operating_margin": ("operating margin (operating income as a percentage of revenue)",
                         "operating_income", "revenue", True),
    "net_margin": ("net margin (net income as a percentage of revenue)",
                   "net_income", "revenue", True),
    "assets_to_revenue": ("ratio of total assets to revenue", "total_assets", "revenue", False),
}

# Two demonstration exchanges: with one, the 135M model almost never calls a tool here
# (measured: baseline reward 0.000 on 8 validation rows × 2); see the lookup example too.
DEMOS = 2
DEMO_HITS = 3  # search lines shown in a demonstration (shorter prompts)

SYSTEM_PROMPT = (
    "You are a financial research assistant. You answer questions about a corpus of annual "
    "reports of fictional companies, one file per company and fiscal year "
    "(reports/<company>/fy<year>.md, fiscal 2011 to 2024). Use the tools to find the "
    "figures: search finds matching lines in the reports, list shows the files in a folder, "
    "cat reads one report. Do not guess figures. End your reply with the final number, "
    "for example: Final answer: 1,234.5"
)

TOOLS = [
    {"type": "function", "function": {
        "name": "search",
        "description": "Search the annual reports. Returns up to top_k lines "
                       "'path: snippet', best match first.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "what to look for, e.g. "
                      "'Acme Corp net income 2019'"},
            "top_k": {"type": "integer", "description": "how many results (default 5)",
                      "minimum": 1, "maximum": 10}},
            "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "list",
        "description": "List the files and folders under a path, e.g. 'reports' or "
                       "'reports/acme-corp'.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                       "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "cat",
        "description": "Read one report, e.g. 'reports/acme-corp/fy2019.md'.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                       "required": ["path"]}}},
]


def fmt_pct(value: float) -> str:
    return f"{value:.1f}%"


def fmt_diff(metric: str, value: float) -> str:
    return f"{int(value):,d}" if metric == "employees" else f"{value:,.1f}"


# --- one question per kind: (question, reference_answer, unit, years, metric, source years) --

def lookup(rng: random.Random, corpus: Corpus, c: Company) -> dict:
    metric = rng.choice(sorted(LOOKUP_METRICS))
    year = rng.choice(YEARS)
    label, unit = LOOKUP_METRICS[metric]
    if metric == "employees":
        q = f"How many employees did {c.name} have in fiscal {year}?"
    else:
        verb = "were" if metric == "total_assets" else "was"
        q = f"What {verb} the {label} of {c.name} in fiscal {year}, in {unit}?"
    value = corpus.facts[(c.slug, year)][metric]
    return _row(c, "lookup", q, format_value(metric, value), unit, [year], metric, [year])


def growth(rng: random.Random, corpus: Corpus, c: Company) -> dict:
    year = rng.choice(YEARS[1:])  # FY2011's prior year is not in the corpus
    q = (f"By what percentage did the revenue of {c.name} grow in fiscal {year} compared "
         f"with fiscal {year - 1}? Round to one decimal place (negative for a decline).")
    before, after = (corpus.facts[(c.slug, y)]["revenue"] for y in (year - 1, year))
    return _row(c, "growth", q, fmt_pct(pct_change(before, after)), "%", [year - 1, year],
                "revenue_growth", [year])


def ratio(rng: random.Random, corpus: Corpus, c: Company) -> dict:
    metric = rng.choice(sorted(RATIOS))
    wording, num, den, percent = RATIOS[metric]
    year = rng.choice(YEARS)
    f = corpus.facts[(c.slug, year)]
    if percent:
        q = (f"What was the {wording} of {c.name} in fiscal {year}? "
             f"Give the percentage rounded to one decimal place.")
        answer, unit = fmt_pct(round(f[num] / f[den] * 100, 1)), "%"
    else:
        q = f"What was the {wording} of {c.name} in fiscal {year}? Round to two decimal places."
        answer, unit = f"{f[num] / f[den]:.2f}", "ratio"
    return _row(c, "ratio", q, answer, unit, [year], metric, [year])


def _two_years(rng: random.Random) -> tuple[int, int]:
    y1 = rng.choice(YEARS[:-2])
    return y1, rng.choice([y for y in YEARS if y1 + 2 <= y <= y1 + 6])


def difference(rng: random.Random, corpus: Corpus, c: Company) -> dict:
    metric = rng.choice(CHANGE_METRICS)
    y1, y2 = _two_years(rng)
    label, unit = LOOKUP_METRICS[metric]
    v1, v2 = corpus.facts[(c.slug, y1)][metric], corpus.facts[(c.slug, y2)][metric]
    in_unit = "" if unit == "count" else f", in {unit}"
    q = (f"By how much did the {label} of {c.name} change from fiscal {y1} to fiscal {y2}"
         f"{in_unit}? Use a negative number for a decrease.")
    return _row(c, "difference", q, fmt_diff(metric, round(v2 - v1, 1)), unit, [y1, y2],
                metric, [y1, y2])


def percent_change(rng: random.Random, corpus: Corpus, c: Company) -> dict:
    metric = rng.choice(CHANGE_METRICS)
    y1, y2 = _two_years(rng)
    label, _ = LOOKUP_METRICS[metric]
    v1, v2 = corpus.facts[(c.slug, y1)][metric], corpus.facts[(c.slug, y2)][metric]
    q = (f"By what percentage did the {label} of {c.name} change from fiscal {y1} to "
         f"fiscal {y2}? Round to one decimal place (negative for a decrease).")
    return _row(c, "percent_change", q, fmt_pct(pct_change(v1, v2)), "%", [y1, y2], metric,
                [y1, y2])


KINDS = {"lookup": lookup, "growth": growth, "ratio": ratio, "difference": difference,
         "percent_change": percent_change}


def _row(c: Company, kind: str, question: str, answer: str, unit: str, years: list[int],
         metric: str, source_years: list[int]) -> dict:
    return {"question": question, "reference_answer": answer, "unit": unit, "kind": kind,
            "company": c.name, "years": years, "metric": metric,
            "source_paths": [report_path(c.slug, y) for y in source_years]}


# --- the demonstration ----------------------------------------------------------------------

def demonstration(rng: random.Random, corpus: Corpus, c: Company, index: int = 0) -> list[dict]:
    """A lookup about company `c`: question → search → result → answer."""
    demo = lookup(rng, corpus, c)
    year, metric = demo["years"][0], demo["metric"]
    label = LOOKUP_METRICS[metric][0].replace(" (EPS)", "")
    query = f"{c.name} {label} {year}"
    call_id = f"call_demo{index}"
    call = {"id": call_id, "type": "function",
            "function": {"name": "search", "arguments": json.dumps({"query": query})}}
    answer = demo["reference_answer"]
    unit_words = {"$ million": f"${answer} million", "$ per share": f"${answer} per share",
                  "count": f"{answer} employees"}[demo["unit"]]
    return [
        {"role": "user", "content": demo["question"]},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id,
         "content": format_results(demo_hits(corpus, c, year, metric))},
        {"role": "assistant", "content": f"The {LOOKUP_METRICS[metric][0]} of {c.name} in fiscal "
                                         f"{year} {'were' if metric == 'total_assets' else 'was'} "
                                         f"{unit_words}.\nFinal answer: {answer}"},
    ]


EXCHANGE = 4  # messages of one demonstration exchange: user, search call, its output, answer


def rework_exchanges(task: str, demos: list[dict], chosen: tuple[bool, ...],
                     redo: Callable[[list[dict], int], list[dict]]) -> list[dict]:
    """`demos` with each chosen exchange (`chosen[i]`: the i-th) replaced by `redo(exchange,
    i)`: how a prompt variant (verify.py, browse.py) turns the search task's demonstrations
    into its own."""
    exchanges = [demos[i:i + EXCHANGE] for i in range(0, len(demos), EXCHANGE)]
    if len(exchanges) != len(chosen):
        raise ValueError(f"{task}: {len(chosen)} demonstrations expected, got {len(exchanges)}")
    out = []
    for i, (exchange, rework) in enumerate(zip(exchanges, chosen)):
        out += redo(exchange, i) if rework else exchange
    return out


_ROW_INDEX = {m: i + 1 for i, m in enumerate(  # chunk position: 0 is the narrative
    ("revenue", "operating_income", "net_income", "total_assets", "employees", "eps"))}


def demo_hits(corpus: Corpus, c: Company, year: int, metric: str) -> list[Hit]:
    """Search results for "<company> <metric> <year>", built without the index: the
    metric's line in that year's report, then the same line in the four nearest other
    years. Scores are not shown to the model, so none are computed."""
    years = [year] + sorted((y for y in YEARS if y != year), key=lambda y: (abs(y - year), y))
    hits = []
    for y in years[:DEMO_HITS]:
        path = report_path(c.slug, y)
        chunk = chunk_report(path, corpus.documents[path])[_ROW_INDEX[metric]]
        hits.append(Hit(path, chunk.text, 0.0))
    return hits


# --- rows -------------------------------------------------------------------------------------

def split_companies(corpus: Corpus, seed: int = 0) -> tuple[list[Company], list[Company]]:
    companies = sorted(corpus.companies, key=lambda c: c.slug)
    random.Random(f"split-{seed}").shuffle(companies)
    valid = sorted(companies[:VALID_COMPANIES], key=lambda c: c.slug)
    train = sorted(companies[VALID_COMPANIES:], key=lambda c: c.slug)
    return train, valid


def _kinds(n: int) -> list[str]:
    n_lookup = round(n * LOOKUP_SHARE)
    rest = [COMPUTED_KINDS[i % len(COMPUTED_KINDS)] for i in range(n - n_lookup)]
    return ["lookup"] * n_lookup + rest


TASKS = ("search", "verify", "verify-last", "verify-hint", "verify-last-hint", "search-hint",
         "browse", "browse-last")
# "search": the demonstrations answer from the search snippet. verify*, search-hint
# (verify.py): the demonstrations also open the top hit's report with `cat` before answering.
# browse* (browse.py): one demonstration lists the company's reports and cats one instead.


def _rows(rng: random.Random, corpus: Corpus, companies: list[Company], n: int,
          task: str = "search") -> list[dict]:
    # One set of demonstrations per split, as a production prompt has: every row then shares
    # system prompt, tools and demonstrations, which the engine prefills once per batch.
    # Their companies are left out of the split's questions.
    if task not in TASKS:
        raise ValueError(f"unknown FinQA-lite task {task!r}; expected one of {', '.join(TASKS)}")
    demo_companies = rng.sample(companies, DEMOS)
    demos = [m for i, d in enumerate(demo_companies) for m in demonstration(rng, corpus, d, i)]
    system = SYSTEM_PROMPT
    # the same questions and demonstration lookups, browsed, verified or hinted
    if task.startswith("browse"):
        from examples.finqa_lite import browse

        demos = browse.apply(task, demos, corpus)
    elif task != "search":
        from examples.finqa_lite import verify

        demos, system = verify.apply(task, demos, corpus, SYSTEM_PROMPT)
    companies = [c for c in companies if c not in demo_companies]
    kinds = _kinds(n)
    rng.shuffle(kinds)
    rows, seen = [], set()
    for kind in kinds:
        while True:
            c = rng.choice(companies)
            item = KINDS[kind](rng, corpus, c)
            # No repeats, and no answer that rounds to zero ("-0.0%" is a poor target).
            if item["question"] not in seen and item["reference_answer"].lstrip("-") not in \
                    ("0", "0.0", "0.0%", "0.00"):
                break
        seen.add(item["question"])
        messages = [{"role": "system", "content": system}, *demos,
                    {"role": "user", "content": item["question"]}]
        rows.append({"messages": messages, "tools": TOOLS, **item})
    return rows


def make_rows(corpus: Corpus, seed: int = 0, n_train: int = 300, n_valid: int = 60,
              task: str = "search") -> tuple[list[dict], list[dict]]:
    """(train_rows, valid_rows); the same arguments give the same rows, and every task the
    same questions (only the system prompt and demonstrations differ)."""
    train_companies, valid_companies = split_companies(corpus, seed)
    rng = random.Random(seed)
    train = _rows(rng, corpus, train_companies, n_train, task)
    valid = _rows(rng, corpus, valid_companies, n_valid, task)
    return train, valid


def write_rows(out_dir: str | Path, corpus: Corpus, seed: int = 0, n_train: int = 300,
               n_valid: int = 60, task: str = "search") -> tuple[Path, Path]:
    """Write train.jsonl and valid.jsonl under `out_dir` (byte-identical for the same input)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in zip(("train.jsonl", "valid.jsonl"),
                          make_rows(corpus, seed, n_train, n_valid, task)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / name).write_bytes(text.encode("utf-8"))
        paths.append(out / name)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write FinQA-lite train/valid rows.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0, help="question seed")
    parser.add_argument("--corpus-seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-valid", type=int, default=60)
    parser.add_argument("--task", choices=TASKS, default="search")
    args = parser.parse_args(argv)
    train, valid = write_rows(args.out_dir, generate_corpus(args.corpus_seed), args.seed,
                              args.n_train, args.n_valid, args.task)
    print(f"wrote {train} and {valid}")


if __name__ == "__main__":
    main()
