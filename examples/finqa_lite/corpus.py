"""The FinQA-lite corpus: 2,800 short annual reports of 200 fictional companies, FY2011–2024.

Everything comes from one seeded `random.Random` (no global state, no clock, sorted
iteration), so a seed names a corpus: two generations with the same seed are
byte-identical. Regenerate (idempotent: skipped when the manifest already matches)::

    python -m examples.finqa_lite.corpus OUT_DIR --seed 0

Layout under OUT_DIR::

    manifest.json       {"format", "seed", "companies", "years", "documents", "sha256"}
    reports/<company-slug>/fy<year>.md     e.g. reports/zorvanta-holdings/fy2019.md

One report (130–150 words)::

    # Zorvanta Holdings — Fiscal 2019 annual report

    Sector: Industrials · Headquarters: Lisbon · Fiscal year ended December 31, 2019

    Revenue rose 8.2% to $1,234.5 million in fiscal 2019, driven by ... Operating income
    was $234.1 million and net income reached $156.7 million, or $1.23 per share. ...

    Outlook: management expects ... in fiscal 2020.

    | Metric | FY2019 | Unit |
    |---|---:|---|
    | Revenue | 1,234.5 | $ million |
    | Operating income | 234.1 | $ million |
    | Net income | 156.7 | $ million |
    | Total assets | 3,210.9 | $ million |
    | Employees | 4,321 | count |
    | EPS | 1.23 | $ per share |

Consistency: each year's revenue is the previous year's times (1 + growth), rounded to
$0.1 million; the growth the narrative states is recomputed from the two rounded table
values (for FY2011, from an unpublished FY2010 figure), so it always matches the tables.
The narrative repeats the table's figures in the same formatting. `Corpus.facts` holds the
same numbers keyed by (company slug, year).

Company names are a made-up stem plus a sector word ("Zorvanta Holdings"); no stem is a
prefix of another, so a name never collides with another by prefix, and the stem alone
identifies the company (search uses that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 1
N_COMPANIES = 200
YEARS = tuple(range(2011, 2025))  # 14 fiscal years

# (facts key, table label, unit): the table rows, in order.
METRICS = (
    ("revenue", "Revenue", "$ million"),
    ("operating_income", "Operating income", "$ million"),
    ("net_income", "Net income", "$ million"),
    ("total_assets", "Total assets", "$ million"),
    ("employees", "Employees", "count"),
    ("eps", "EPS", "$ per share"),
)

SECTORS = {  # sector -> (name suffixes, growth drivers, headwinds)
    "Technology": (("Systems", "Labs", "Networks", "Technologies"),
                   ("cloud subscriptions", "enterprise software demand", "new chip designs"),
                   ("slower hardware sales", "delayed customer projects")),
    "Healthcare": (("Health", "Biosciences", "Medical", "Pharma"),
                   ("new drug approvals", "higher clinic volumes", "diagnostics demand"),
                   ("generic competition", "lower reimbursement rates")),
    "Energy": (("Energy", "Power", "Resources"),
               ("higher oil prices", "new wind capacity", "stronger gas output"),
               ("lower commodity prices", "planned plant outages")),
    "Retail": (("Stores", "Retail", "Brands"),
               ("online sales", "new store openings", "strong holiday trading"),
               ("weak consumer spending", "store closures")),
    "Industrials": (("Industries", "Manufacturing", "Engineering"),
                    ("large infrastructure orders", "aftermarket services", "automation demand"),
                    ("a slowdown in orders", "supply chain disruptions")),
    "Financial services": (("Capital", "Financial", "Bancorp"),
                           ("higher interest income", "growth in fee income", "new lending"),
                           ("lower trading volumes", "higher credit losses")),
    "Utilities": (("Utilities", "Water", "Grid"),
                  ("approved rate increases", "customer growth", "new transmission assets"),
                  ("mild weather", "lower wholesale prices")),
    "Materials": (("Materials", "Chemicals", "Metals"),
                  ("higher metal prices", "specialty chemicals demand", "packaging volumes"),
                  ("weaker construction demand", "falling steel prices")),
    "Consumer goods": (("Foods", "Consumer", "Goods"),
                       ("price increases", "new product launches", "emerging-market sales"),
                       ("lower volumes", "retailer destocking")),
    "Transportation": (("Logistics", "Freight", "Airlines"),
                       ("higher shipping volumes", "new routes", "e-commerce parcels"),
                       ("lower freight rates", "fuel costs")),
    "Telecommunications": (("Telecom", "Communications"),
                           ("fibre subscribers", "mobile data growth", "enterprise contracts"),
                           ("price competition", "declining fixed-line revenue")),
    "Media": (("Media", "Studios", "Publishing"),
              ("streaming subscriptions", "advertising growth", "a hit film slate"),
              ("lower advertising spend", "a weak release schedule")),
}
GENERIC_SUFFIXES = ("Corp", "Holdings", "Group")
CITIES = ("Lisbon", "Denver", "Osaka", "Rotterdam", "Austin", "Lyon", "Calgary", "Porto",
          "Leeds", "Adelaide", "Monterrey", "Tampere", "Gdansk", "Valencia", "Pune", "Busan")
OUTLOOKS = ("steady demand", "modest revenue growth", "further cost savings",
            "higher capital spending", "margin improvement", "a more cautious market",
            "continued investment in new products", "stable pricing")

_ONSETS = ("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "cr", "dr", "gr", "kr", "pr", "tr", "st", "th", "fl")
_VOWELS = ("a", "e", "i", "o", "u", "a", "o", "ai", "ea")
_INNER_CODAS = ("", "", "", "n", "r", "l", "s")
_FINAL_CODAS = ("", "", "n", "r", "l", "x", "s", "m", "nd", "rk", "st", "ra", "ta")


@dataclass(frozen=True)
class Company:
    name: str      # "Zorvanta Holdings"
    slug: str      # "zorvanta-holdings"
    stem: str      # "Zorvanta": unique, and no stem is a prefix of another
    sector: str
    headquarters: str


@dataclass(frozen=True)
class Corpus:
    seed: int
    documents: dict[str, str]                         # "reports/<slug>/fy<year>.md" -> text
    facts: dict[tuple[str, int], dict[str, float]]    # (slug, year) -> metric -> value
    companies: list[Company]                          # sorted by slug

    @property
    def sha256(self) -> str:
        return content_sha256(self.documents)

    def company(self, slug: str) -> Company:
        return next(c for c in self.companies if c.slug == slug)


def report_path(slug: str, year: int) -> str:
    return f"reports/{slug}/fy{year}.md"


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def content_sha256(documents: dict[str, str]) -> str:
    """One hash over every (path, text), in sorted path order."""
    h = hashlib.sha256()
    for path in sorted(documents):
        h.update(path.encode() + b"\0" + documents[path].encode("utf-8") + b"\0")
    return h.hexdigest()


def money(value: float) -> str:
    return f"{value:,.1f}"


def format_value(metric: str, value: float) -> str:
    """A figure as the table (and the narrative) writes it."""
    if metric == "employees":
        return f"{int(value):,d}"
    if metric == "eps":
        return f"{value:,.2f}"
    return money(value)


def pct_change(old: float, new: float) -> float:
    """Percent change rounded to 0.1, the way the narrative states growth."""
    return round((new / old - 1) * 100, 1)


# --- companies ----------------------------------------------------------------------------

def _stem(rng: random.Random) -> str:
    """A pronounceable made-up word: 2–3 consonant-vowel syllables and an ending."""
    syllables = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((2, 2, 3)))]
    word = "".join(s + rng.choice(_INNER_CODAS) for s in syllables[:-1])
    return (word + syllables[-1] + rng.choice(_FINAL_CODAS)).capitalize()


def make_companies(rng: random.Random, n: int = N_COMPANIES) -> list[Company]:
    stems: list[str] = []
    while len(stems) < n:
        s = _stem(rng)
        low = s.lower()
        if not 5 <= len(s) <= 10 or re.search("[aeiou]{3}|[^aeiou]{3}", low):
            continue  # too short, too long or hard to read
        if any(low.startswith(t.lower()) or t.lower().startswith(low) for t in stems):
            continue  # prefix collision (or duplicate): search and the grader rely on this
        stems.append(s)
    sectors = sorted(SECTORS)
    companies = []
    for s in stems:
        sector = rng.choice(sectors)
        suffix = rng.choice(SECTORS[sector][0] * 2 + GENERIC_SUFFIXES)
        name = f"{s} {suffix}"
        companies.append(Company(name, slugify(name), s, sector, rng.choice(CITIES)))
    return sorted(companies, key=lambda c: c.slug)


# --- figures ------------------------------------------------------------------------------

def make_facts(rng: random.Random, company: Company) -> dict[int, dict[str, float]]:
    """Fourteen years of figures for one company; revenue chains through stated growth."""
    revenue = round(10 ** rng.uniform(1.8, 3.8), 1)  # FY2010, unpublished: $63M – $6.3B
    op_margin = rng.uniform(0.06, 0.24)
    tax_keep = rng.uniform(0.62, 0.82)                 # net income / operating income
    asset_turn = rng.uniform(0.5, 1.1)                 # revenue / total assets
    staff_per_m = rng.uniform(1.5, 6.0)                # employees per $1M revenue
    shares = rng.uniform(20, 600)                      # million shares outstanding
    trend = rng.uniform(-0.01, 0.09)
    out: dict[int, dict[str, float]] = {}
    for year in YEARS:
        while True:
            growth = max(-0.25, min(0.40, rng.gauss(trend, 0.07)))
            new_revenue = round(revenue * (1 + growth), 1)
            stated = pct_change(revenue, new_revenue)
            if abs(stated) >= 0.5:  # "rose 0.0%" reads badly; draw again
                break
        revenue = new_revenue
        op_margin = min(0.35, max(0.03, op_margin + rng.gauss(0, 0.015)))
        asset_turn = min(1.4, max(0.35, asset_turn + rng.gauss(0, 0.03)))
        shares *= rng.uniform(0.98, 1.03)
        operating_income = round(revenue * op_margin, 1)
        net_income = round(operating_income * min(0.9, max(0.5, tax_keep + rng.gauss(0, 0.03))), 1)
        out[year] = {
            "revenue": revenue,
            "operating_income": operating_income,
            "net_income": net_income,
            "total_assets": round(revenue / asset_turn, 1),
            "employees": float(max(25, round(revenue * staff_per_m * rng.uniform(0.95, 1.05)))),
            "eps": round(net_income / shares, 2),
            "revenue_growth": stated,
        }
    return out


# --- text ---------------------------------------------------------------------------------

def narrative(rng: random.Random, c: Company, year: int, f: dict[str, float]) -> str:
    _, drivers, headwinds = SECTORS[c.sector]
    g = f["revenue_growth"]
    rev = money(f["revenue"])
    if g > 0:
        verb = rng.choice(("rose", "grew", "increased", "climbed"))
        why = rng.choice(("driven by", "helped by", "on the back of")) + " " + rng.choice(drivers)
        updown = "up"
    else:
        verb = rng.choice(("fell", "declined", "decreased", "slipped"))
        why = rng.choice(("as", "because")) + " " + rng.choice(headwinds) + " weighed on sales"
        updown = "down"
    s1 = rng.choice((
        f"Revenue {verb} {abs(g):.1f}% to ${rev} million in fiscal {year}, {why}.",
        f"In fiscal {year}, {c.name} reported revenue of ${rev} million, {updown} "
        f"{abs(g):.1f}% from the prior year, {why}.",
    ))
    oi, ni, eps = money(f["operating_income"]), money(f["net_income"]), f"{f['eps']:.2f}"
    s2 = rng.choice((
        f"Operating income was ${oi} million and net income reached ${ni} million, "
        f"or ${eps} per share.",
        f"The company earned operating income of ${oi} million; net income came to "
        f"${ni} million (${eps} per share).",
    ))
    emp, ta = format_value("employees", f["employees"]), money(f["total_assets"])
    s3 = rng.choice((
        f"{c.name} ended the year with {emp} employees and total assets of ${ta} million.",
        f"Total assets stood at ${ta} million at year end, and the workforce numbered "
        f"{emp} employees.",
    ))
    return f"{s1} {s2} {s3}"


def render_report(rng: random.Random, c: Company, year: int, f: dict[str, float]) -> str:
    table = [f"| Metric | FY{year} | Unit |", "|---|---:|---|"]
    table += [f"| {label} | {format_value(key, f[key])} | {unit} |" for key, label, unit in METRICS]
    return "\n".join([
        f"# {c.name} — Fiscal {year} annual report",
        "",
        f"Sector: {c.sector} · Headquarters: {c.headquarters} · "
        f"Fiscal year ended December 31, {year}",
        "",
        narrative(rng, c, year, f),
        "",
        f"Outlook: management expects {rng.choice(OUTLOOKS)} in fiscal {year + 1}.",
        "",
        *table,
    ]) + "\n"


def generate_corpus(seed: int = 0) -> Corpus:
    """The whole corpus in memory (well under a second)."""
    rng = random.Random(seed)
    companies = make_companies(rng)
    documents: dict[str, str] = {}
    facts: dict[tuple[str, int], dict[str, float]] = {}
    for c in companies:  # sorted by slug, so the rng stream is fixed
        yearly = make_facts(rng, c)
        for year in YEARS:
            facts[(c.slug, year)] = yearly[year]
            documents[report_path(c.slug, year)] = render_report(rng, c, year, yearly[year])
    return Corpus(seed, dict(sorted(documents.items())), facts, companies)


# --- on disk ------------------------------------------------------------------------------

def manifest_of(corpus: Corpus) -> dict:
    return {"format": FORMAT_VERSION, "seed": corpus.seed, "companies": len(corpus.companies),
            "years": [YEARS[0], YEARS[-1]], "documents": len(corpus.documents),
            "sha256": corpus.sha256}


def write_corpus(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the reports and manifest.json under `out_dir`; return `out_dir`.

    Skipped when manifest.json already describes this corpus and every report exists.
    Reports left over from another seed are removed; the manifest is written last, so an
    interrupted write is redone next time.
    """
    out = Path(out_dir)
    corpus = generate_corpus(seed)
    manifest = manifest_of(corpus)
    manifest_path = out / "manifest.json"
    try:
        current = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current == manifest and all((out / p).is_file() for p in corpus.documents):
        return out
    manifest_path.unlink(missing_ok=True)
    for stale in sorted((out / "reports").glob("*/*.md")) if (out / "reports").is_dir() else []:
        if stale.relative_to(out).as_posix() not in corpus.documents:
            stale.unlink()
    for path, text in corpus.documents.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
    if (out / "reports").is_dir():
        for folder in sorted((out / "reports").iterdir()):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the FinQA-lite report corpus.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = write_corpus(args.out_dir, seed=args.seed)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    print(f"{manifest['documents']} reports under {out} (sha256 {manifest['sha256'][:16]}…)")


if __name__ == "__main__":
    main()
