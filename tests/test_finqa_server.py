"""FinQA-lite's tool server on loopback, seen through `HttpTool`: what the model sees.

A fake index stands in for `SearchIndex` (embedding a corpus is the search module's business
and its tests'); one test at the end uses the real index over a 3-report corpus when
`examples.finqa_lite.search` is importable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agentrft.tools.base import ToolCallRequest
from agentrft.tools.http import HttpTool
from examples.finqa_lite.server import ToolServer, create_app

TOKEN = "finqa-test-token-0123456789"
SECRET_TEXT = "TOP SECRET: outside the corpus"
LONG_TEXT = "".join(f"line {i}: net revenue rose {i}%.\n" for i in range(400))  # > 4000 chars
ACME_2023 = "# Acme Corp annual report FY2023\n\nRevenue: $1,234.5 million.\n"


@dataclass(frozen=True)
class FakeHit:
    path: str
    snippet: str
    score: float


class FakeIndex:
    """Same methods as SearchIndex; records the calls it gets."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def search(self, query: str, top_k: int = 5) -> list[FakeHit]:
        self.calls.append((query, top_k))
        hits = [FakeHit(f"reports/acme-corp/fy20{20 + i}.md", f"snippet {i} for {query}", 1 - i / 20)
                for i in range(10)]
        return hits[:top_k]


def fake_format(hits: list[FakeHit]) -> str:
    return "\n".join(f"{h.path} ({h.score:.2f}): {h.snippet}" for h in hits)


def make_corpus(root: Path) -> Path:
    """reports/{acme-corp,globex}/ plus an outside dir and symlinks that point at it."""
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET_TEXT)
    corpus = root / "corpus"
    (corpus / "reports" / "acme-corp").mkdir(parents=True)
    (corpus / "reports" / "globex").mkdir()
    (corpus / "reports" / "acme-corp" / "fy2023.md").write_text(ACME_2023)
    (corpus / "reports" / "acme-corp" / "fy2022.md").write_text("# Acme Corp FY2022\n")
    (corpus / "reports" / "globex" / "fy2023.md").write_text(LONG_TEXT)
    (corpus / "reports" / ".hidden.md").write_text("not listed")
    (corpus / "secret-at-corpus-root.md").write_text(SECRET_TEXT)  # corpus dir, not reports/
    os.symlink(outside / "secret.txt", corpus / "reports" / "acme-corp" / "leak.md")
    os.symlink(outside, corpus / "reports" / "evil")
    os.symlink(corpus / "reports" / "acme-corp" / "fy2023.md",
               corpus / "reports" / "globex" / "alias.md")  # inside: allowed
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("finqa"))


@pytest.fixture(scope="module")
def index() -> FakeIndex:
    return FakeIndex()


@pytest.fixture(scope="module")
def server(corpus, index):
    with ToolServer(corpus, token=TOKEN, index=index, format_hits=fake_format) as s:
        yield s


@pytest.fixture
async def tool(server):
    """tool("cat") -> an HttpTool with the right token; tool("cat", headers={}) without."""
    made: list[HttpTool] = []

    def make(name: str, headers: dict | None = None) -> HttpTool:
        made.append(HttpTool(name, server.url(name),
                             headers=server.headers if headers is None else headers,
                             max_retries=0, timeout_s=10))
        return made[-1]

    yield make
    for t in made:
        await t.aclose()


def call(name: str, arguments: dict | str) -> ToolCallRequest:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCallRequest(id="fc_1", call_id="call_1", name=name, arguments=args,
                           trace_id="trace_finqa", item={"question": "q"})


def wire(name: str, arguments: dict | str) -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": name,
            "arguments": args, "trace_id": "trace_finqa", "item": {}}


# -- reachability and auth -----------------------------------------------------------------

async def test_health_and_preflight_need_no_token(server, tool):
    assert httpx.get(server.url("health"), trust_env=False).json()["ok"] is True
    for name in ("search", "list", "cat"):
        resp = httpx.get(server.url(name), timeout=2, trust_env=False)  # no Authorization
        assert resp.status_code == 405
        await tool(name, headers={}).check()  # the agent's preflight: any answer will do


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-0000"}, {"Authorization": TOKEN},
    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"},
])
def test_every_tool_path_needs_the_bearer_token(server, headers):
    for name in ("search", "list", "cat"):
        resp = httpx.post(server.url(name), json=wire(name, {"path": "reports", "query": "x"}),
                          headers=headers, trust_env=False)
        assert resp.status_code == 401, (name, headers)
        assert resp.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in resp.text


def test_scheme_is_case_insensitive(server):
    resp = httpx.post(server.url("list"), json=wire("list", {"path": "reports"}),
                      headers={"Authorization": f"bearer {TOKEN}"}, trust_env=False)
    assert resp.status_code == 200


