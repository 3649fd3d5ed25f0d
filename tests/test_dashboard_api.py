"""The dashboard's JSON and pages in process (TestClient), over synthetic run dirs; the
rollout index on its own, including a file that grows, tears and is rewritten."""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from agentrft.analysis.traces import RolloutIndex, quartiles, tool_call_distribution
from agentrft.server import create_app
from agentrft.web.middleware import SESSION_COOKIE
from tests.dashboard_fixtures import synthesize_job

KEY = "sk-dash"


@pytest.fixture
def job(store):
    return synthesize_job(store, steps=12, rows=3, group=4, eval_every=4, eval_samples=2)


@pytest.fixture
def client(store):
    with TestClient(create_app(store)) as c:
        yield c


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_pages_and_plotly_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/dashboard/static/plotly.min.js" in page.text and "http" not in page.text.split("<body>")[0]
    js = client.get("/dashboard/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000 and b"plotly" in js.content[:2000]
    assert client.get("/dashboard/static/app.js").status_code == 200
    assert client.get("/dashboard/static/style.css").status_code == 200
    assert client.get("/dashboard/static/job.json").status_code == 404
    assert client.get("/dashboard/static/..%2Fapp.py").status_code == 404


def test_jobs_and_job_page_data(client, job):
    job_id, run_dir = job
    jobs = client.get("/dashboard/api/jobs").json()["data"]
    assert [j["id"] for j in jobs] == [job_id]
    assert (jobs[0]["status"], jobs[0]["step"], jobs[0]["total_steps"]) == ("succeeded", 12, 12)
    assert "jumped" in jobs[0]["warning"]

    data = client.get(f"/dashboard/api/jobs/{job_id}").json()
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert data["metrics"] == metrics and data["total_steps"] == 12
    assert [c["step"] for c in data["checkpoints"]] == [4, 8, 12]
    assert data["warnings"][0]["data"]["kind"] == "valid_reward_jump"
    assert len(data["events"]) == 13 + 1  # 13 metrics events and the warning

    # the tool-call distribution, recomputed here from the raw file
    rollouts = read_jsonl(run_dir / "rollouts.jsonl")
    dist = data["tool_calls"]
    assert dist["steps"] == list(range(1, 13))
    for k, step in enumerate(dist["steps"]):
        calls = sorted(len(r["tool_calls"]) for r in rollouts
                       if r["step"] == step and r["phase"] == "train")
        assert len(calls) == 12
        assert (dist["min"][k], dist["max"][k]) == (calls[0], calls[-1])
        assert dist["mean"][k] == pytest.approx(sum(calls) / 12)
        search = sorted(sum(c["name"] == "search" for c in r["tool_calls"]) for r in rollouts
                        if r["step"] == step and r["phase"] == "train")
        assert dist["per_tool"]["search"]["mean"][k] == pytest.approx(sum(search) / 12)
        assert dist["per_tool"]["search"]["max"][k] == search[-1]


def test_steps_rows_and_traces(client, job):
    job_id, run_dir = job
    steps = client.get(f"/dashboard/api/jobs/{job_id}/steps").json()["data"]
    evals = [s["step"] for s in steps if s["phase"] == "eval"]
    assert evals == [0, 4, 8, 12]
    assert {s["rollouts"] for s in steps if s["phase"] == "train"} == {12}

    rows = client.get(f"/dashboard/api/jobs/{job_id}/rows", params={"step": 4, "phase": "eval"}).json()
    assert [r["row_index"] for r in rows["data"]] == [0, 1, 2]
    assert rows["data"][1]["question"].startswith("Q1:")

    trace = client.get(f"/dashboard/api/jobs/{job_id}/trace",
                       params={"step": 4, "phase": "eval", "row": 1}).json()
    expected = [r for r in read_jsonl(run_dir / "rollouts.jsonl")
                if (r["step"], r["phase"], r["row_index"]) == (4, "eval", 1)]
    assert trace["rollouts"] == expected and len(expected) == 2
    one = client.get(f"/dashboard/api/jobs/{job_id}/trace",
                     params={"trace_id": expected[1]["trace_id"]}).json()
    assert one["rollouts"] == [expected[1]] and (one["step"], one["phase"], one["row_index"]) == (4, "eval", 1)


@pytest.mark.parametrize("path, status", [
    ("/dashboard/api/jobs/ftjob-nope", 404),
    ("/dashboard/api/jobs/{job}/rows?step=-1", 400),
    ("/dashboard/api/jobs/{job}/rows?step=x", 400),
    ("/dashboard/api/jobs/{job}/rows?step=999", 404),
    ("/dashboard/api/jobs/{job}/rows?step=1&phase=bogus", 400),
    ("/dashboard/api/jobs/{job}/trace?step=1", 400),
    ("/dashboard/api/jobs/{job}/trace?step=1&row=99999", 404),
    ("/dashboard/api/jobs/{job}/trace?trace_id=nope", 404),
    ("/dashboard/api/jobs/{job}/trace?step=99999999999999999999999&row=1", 404),
    ("/dashboard/api/jobs?limit=0", 400),
])
def test_bad_requests_are_4xx_with_a_message(client, job, path, status):
    r = client.get(path.replace("{job}", job[0]))
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_job_without_a_run_dir_yet(client, store):
    queued = store.create_job({"model": "m", "training_file": "f", "method": {}})
    data = client.get(f"/dashboard/api/jobs/{queued['id']}").json()
    assert data["metrics"] == [] and data["tool_calls"]["steps"] == []
    assert client.get(f"/dashboard/api/jobs/{queued['id']}/steps").json()["data"] == []


def test_api_key_guards_the_data_and_a_cookie_opens_it(store, job):
    with TestClient(create_app(store, api_keys=[KEY])) as c:
        assert c.get("/").status_code == 200  # the page holds no data
        assert c.get("/dashboard/static/app.js").status_code == 200
        assert c.get("/dashboard/api/jobs").status_code == 401
        assert c.get("/dashboard/api/session").status_code == 401
        assert c.get("/dashboard/api/jobs", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.post("/dashboard/login", data={"key": "wrong"}).status_code == 401
        assert SESSION_COOKIE not in c.cookies
        c.cookies.set(SESSION_COOKIE, KEY)  # the key itself is not a session
        assert c.get("/dashboard/api/jobs").status_code == 401
        c.cookies.clear()

        r = c.post("/dashboard/login", data={"key": KEY}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and KEY not in cookie
        assert c.get("/dashboard/api/session").json() == {"auth_required": True, "authorized": True}
        assert c.get(f"/dashboard/api/jobs/{job[0]}").status_code == 200
        assert c.get("/v1/fine_tuning/jobs").status_code == 401  # the cookie is for the dashboard only
        c.post("/dashboard/logout")
        assert c.get("/dashboard/api/jobs").status_code == 401
    with TestClient(create_app(store, api_keys=[KEY])) as restarted:  # a new secret
        restarted.cookies.set(SESSION_COOKIE, r.cookies[SESSION_COOKIE])
        assert restarted.get("/dashboard/api/jobs").status_code == 401


def test_no_keys_means_open_dashboard(client, job):
    assert client.get("/dashboard/api/session").json() == {"auth_required": False, "authorized": True}


# --- the index -------------------------------------------------------------------------------


def line(step, phase, row, calls=(), reward=0.5, text="ans", trace=None):
    return json.dumps({"step": step, "phase": phase, "row_index": row, "reward": reward,
                       "trace_id": trace or f"t{step}{phase}{row}{len(calls)}", "final_text": text,
                       "tool_calls": [{"name": n} for n in calls], "completion_tokens": 3}) + "\n"


def test_index_grows_incrementally_skips_torn_lines_and_reindexes_a_rewritten_file(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    index = RolloutIndex(path)
    assert index.refresh() == 0 and index.steps() == []
    path.write_text(line(0, "eval", 0) + line(1, "train", 0, ["a", "b"]) + '{"torn')
    assert index.refresh() == 2
    with path.open("a") as f:  # the torn line finished, then a broken one, then a half line
        f.write(' line"\n' + "not json\n" + line(1, "train", 1, ["a"])[:10])
    assert index.refresh() == 0
    with path.open("a") as f:
        f.write(line(1, "train", 1, ["a"])[10:])
    assert index.refresh() == 1
    assert [(s.step, s.phase, s.rollouts, s.rows) for s in index.steps()] == [
        (0, "eval", 1, 1), (1, "train", 2, 2)]
    assert [r["row_index"] for r in index.records(1, "train")] == [0, 1]
    assert index.records(1, "train", row=1)[0]["tool_calls"] == [{"name": "a"}]

    # the trainer's truncate_after writes a new file and renames it over the old one
    tmp = tmp_path / "rollouts.tmp"
    tmp.write_text(line(0, "eval", 0))
    os.replace(tmp, path)
    assert index.refresh() == 1
    assert [(s.step, s.phase) for s in index.steps()] == [(0, "eval")]


def test_quartiles_and_distribution_by_hand(tmp_path):
    assert quartiles([3.0, 0.0, 2.0, 1.0]) == {"min": 0.0, "q1": 0.75, "median": 1.5, "q3": 2.25,
                                              "max": 3.0, "mean": 1.5}
    assert quartiles([2.0]) == {"min": 2.0, "q1": 2.0, "median": 2.0, "q3": 2.0, "max": 2.0,
                                "mean": 2.0}
    path = tmp_path / "rollouts.jsonl"
    path.write_text(line(0, "eval", 0, ["s"] * 5)  # eval rollouts stay out of the train chart
                    + line(1, "train", 0, []) + line(1, "train", 0, ["s"])
                    + line(1, "train", 1, ["s", "c", "s"], trace="x") + line(1, "train", 1, ["c", "c"], trace="y")
                    + line(2, "train", 0, ["c"]))
    index = RolloutIndex(path)
    index.refresh()
    d = tool_call_distribution(index)
    # step 1: calls 0, 1, 3, 2 → sorted 0 1 2 3; search 1+2 = 3, cat 1+2 = 3 over 4 rollouts
    assert d["steps"] == [1, 2]
    assert (d["min"], d["q1"], d["median"], d["q3"], d["max"]) == (
        [0.0, 1.0], [0.75, 1.0], [1.5, 1.0], [2.25, 1.0], [3.0, 1.0])
    assert d["mean"] == [1.5, 1.0]
    # per tool, rollouts without the tool count 0: step 1 c → 0 0 1 2, s → 0 1 2 0; step 2 c 1, s 0
    assert d["per_tool"]["c"] == {"min": [0.0, 1.0], "q1": [0.0, 1.0], "median": [0.5, 1.0],
                                  "q3": [1.25, 1.0], "max": [2.0, 1.0], "mean": [0.75, 1.0]}
    assert d["per_tool"]["s"]["median"] == [0.5, 0.0] and d["per_tool"]["s"]["mean"] == [0.75, 0.0]


def test_no_query_makes_a_500(store, job):
    """Arbitrary values for every parameter of every dashboard route: 2xx or 4xx, never 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    job_id = job[0]
    text = st.one_of(st.text(max_size=30), st.integers(-2**70, 2**70).map(str),
                     st.sampled_from(["0", "1", "4", "train", "eval", "", "-1", "1e3", "nan",
                                      "trace_eval_4_1_0", "%00", "../.."]))
    routes = st.sampled_from(["/jobs/{j}", "/jobs/{j}/steps", "/jobs/{j}/rows", "/jobs/{j}/trace",
                              "/jobs/{j}/compare",
                              "/jobs"])
    jobs = st.one_of(st.just(job_id), st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s))
    names = ["step", "phase", "row", "trace_id", "limit", "a", "b"]
    params = st.dictionaries(st.sampled_from(names), text, max_size=4)

    with TestClient(create_app(store)) as client:
        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(routes, jobs, params)
        def check(route, j, query):
            r = client.get("/dashboard/api" + route.replace("{j}", quote(j, safe="")), params=query)
            assert r.status_code < 500, (route, j, query, r.text)
            if r.status_code >= 400:
                assert r.json()["error"]["message"]

        check()


def test_every_dashboard_file_is_package_data():
    """A non-editable install ships only what pyproject's package-data names."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["agentrft.server"]
    files = [p.relative_to(root / "agentrft" / "server").as_posix()
             for p in (root / "agentrft" / "server" / "dashboard").iterdir()]
    assert sorted(files) == ["dashboard/app.js", "dashboard/index.html", "dashboard/style.css"]
    for f in files:
        assert any(fnmatch.fnmatch(f, g) for g in globs), f


def test_compare_endpoint_by_hand(client, store):
    """The hand-made evals of test_analysis_report.py as eval steps 0 and 2 of a job's run."""
    from tests.test_analysis_report import BASELINE, FINAL

    job = store.create_job({"model": "m", "training_file": "f", "method": {}})
    run = store.data_dir / "runs" / job["id"]
    run.mkdir(parents=True)
    lines = ([{"step": 0, "phase": "eval", **r} for r in BASELINE]
             + [{"step": 1, "phase": "train", **r} for r in FINAL[:2]]
             + [{"step": 2, "phase": "eval", **r} for r in FINAL])
    (run / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    c = client.get(f"/dashboard/api/jobs/{job['id']}/compare").json()
    assert (c["a"], c["b"], c["evals"]) == (0, 2, [0, 2])
    # rows: 0 → (Δcalls −1, Δreward +0.5), 1 → (+2, −0.5), 2 → (−1, 0), 3 → (0, +0.25)
    assert [(r["row_index"], r["d_calls"], r["d_reward"], r["quadrant"]) for r in c["per_row"]] == [
        (0, -1.0, 0.5, "better_fewer"), (1, 2.0, -0.5, "worse_more"), (2, -1.0, 0.0, "unchanged"),
        (3, 0.0, 0.25, "better_fewer")]
    assert c["quadrants"] == {"better_fewer": 2, "better_more": 0, "worse_fewer": 0,
                              "worse_more": 1, "unchanged": 1}
    assert (c["baseline"]["mean_reward"], c["final"]["mean_reward"]) == (0.4375, 0.5)
    assert (c["baseline"]["repeat_bigrams"], c["final"]["repeat_bigrams.search"]) == (3, 3)
    assert c["top_examples"]["better_fewer"][0]["final_answer"] == "42"
    same = client.get(f"/dashboard/api/jobs/{job['id']}/compare", params={"a": 2, "b": 2}).json()
    assert same["quadrants"]["unchanged"] == 4
    missing = client.get(f"/dashboard/api/jobs/{job['id']}/compare", params={"b": 1})
    assert missing.status_code == 404 and "evals at steps [0, 2]" in missing.json()["error"]["message"]
    empty = store.create_job({"model": "m", "training_file": "f", "method": {}})
    assert client.get(f"/dashboard/api/jobs/{empty['id']}/compare").status_code == 404


def test_index_cache_survives_a_restart_and_is_dropped_when_the_file_changed(tmp_path, monkeypatch):
    from agentrft.analysis import traces

    monkeypatch.setattr(RolloutIndex, "SAVE_EVERY", 2)
    path, cache = tmp_path / "rollouts.jsonl", tmp_path / "cache" / "idx.json"
    path.write_text("".join(line(s, "train", r, ["a"] * r) for s in (1, 2) for r in range(3)))
    first = RolloutIndex(path, cache=cache)
    assert first.refresh() == 6 and cache.is_file()

    parsed = []
    real_entry = traces._entry
    monkeypatch.setattr(traces, "_entry", lambda offset, raw: parsed.append(offset) or real_entry(offset, raw))
    with path.open("a") as f:
        f.write(line(3, "eval", 0, ["b"]))
    second = RolloutIndex(path, cache=cache)
    assert second.refresh() == 1 and len(parsed) == 1  # only the appended line was read
    assert second.entries[:6] == first.entries and second.steps()[-1].step == 3
    assert second.records(2, "train", row=2)[0]["tool_calls"] == [{"name": "a"}] * 2

    parsed.clear()  # the same file changed in place before the cached offset: index again
    text = path.read_text()
    with path.open("r+") as f:
        f.write(text.replace('"reward": 0.5', '"reward": 0.7', 1))
    third = RolloutIndex(path, cache=cache)
    assert third.refresh() == 7 and len(parsed) == 7 and third.entries[0].reward == 0.7

    parsed.clear()  # a new file under the same name (the trainer's rewrite): index again
    tmp = tmp_path / "new.jsonl"
    tmp.write_text(line(0, "eval", 0))
    os.replace(tmp, path)
    fourth = RolloutIndex(path, cache=cache)
    assert fourth.refresh() == 1 and [(s.step, s.phase) for s in fourth.steps()] == [(0, "eval")]
    cache.write_text("{not json")  # a broken cache is ignored
    assert RolloutIndex(path, cache=cache).refresh() == 1
