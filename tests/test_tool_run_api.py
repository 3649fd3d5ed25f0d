"""`POST /v1/fine_tuning/alpha/tool/run` on the jobs API (real server on loopback) against a real
tool server on loopback: the training rules (retries, 4xx as output, redaction) hold."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.responses import Response

from agentrft.loopback import LoopbackServer
from agentrft.server import create_app
from tests.tool_server import LoopbackToolServer

SECRET = "Bearer sk-tool-secret-123456"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from agentrft.jobs.store import JobStore

    store = JobStore(tmp_path_factory.mktemp("data"))
    with LoopbackServer(create_app(store), name="jobs") as server:
        yield lambda body: httpx.post(server.url("/v1/fine_tuning/alpha/tool/run"), json=body,
                                      timeout=60)
    store.close()


@pytest.fixture(scope="module")
def tools():
    with LoopbackToolServer(lookup={"revenue": "42"}) as server:
        yield server


def call(tools, path: str, arguments: dict, **extra) -> dict:
    """The body OpenAI's helper sends."""
    return {"type": "function_call", "name": path.strip("/"), "server_url": tools.url(path),
            "headers": {"Authorization": SECRET}, "arguments": json.dumps(arguments),
            "item": {"question": "q1"}, "trace_id": "trace_run_1", "id": "fc_1",
            "call_id": "call_1", **extra}


def test_output_and_the_request_the_tool_saw(api, tools):
    r = api(call(tools, "/lookup", {"key": "revenue"}))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["output"] == "42" and out["status"] == "ok" and out["http_status"] == 200
    assert out["retries"] == 0 and out["error"] is None and out["latency_ms"] > 0
    assert (out["trace_id"], out["call_id"], out["id"]) == ("trace_run_1", "call_1", "fc_1")
    seen = tools.requests_for("/lookup")[-1]
    assert seen.json == {"type": "function_call", "id": "fc_1", "call_id": "call_1",
                         "name": "lookup", "arguments": '{"key": "revenue"}',
                         "trace_id": "trace_run_1", "item": {"question": "q1"}}
    assert seen.headers["authorization"] == SECRET
    assert SECRET not in r.text


def test_a_4xx_is_the_output_the_model_would_see(api, tools):
    out = api(call(tools, "/lookup", {"key": "nope"})).json()
    assert out["status"] == "tool_error" and out["http_status"] == 400
    assert out["output"].startswith("Error 400: unknown key 'nope'") and out["retries"] == 0


def test_a_5xx_is_retried_then_the_answer_comes_back(api, tools):
    def once_down(body, request):
        if tools.count("/once-down") == 1:
            return Response("warming up", status_code=503)
        return {"output": "fine"}

    tools.add_handler("/once-down", once_down)
    out = api(call(tools, "/once-down", {})).json()
    assert out["status"] == "ok" and out["output"] == "fine" and out["retries"] == 1
    assert tools.count("/once-down") == 2


def test_no_answer_after_the_retries_is_a_reply_with_secrets_scrubbed(api, tools):
    tools.add_handler("/down", lambda body, request: Response(
        f"down; you sent {request.headers['authorization']}", status_code=502))
    r = api(call(tools, "/down", {}))
    assert r.status_code == 200
    out = r.json()
    assert out["status"] == "infra_failure" and out["output"] is None and out["retries"] == 3
    assert "failed after 4 attempts" in out["error"] and "[redacted]" in out["error"]
    assert "sk-tool-secret" not in r.text
    assert tools.count("/down") == 4


@pytest.mark.parametrize("change, param", [
    ({"arguments": None}, "arguments"),
    ({"name": 3}, "name"),
    ({"server_url": None}, "server_url"),
    ({"type": "mcp_call"}, "type"),
    ({"headers": {"X": 1}}, "headers.X"),
    ({"nmae": "x"}, "nmae"),
    ({"arguments": "{not json"}, "arguments"),
    ({"server_url": "ftp://tools.internal/x"}, "server_url"),
])
def test_bad_bodies_are_400s_naming_the_field(api, tools, change, param):
    body = call(tools, "/echo", {})
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    r = api(body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert param.split(".")[0] in err["message"]
    assert tools.count("/echo") == 0