async def test_model_sees_401_without_or_with_wrong_token(tool):
    for headers in ({}, {"Authorization": "Bearer wrong-token-0000"}):
        outcome = await tool("cat", headers=headers).call(call("cat", {"path": "reports/acme-corp/fy2023.md"}))
        assert outcome.is_error and outcome.status_code == 401
        assert "401" in outcome.output and "bearer token" in outcome.output
        assert "Revenue" not in outcome.output


def test_create_app_refuses_empty_token(corpus):
    with pytest.raises(ValueError, match="token"):
        create_app(corpus, token="")


def test_create_app_refuses_a_dir_without_reports(tmp_path):
    with pytest.raises(ValueError, match="reports/"):
        create_app(tmp_path, token=TOKEN)


# -- list and cat ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["", "/", "reports", "reports/", "./reports", " reports\n"])
async def test_list_top_shows_companies(tool, path):
    outcome = await tool("list").call(call("list", {"path": path}))
    assert not outcome.is_error, outcome.output
    # hidden files, escaping symlinks and the rest of the corpus dir stay out of it
    assert outcome.output == "reports/acme-corp/\nreports/globex/"


async def test_list_company_shows_its_reports(tool):
    outcome = await tool("list").call(call("list", {"path": "reports/acme-corp"}))
    assert outcome.output == "reports/acme-corp/fy2022.md\nreports/acme-corp/fy2023.md"  # no leak.md
    outcome = await tool("list").call(call("list", {"path": "reports/globex/"}))
    assert outcome.output == "reports/globex/alias.md\nreports/globex/fy2023.md"


async def test_cat_returns_the_document(tool):
    outcome = await tool("cat").call(call("cat", {"path": "reports/acme-corp/fy2023.md"}))
    assert (outcome.is_error, outcome.status_code, outcome.output) == (False, 200, ACME_2023)
    alias = await tool("cat").call(call("cat", {"path": "reports/globex/alias.md"}))
    assert alias.output == ACME_2023  # a symlink that stays inside the corpus is fine


async def test_cat_output_is_capped(tool, corpus):
    outcome = await tool("cat").call(call("cat", {"path": "reports/globex/fy2023.md"}))
    assert not outcome.is_error
    more = len(LONG_TEXT) - 4000
    assert outcome.output == LONG_TEXT[:4000] + f"\n\n[truncated: {more} more characters]"
    with ToolServer(corpus, token=TOKEN, index=FakeIndex(), cat_max_chars=50) as small:
        resp = httpx.post(small.url("cat"), json=wire("cat", {"path": "reports/acme-corp/fy2023.md"}),
                          headers=small.headers, trust_env=False)
        assert resp.json()["output"] == ACME_2023[:50] + f"\n\n[truncated: {len(ACME_2023) - 50} more characters]"


@pytest.mark.parametrize("name,path", [
    ("cat", "reports/acme-corp/fy2031.md"), ("cat", "reports/initech/fy2023.md"),
    ("list", "reports/initech"), ("cat", "acme-corp/fy2023.md"), ("cat", "reports/.hidden.md"),
    ("cat", "secret-at-corpus-root.md"), ("cat", "reports/" + "x" * 300),
])
async def test_unknown_path_is_a_404_the_model_sees(tool, name, path):
    outcome = await tool(name).call(call(name, {"path": path}))
    assert outcome.is_error and outcome.status_code == 404
    assert outcome.output.startswith("Error 404: no such path")
    assert SECRET_TEXT not in outcome.output and "not listed" not in outcome.output


async def test_wrong_kind_of_path_says_which_tool_to_use(tool):
    outcome = await tool("cat").call(call("cat", {"path": "reports/acme-corp"}))
    assert outcome.status_code == 400 and "is a directory" in outcome.output and "list" in outcome.output
    outcome = await tool("list").call(call("list", {"path": "reports/acme-corp/fy2023.md"}))
    assert outcome.status_code == 400 and "is a file" in outcome.output and "cat" in outcome.output


TRAVERSALS = [
    "../", "..", "../outside/secret.txt", "/etc/passwd", "reports/../../x",
    "reports/acme-corp/../../secret-at-corpus-root.md", "reports/..", "/reports/acme-corp/fy2023.md",
    "%2e%2e/%2e%2e/outside/secret.txt", "..%2f..%2foutside%2fsecret.txt",
    "reports%2f..%2f..%2fsecret-at-corpus-root.md", "%252e%252e%252f", "%2Fetc%2Fpasswd",
    "reports\\..\\..\\secret-at-corpus-root.md", "reports/acme-corp/fy2023.md\x00.txt",
    "reports/acme-corp/leak.md",  # symlink to a file outside
    "reports/evil", "reports/evil/secret.txt",  # symlink to a dir outside
    "~/.ssh/id_rsa",
]


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_path_traversal_is_refused(tool, path):
    for name in ("cat", "list"):
        outcome = await tool(name).call(call(name, {"path": path}))
        assert outcome.is_error and outcome.status_code == 400, (name, outcome)
        assert "path outside the corpus" in outcome.output
        assert SECRET_TEXT not in outcome.output


