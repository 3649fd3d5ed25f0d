"""Judge model names routed to OpenAI-compatible servers (`--judge-models`, `--judge-base-url`):
a `score_model` grader copied from OpenAI (`"model": "gpt-4.1-2025-04-14"`) runs through
graders/run against a tiny judge server on loopback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi import FastAPI, Request
from openai import BadRequestError, OpenAI

from agentrft.cli import main
from agentrft.errors import SpecError
from agentrft.graders import judge_routes
from agentrft.loopback import LoopbackServer
from agentrft.server import create_app
from tests.serving_fixtures import ROOT, free_port, stop_process, wait_healthy

KEY_ENV = "AGENTRFT_TEST_JUDGE_KEY"


def grader(model: str) -> dict:
    return {"type": "score_model", "name": "judge", "model": model,
            "input": [{"role": "system", "content": "Grade the answer 0 to 1."},
                      {"role": "user", "content": "Answer: {{sample.output_text}}"}]}


class Judge(LoopbackServer):
    """An OpenAI-compatible chat server answering `{"result": 0.9}`; records each request."""

    def __init__(self):
        self.seen: list[dict] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.seen.append({"body": body, "auth": request.headers.get("authorization")})
            return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                    "model": body["model"], "choices": [{
                        "index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": '{"result": 0.9}'}}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}

        super().__init__(app, name="judge")


@pytest.fixture
def judge():
    with Judge() as server:
        yield server


@pytest.fixture(autouse=True)
def no_routes(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv(judge_routes.ENV, raising=False)
    judge_routes.install(judge_routes.JudgeRoutes())
    yield
    judge_routes.install(judge_routes.JudgeRoutes())


def write_routes(tmp_path, routes: dict, suffix=".yaml"):
    path = tmp_path / f"judges{suffix}"
    path.write_text(json.dumps(routes))  # JSON is YAML too
    return path


def test_exact_names_win_over_patterns_and_patterns_go_in_order(tmp_path):
    routes = judge_routes.load_routes(write_routes(tmp_path, {
        "gpt-*": {"base_url": "http://a:1/v1"},
        "gpt-4.1-*": {"base_url": "http://b:1/v1"},
        "gpt-4.1-2025-04-14": {"base_url": "http://c:1/v1", "api_key_env": "K"},
    }), base_url="http://fallback:1/v1")
    assert routes.match("gpt-4.1-2025-04-14")[1].base_url == "http://c:1/v1"
    assert routes.match("gpt-4.1-mini")[1].base_url == "http://a:1/v1"  # first pattern wins
    assert routes.match("o3")[0] == "*" and routes.match("o3")[1].base_url == "http://fallback:1/v1"
    assert judge_routes.load_routes(None).match("gpt-4o") is None


@pytest.mark.parametrize("content, words", [
    ({"gpt-*": {"base_url": "localhost:8000"}}, "gpt-*: base_url"),
    ({"gpt-*": {"base_url": "http://x/v1", "key": "sk-inline"}}, "unknown key 'key'"),
    ({"gpt-*": "http://x/v1"}, "gpt-*"),
    (["gpt-*"], "expected a mapping"),
])
def test_bad_route_files_name_the_entry(tmp_path, content, words):
    with pytest.raises(SpecError) as e:
        judge_routes.load_routes(write_routes(tmp_path, content))
    assert words in str(e.value) and "judges.yaml" in str(e.value)


def test_cli_option_errors(tmp_path, capsys):
    g = tmp_path / "g.json"
    g.write_text(json.dumps(grader("gpt-4o")))
    assert main(["graders", "validate", "--grader", str(g), "--judge-api-key-env", "X"]) == 2
    assert "--judge-api-key-env needs --judge-base-url" in capsys.readouterr().err
    assert main(["graders", "validate", "--grader", str(g), "--judge-base-url", "nope"]) == 2
    assert "--judge-base-url" in capsys.readouterr().err


def test_a_routed_openai_name_runs_through_graders_run(tmp_path, judge, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-judge-key-123")
    judge_routes.install(judge_routes.load_routes(write_routes(tmp_path, {
        "gpt-4.1-2025-04-14": {"base_url": judge.url("/v1"), "api_key_env": KEY_ENV}})))
    from agentrft.jobs.store import JobStore

    store = JobStore(tmp_path / "data")
    try:
        with LoopbackServer(create_app(store), name="jobs") as api:
            client = OpenAI(base_url=api.url("/v1"), api_key="unused", max_retries=0)
            out = client.fine_tuning.alpha.graders.run(
                grader=grader("gpt-4.1-2025-04-14"), model_sample="42", item={},
                extra_body={"trace_id": "trace_judge_1"})
            with pytest.raises(BadRequestError) as e:  # an unmapped name: how to map it
                client.fine_tuning.alpha.graders.run(grader=grader("gpt-5"), model_sample="42")
    finally:
        store.close()
    assert out.reward == pytest.approx(0.9) and out.metadata.sampled_model_name == "gpt-4.1-2025-04-14"
    assert out.metadata.token_usage == 25
    seen = judge.seen[0]
    assert seen["body"]["model"] == "gpt-4.1-2025-04-14"
    assert seen["body"]["messages"][1]["content"] == "Answer: 42"
    assert seen["auth"] == "Bearer sk-judge-key-123"
    assert e.value.body["param"] == "grader.model"
    assert "--judge-models" in e.value.body["message"] and "gpt-5" in e.value.body["message"]


def test_a_route_whose_key_variable_is_unset_says_so(judge, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    judge_routes.install(judge_routes.load_routes(base_url=judge.url("/v1"), api_key_env=KEY_ENV))
    from agentrft.graders.api import validate_grader

    with pytest.raises(SpecError) as e:
        validate_grader(grader("gpt-4o"))
    assert KEY_ENV in str(e.value) and "--judge-base-url" in str(e.value)


def test_graders_run_cli_with_judge_base_url(tmp_path, judge, capsys):
    g = tmp_path / "g.json"
    g.write_text(json.dumps(grader("gpt-4o-mini")))
    assert main(["graders", "run", "--grader", str(g), "--sample-text", "7",
                 "--judge-base-url", judge.url("/v1")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reward"] == pytest.approx(0.9) and judge.seen[0]["body"]["model"] == "gpt-4o-mini"


def test_server_judge_models_option_reaches_graders_run(tmp_path, judge):
    """`agentrft server --judge-models FILE` in a real subprocess."""
    routes = write_routes(tmp_path, {"gpt-*": {"base_url": judge.url("/v1")}}, suffix=".json")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentrft.cli", "server", "--port", str(port),
         "--data-dir", str(tmp_path / "data"), "--judge-models", str(routes)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"))
    try:
        assert wait_healthy(port, proc, timeout_s=60), (tmp_path / "server.log").read_text()
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        out = client.fine_tuning.alpha.graders.run(grader=grader("gpt-4.1-2025-04-14"),
                                                   model_sample="42")
    finally:
        stop_process(proc)
    assert out.reward == pytest.approx(0.9)
    assert judge.seen[0]["body"]["model"] == "gpt-4.1-2025-04-14"
