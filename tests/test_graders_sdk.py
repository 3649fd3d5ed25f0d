"""`client.fine_tuning.alpha.graders.run|validate` from the official SDK, with the bodies OpenAI's
Agent RFT helpers send (`trace_id`, a python grader without `name`), against the jobs API on
loopback; endpoint graders and judges are real servers on loopback too."""

from __future__ import annotations

import pytest
from openai import BadRequestError, OpenAI

from agentrft.loopback import LoopbackServer
from agentrft.server import create_app
from tests.tool_server import LoopbackToolServer

SOURCE = "def grade(sample, item):\n    return 1.0 if sample['output_text'] == item['answer'] else 0.25\n"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from agentrft.jobs.store import JobStore

    store = JobStore(tmp_path_factory.mktemp("data"))
    with LoopbackServer(create_app(store), name="jobs") as server:
        yield OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0)
    store.close()


def test_python_grader_without_a_name_runs_and_is_typed(api):
    grader = {"type": "python", "source": SOURCE}  # as OpenAI's helper builds it
    out = api.fine_tuning.alpha.graders.run(grader=grader, model_sample="42", item={"answer": "42"},
                                            extra_body={"trace_id": "trace_helper_1"})
    assert out.reward == 1.0
    assert out.metadata.name == "python" and out.metadata.type == "python"
    assert out.metadata.errors.python_grader_runtime_error is False
    assert out.metadata.token_usage is None and out.sub_rewards == {}
    assert api.fine_tuning.alpha.graders.validate(grader=grader).grader.source == SOURCE
    checked = api.fine_tuning.alpha.graders.validate(grader=grader,
                                                     extra_body={"trace_id": "trace_helper_1"})
    assert checked.grader.type == "python"
    with pytest.raises(BadRequestError) as e:  # unknown keys are still refused
        api.fine_tuning.alpha.graders.run(grader={**grader, "nmae": "x"}, model_sample="1")
    assert e.value.body["param"] == "grader.nmae"


def test_trace_id_reaches_the_endpoint_grader(api):
    with LoopbackToolServer() as server:
        server.add_handler("/score", lambda body, request: {"score": 0.7})
        grader = {"type": "endpoint", "name": "remote", "url": server.url("/score")}
        out = api.fine_tuning.alpha.graders.run(
            grader=grader, model_sample="an answer", item={"q": 1},
            extra_body={"trace_id": "trace_0123abcd"})
        sent = server.requests_for("/score")[0].json
    assert out.reward == pytest.approx(0.7) and out.metadata.name == "remote"
    assert sent["trace_id"] == "trace_0123abcd"
    assert sent["item"] == {"q": 1} and sent["sample"]["output_text"] == "an answer"


def test_model_grader_token_usage_is_an_integer_total_with_the_breakdown_per_model(api):
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    def health():
        return {"ok": True}

    @app.post("/v1/chat/completions")
    def chat(body: dict):
        return {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": '{"result": 0.9}'}}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}}

    with LoopbackServer(app) as judge:
        grader = {"type": "score_model", "name": "j", "model": "judge-1",
                  "base_url": judge.url("/v1"),
                  "input": [{"role": "user", "content": "Score {{sample.output_text}}"}]}
        out = api.fine_tuning.alpha.graders.run(grader=grader, model_sample="x")
    assert out.reward == pytest.approx(0.9)
    assert out.metadata.token_usage == 36 and isinstance(out.metadata.token_usage, int)
    assert out.model_grader_token_usage_per_model["judge-1"]["prompt_tokens"] == 30