def test_json_escaped_traversal_is_refused(server):
    # "\u002e\u002e/" is "../" once the arguments string is parsed
    body = wire("cat", '{"path": "\\u002e\\u002e/outside/secret.txt"}')
    resp = httpx.post(server.url("cat"), json=body, headers=server.headers, trust_env=False)
    assert resp.status_code == 400 and "path outside the corpus" in resp.text


# -- bad arguments -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,arguments,expect", [
    ("cat", "not json", "not valid JSON"),
    ("cat", "{}", 'missing "path"'),
    ("cat", {"path": 3}, '"path" must be a string, got a number'),
    ("cat", {"path": None}, "got null"),
    ("cat", "[]", "must be a JSON object, got an array"),
    ("cat", {"path": "reports", "offset": 3}, "unknown argument(s) offset"),
    ("list", {"dir": "reports"}, "unknown argument(s) dir"),
    ("search", {}, 'missing "query"'),
    ("search", {"query": ["revenue"]}, '"query" must be a string'),
    ("search", {"query": "   "}, '"query" is empty'),
    ("search", {"query": "revenue", "top_k": 0}, '"top_k" must be an integer from 1 to 10, got 0'),
    ("search", {"query": "revenue", "top_k": 11}, "got 11"),
    ("search", {"query": "revenue", "top_k": "5"}, 'got "5"'),
    ("search", {"query": "revenue", "top_k": True}, "got true"),
    ("search", {"query": "revenue", "top_k": 2.5}, "got 2.5"),
])
async def test_bad_arguments_are_a_400_with_usage(tool, index, name, arguments, expect):
    calls_before = len(index.calls)
    outcome = await tool(name).call(call(name, arguments))
    assert outcome.is_error and outcome.status_code == 400
    assert expect in outcome.output
    assert f"{name} needs {{" in outcome.output  # the usage line the model can learn from
    assert len(index.calls) == calls_before


def test_malformed_request_bodies_are_a_400(server):
    for content in (b"not json", b"[]", b'{"type": "function_call"}'):
        resp = httpx.post(server.url("cat"), content=content, headers=server.headers,
                          trust_env=False)
        assert resp.status_code == 400, content


def test_body_over_1mb_is_a_413(server):
    big = wire("search", {"query": "x" * 1_100_000})
    resp = httpx.post(server.url("search"), json=big, headers=server.headers, trust_env=False)
    assert resp.status_code == 413

    def chunks():  # no Content-Length: the cap must hold while reading
        for _ in range(11):
            yield b"x" * 100_000

    resp = httpx.post(server.url("search"), content=chunks(), headers=server.headers,
                      trust_env=False)
    assert resp.status_code == 413


# -- search ------------------------------------------------------------------------------------

async def test_search_output_is_the_formatted_hits(tool, index):
    outcome = await tool("search").call(call("search", {"query": "acme revenue 2023"}))
    assert not outcome.is_error
    assert index.calls[-1] == ("acme revenue 2023", 5)  # default top_k
    assert outcome.output == fake_format(index.search("acme revenue 2023", 5))
    outcome = await tool("search").call(call("search", {"query": "q", "top_k": 2}))
    assert outcome.output.splitlines() == ["reports/acme-corp/fy2020.md (1.00): snippet 0 for q",
                                           "reports/acme-corp/fy2021.md (0.95): snippet 1 for q"]


async def test_broken_index_is_an_infra_failure_not_a_model_error(corpus):
    from agentrft.errors import ToolInfraFailure

    class Broken:
        def search(self, query, top_k=5):
            raise RuntimeError("index file corrupt")

    with ToolServer(corpus, index=Broken(), format_hits=fake_format) as s:
        tool = HttpTool("search", s.url("search"), headers=s.headers, max_retries=0)
        with pytest.raises(ToolInfraFailure, match="500"):
            await tool.call(call("search", {"query": "x"}))
        await tool.aclose()


# -- runner ------------------------------------------------------------------------------------

def test_tool_server_urls_declarations_and_clean_shutdown(corpus):
    server = ToolServer(corpus, index=FakeIndex(), format_hits=fake_format)
    assert len(server.token) >= 16  # a random token when none is given
    with server:
        assert server.url("cat") == f"http://127.0.0.1:{server.port}/cat"
        decl = {d["name"]: d for d in server.declarations()}
        assert sorted(decl) == ["cat", "list", "search"]
        assert decl["list"]["headers"] == {"Authorization": f"Bearer {server.token}"}
        resp = httpx.post(decl["list"]["server_url"], json=wire("list", {"path": ""}),
                          headers=decl["list"]["headers"], trust_env=False)
        assert resp.json() == {"output": "reports/acme-corp/\nreports/globex/"}
    start = time.monotonic()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url("health"), timeout=1, trust_env=False)
    assert time.monotonic() - start < 1


# -- the real index ----------------------------------------------------------------------------

async def test_real_index_over_a_tiny_corpus(tmp_path):
    import examples.finqa_lite.search  # noqa: F401  (an import error fails, never skips)
    from examples.finqa_lite import corpus as corpus_mod
    generated = corpus_mod.generate_corpus(seed=0)
    picked = [(c, 2015 + i) for i, c in enumerate(generated.companies[:3])]
    corpus = tmp_path / "corpus"
    for company, year in picked:
        rel = corpus_mod.report_path(company.slug, year)
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(generated.documents[rel])
    company, year = picked[1]
    want = corpus_mod.report_path(company.slug, year)
    with ToolServer(corpus, cache_dir=tmp_path / "cache") as server:
        tool = HttpTool("search", server.url("search"), headers=server.headers, max_retries=0)
        outcome = await tool.call(call("search", {"query": f"{company.name} net income {year}",
                                                  "top_k": 2}))
        await tool.aclose()
    assert not outcome.is_error, outcome.output
    lines = outcome.output.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{want}: ")  # format_results: "path: snippet"
    assert "Net income" in lines[0] or "net income" in lines[0]


# -- the default index: built lazily, once ------------------------------------------------------

def fake_search_module(built: list):
    import types

    class RecordingIndex(FakeIndex):
        def __init__(self, corpus_dir, cache_dir):
            super().__init__()
            time.sleep(0.1)  # a slow build, so concurrent first searches overlap it
            built.append((Path(corpus_dir), Path(cache_dir)))

    module = types.ModuleType("examples.finqa_lite.search")
    module.SearchIndex = RecordingIndex
    module.format_results = fake_format
    return module


async def test_default_index_is_built_once_on_first_search(corpus, monkeypatch):
    import asyncio

    built: list = []
    monkeypatch.setitem(sys.modules, "examples.finqa_lite.search",
                        fake_search_module(built))
    with ToolServer(corpus) as server:
        assert built == []  # list and cat do not need the index
        health = httpx.get(server.url("health"), trust_env=False).json()
        assert health["index_ready"] is False
        tool = HttpTool("search", server.url("search"), headers=server.headers, max_retries=0)
        outcomes = await asyncio.gather(*(tool.call(call("search", {"query": f"q{i}"}))
                                          for i in range(4)))
        await tool.aclose()
        assert httpx.get(server.url("health"), trust_env=False).json()["index_ready"] is True
    assert built == [(corpus, corpus.parent / "cache")]
    assert all(not o.is_error and "snippet 0 for q" in o.output for o in outcomes)


def test_build_index_at_start(corpus, tmp_path, monkeypatch):
    built: list = []
    monkeypatch.setitem(sys.modules, "examples.finqa_lite.search",
                        fake_search_module(built))
    with ToolServer(corpus, cache_dir=tmp_path / "c", build_index=True):
        assert built == [(corpus, tmp_path / "c")]


# -- the generated corpus ----------------------------------------------------------------------

def test_serves_the_generated_corpus(tmp_path):
    from examples.finqa_lite import corpus as corpus_mod
    corpus_dir = corpus_mod.write_corpus(tmp_path / "corpus", seed=0)
    generated = corpus_mod.generate_corpus(seed=0)
    slug, year = generated.companies[0].slug, corpus_mod.YEARS[0]
    with ToolServer(corpus_dir, index=FakeIndex(), format_hits=fake_format) as server:
        def post(name, args):
            resp = httpx.post(server.url(name), json=wire(name, args), headers=server.headers,
                              trust_env=False)
            assert resp.status_code == 200, resp.text
            return resp.json()["output"]

        top = post("list", {"path": "reports"}).splitlines()
        assert top == [f"reports/{c.slug}/" for c in generated.companies]  # no manifest.json
        reports = post("list", {"path": top[0]}).splitlines()
        assert reports == sorted(corpus_mod.report_path(slug, y) for y in corpus_mod.YEARS)
        path = corpus_mod.report_path(slug, year)
        assert post("cat", {"path": path}) == generated.documents[path]  # short: never capped
