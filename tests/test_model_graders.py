"""score_model / label_model without a real model: answer parsing, the grading flow with a
fake judge, the HTTP backend against a scripted OpenAI-compatible server on loopback, and
config errors that name their field."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace

import pytest
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from agentrft.errors import SpecError
from agentrft.graders import label_model, score_model
from agentrft.graders.base import DETAIL_KEYS, ERROR_KEYS, GraderResult
from agentrft.graders.model_judge import (
    Judge, JudgeMessage, JudgeParams, JudgeParseError, JudgeReply, JudgeServerError, LocalJudge,
    OpenAICompatibleJudge, find_result_object, looks_like_refusal, match_label, parse_score,
)
from agentrft.graders.label_model import LabelModelGrader
from agentrft.graders.score_model import ScoreModelGrader
from tests.tool_server import LoopbackToolServer

SAMPLE = {"output_text": "Paris", "output_json": None, "output_tools": [], "choices": [],
          "output_reasoning_summary": None, "trajectory": []}
ITEM = {"question": "Capital of France?", "reference": "Paris"}
INPUT = (JudgeMessage("system", 'Answer {"result": x}.'),
         JudgeMessage("user", "Q: {{item.question}} A: {{sample.output_text}} "
                              "Ref: {{item.reference}}"))
LABELS = ("correct", "incorrect", "Partially correct")


def assert_shape(result: GraderResult, type_: str) -> None:
    assert 0.0 <= result.reward <= 1.0
    assert result.metadata["type"] == type_
    assert set(result.metadata["errors"]) == set(ERROR_KEYS) | set(DETAIL_KEYS)
    json.dumps(result.to_dict())


# --- parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('{"result": 0.7}', 0.7),
    ('{"result": 1}', 1.0),
    ('```json\n{"steps": ["looks right"], "result": 0.25}\n```', 0.25),
    ('Reasoning: the answer matches.\n{"result": 0.9}\nDone.', 0.9),
    ('Scores look like {"a": 1} but {"result": 0.4}', 0.4),
    ('{"outer": {"result": 0.3}}', 0.3),  # nested: the first object that has "result"
    ('{"result": "0.6"}', 0.6),  # a numeric string is accepted
    ('<think>maybe {"result": 0.1}</think>{"result": 0.8}', 0.8),  # thinking is skipped
    ('{"result": -3}', -3.0),  # the grader clips; the parser reports what was said
    ('{"result": 12.5, "why": "great"} {"result": 0.1}', 12.5),  # the first one wins
    # a reply that is only a number (OpenAI's judge prompt: "only return the numerical score")
    ("1", 1.0), ("0.5", 0.5), (" 0.5\n", 0.5), ('"0.5"', 0.5), ("**1**", 1.0), ("`7`", 7.0),
    ("Score: 1", 1.0), ("score:0.25", 0.25), ("Result = 0.5.", 0.5), ("Final score: 6", 6.0),
    ("-2", -2.0), (".5", 0.5), ("1.", 1.0), ("<think>maybe 3</think>0.8", 0.8),
])
def test_parse_score(text, expected):
    assert parse_score(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", [
    "", "The answer is right.", "The score is 1", "1/5", "0.5 or 0.7", "Score: high", "nan",
    "inf", "1 because it matches", '{"score": 0.7}', '{"result": NaN}', '{"result": Infinity}',
    '{"result": -Infinity}', '{"result": true}', '{"result": null}', '{"result": "high"}',
    '{"result": [0.5]}', '{"result": 0.5', "```json\n{'result': 0.5}\n```",
    '<think>{"result": 0.5}</think> no verdict',
])
def test_parse_score_rejects(text):
    with pytest.raises(JudgeParseError):
        parse_score(text)


def test_find_result_object_returns_the_whole_object():
    assert find_result_object('x {"result": 2, "steps": [{"a": 1}]} y') == \
        {"result": 2, "steps": [{"a": 1}]}


@pytest.mark.parametrize("text, label", [
    ("correct", "correct"),
    ("incorrect", "incorrect"),
    ("  Correct.\n", "correct"),
    ("INCORRECT", "incorrect"),
    ('"correct"', "correct"),
    ("**incorrect**", "incorrect"),
    ("`Partially correct`", "Partially correct"),
    ("partially CORRECT", "Partially correct"),
    ('{"result": "incorrect"}', "incorrect"),
    ('I think so.\n```json\n{"result": "Correct"}\n```', "correct"),
])
def test_match_label(text, label):
    assert match_label(text, LABELS) == label


def test_match_label_exact_beats_case_insensitive():
    assert match_label("Yes", ("yes", "Yes")) == "Yes"
    with pytest.raises(JudgeParseError):
        match_label("YES", ("yes", "Yes"))  # ambiguous


@pytest.mark.parametrize("text", [
    "", "right", "The answer is correct.", "correct or incorrect", '{"result": "maybe"}',
    '{"result": 1}', "correctly",
])
def test_match_label_rejects(text):
    with pytest.raises(JudgeParseError):
        match_label(text, LABELS)


@pytest.mark.parametrize("text, refusal", [
    ("I can't help with that.", True),
    ("I can\u2019t help with that.", True),
    ("I cannot evaluate this content.", True),
    ("I'm sorry, but I won't grade this.", True),
    ("Sorry, I am unable to assist.", True),
    ("As an AI language model, I must decline.", True),
    ("Hmm. I'm not able to judge this one.", True),
    ("The answer is wrong.", False),
    ("The answer is partially right; cannot say more.", False),
    ("", False),
])
def test_looks_like_refusal(text, refusal):
    assert looks_like_refusal(text) is refusal


# --- the grading flow with a fake judge ------------------------------------------------

class FakeJudge(Judge):
    """Answers from a script; records what it was asked."""

    def __init__(self, *replies: JudgeReply | str | Exception, model: str = "fake-judge"):
        self.model = model
        self.replies = list(replies)
        self.asked: list[tuple[list[dict], JudgeParams, str]] = []

    async def complete(self, messages, params, *, trace_id=""):
        self.asked.append((messages, params, trace_id))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, str):
            return JudgeReply(text=reply, model=self.model,
                              usage={"prompt_tokens": 10, "completion_tokens": 3,
                                     "total_tokens": 13, "cached_tokens": 0})
        return reply


def scorer(*replies, range=(0.0, 1.0), pass_threshold=None, input=INPUT) -> ScoreModelGrader:
    return ScoreModelGrader("judge", FakeJudge(*replies), input, range=range,
                            pass_threshold=pass_threshold)


@pytest.mark.parametrize("answer, rng, reward, raw", [
    ('{"result": 0.75}', (0, 1), 0.75, 0.75),
    ('{"result": 4}', (1, 7), 0.5, 4.0),
    ('{"result": 7}', (1, 7), 1.0, 7.0),
    ('{"result": 1}', (1, 7), 0.0, 1.0),
    ('{"result": 9}', (1, 7), 1.0, 9.0),  # clipped to the range; raw kept
    ('{"result": 1.5}', (0, 1), 1.0, 1.5),
    ('{"result": -0.2}', (0, 1), 0.0, -0.2),
    ('{"result": 5}', (0, 10), 0.5, 5.0),
])
async def test_score_model_normalises_from_range(answer, rng, reward, raw):
    result = await scorer(answer, range=rng).grade(SAMPLE, ITEM, "trace_1")
    assert result.reward == pytest.approx(reward)
    assert result.metadata["scores"]["raw"] == pytest.approx(raw)
    assert result.raised_flags == []
    assert result.metadata["token_usage"]["total_tokens"] == 13
    assert result.metadata["sampled_model_name"] == "fake-judge"
    assert result.to_dict()["model_grader_token_usage_per_model"]["fake-judge"]["prompt_tokens"] == 10
    assert_shape(result, "score_model")


async def test_score_model_renders_templates_and_passes_params():
    judge = FakeJudge('{"result": 1}')
    params = JudgeParams(temperature=0.0, max_tokens=16, seed=3)
    grader = ScoreModelGrader("judge", judge, INPUT, params=params)
    await grader.grade(SAMPLE, ITEM, "trace_abc")
    messages, got_params, trace_id = judge.asked[0]
    assert messages == [{"role": "system", "content": 'Answer {"result": x}.'},
                        {"role": "user", "content": "Q: Capital of France? A: Paris Ref: Paris"}]
    # the sampling params as given, plus the grader's answer schema asked as structured output
    assert replace(got_params, response_format=None) == params and trace_id == "trace_abc"
    schema = got_params.response_format["json_schema"]["schema"]
    assert got_params.response_format["type"] == "json_schema"
    assert schema["properties"]["result"] == {"type": "number", "minimum": 0.0, "maximum": 1.0}


async def test_pass_threshold_is_in_range_units():
    high = await scorer('{"result": 5}', range=(1, 7), pass_threshold=5).grade(SAMPLE, ITEM, "t")
    low = await scorer('{"result": 4}', range=(1, 7), pass_threshold=5).grade(SAMPLE, ITEM, "t")
    assert high.metadata["passed"] is True and low.metadata["passed"] is False
    unset = await scorer('{"result": 1}').grade(SAMPLE, ITEM, "t")
    assert "passed" not in unset.metadata


@pytest.mark.parametrize("answer, flag", [
    ("The answer looks fine to me.", "model_grader_parse_error"),
    ('{"result": NaN}', "model_grader_parse_error"),
    ('{"verdict": 1}', "model_grader_parse_error"),
    ("", "model_grader_parse_error"),
    ("I can't help with that.", "model_grader_refusal_error"),
    ("I'm sorry, but I cannot grade this.", "model_grader_refusal_error"),
    (JudgeReply(text="", model="m", refusal="I refuse."), "model_grader_refusal_error"),
    (JudgeServerError("judge at http://x answered HTTP 400: bad model"), "model_grader_server_error"),
    (RuntimeError("a bug in a third-party judge"), "other_error"),
])
async def test_score_model_failures_are_flags(answer, flag):
    result = await scorer(answer).grade(SAMPLE, ITEM, "trace_9")
    assert result.reward == 0.0
    assert result.raised_flags == [flag]
    assert result.should_discard  # the grader failed: never a 0 to learn from
    assert_shape(result, "score_model")
    if flag == "model_grader_server_error":
        details = result.metadata["errors"]["model_grader_server_error_details"]
        assert "HTTP 400" in details and "trace_9" in details


async def test_refusal_with_json_still_scores():
    result = await scorer('I cannot be certain, but {"result": 0.5}').grade(SAMPLE, ITEM, "t")
    assert result.reward == 0.5 and result.raised_flags == []


async def test_parse_error_keeps_token_usage():
    result = await scorer("no number here").grade(SAMPLE, ITEM, "t")
    assert result.metadata["token_usage"]["completion_tokens"] == 3
    assert result.metadata["sampled_model_name"] == "fake-judge"


async def test_parse_error_shows_what_the_judge_wrote_truncated():
    result = await scorer("The answer is close to the reference.").grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["model_grader_parse_error"]
    assert result.metadata["scores"]["judge_output"] == "The answer is close to the reference."
    assert "not a bare number" in result.metadata["scores"]["error_detail"]
    long = await scorer("x" * 5000).grade(SAMPLE, ITEM, "t")
    shown = long.metadata["scores"]["judge_output"]
    assert shown.startswith("x" * 500) and shown.endswith("…(truncated)") and len(shown) < 600


async def test_a_bare_number_after_a_prefill_scores():
    prefill = (*INPUT, JudgeMessage("assistant", '{"result": '))
    result = await scorer("1", range=(0, 1), input=prefill).grade(SAMPLE, ITEM, "t")
    assert result.reward == 1.0 and result.raised_flags == []


async def test_unknown_variable_is_invalid_variable_error_without_asking():
    bad = (JudgeMessage("user", "{{item.no_such_key}}"),)
    grader = scorer('{"result": 1}', input=bad)
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["invalid_variable_error"]
    assert not result.should_discard  # a fact about the sample: it scores 0
    assert grader.judge.asked == []


async def test_prefill_is_parsed_with_the_reply():
    with_prefill = INPUT + (JudgeMessage("assistant", '{"result": '),)
    continued = await scorer("0.8}", input=with_prefill).grade(SAMPLE, ITEM, "t")
    assert continued.reward == pytest.approx(0.8)
    afresh = await scorer('{"result": 0.3}', input=with_prefill).grade(SAMPLE, ITEM, "t")
    assert afresh.reward == pytest.approx(0.3)  # a server that ignored the prefill


@pytest.mark.parametrize("answer, reward, label", [
    ("correct", 1.0, "correct"),
    ("Correct.", 1.0, "correct"),
    ('{"result": "incorrect"}', 0.0, "incorrect"),
    ("partially correct", 1.0, "Partially correct"),
])
async def test_label_model(answer, reward, label):
    grader = LabelModelGrader("verdict", FakeJudge(answer), INPUT, labels=LABELS,
                              passing_labels=("correct", "Partially correct"))
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert result.reward == reward and result.raised_flags == []
    assert result.metadata["scores"] == {"label": label}
    assert result.metadata["passed"] is (reward == 1.0)
    assert_shape(result, "label_model")


@pytest.mark.parametrize("answer, flag", [
    ("maybe", "model_grader_parse_error"),
    ('{"result": "unsure"}', "model_grader_parse_error"),
    ("I cannot answer that.", "model_grader_refusal_error"),
])
async def test_label_model_failures(answer, flag):
    grader = LabelModelGrader("verdict", FakeJudge(answer), INPUT, labels=LABELS,
                              passing_labels=("correct",))
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == [flag] and result.reward == 0.0


# --- the HTTP backend against a scripted server on loopback ----------------------------

@pytest.fixture(scope="module")
def server():
    with LoopbackToolServer() as s:
        yield s


_paths = iter(range(10**6))


def completion(content: str | None, *, refusal: str | None = None, model: str = "judge-v1",
               usage: dict | None = None) -> dict:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}]}
    if usage is not None:
        body["usage"] = usage
    return body


def scripted(server: LoopbackToolServer, *answers) -> tuple[str, str]:
    """A fresh /tN/v1/chat/completions answering `answers` in turn (the last one repeats);
    an answer is a dict (JSON), a Response, or a float (sleep that long, then answer 200)."""
    prefix = f"/t{next(_paths)}"
    queue = list(answers)

    async def handle(body, request):
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            return completion('{"result": 1}')
        return answer

    path = prefix + "/v1/chat/completions"
    server.add_handler(path, handle)
    return server.url(prefix + "/v1"), path


_opened: list[OpenAICompatibleJudge] = []


@pytest.fixture(autouse=True)
async def _close_judges():
    yield
    while _opened:
        await _opened.pop().aclose()


def http_judge(base_url: str, **kwargs) -> OpenAICompatibleJudge:
    _opened.append(OpenAICompatibleJudge("judge-v1", base_url, backoff_s=0.01, **kwargs))
    return _opened[-1]


def http_scorer(base_url: str, **judge_kwargs) -> ScoreModelGrader:
    judge = http_judge(base_url, **judge_kwargs)
    return ScoreModelGrader("judge", judge, INPUT, range=(1, 7),
                            params=JudgeParams(temperature=0.0, max_tokens=32, seed=7,
                                               reasoning_effort="low"))


async def test_http_request_and_answer(server):
    usage = {"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56,
             "prompt_tokens_details": {"cached_tokens": 8}}
    base_url, path = scripted(server, completion('```json\n{"result": 6.1}\n```', usage=usage,
                                                 model="judge-v1-2025"))
    grader = http_scorer(base_url, api_key="sk-test-key-123")
    grader.input = (JudgeMessage("developer", "Be strict."),) + INPUT[1:]
    result = await grader.grade(SAMPLE, ITEM, "trace_http")
    assert result.reward == pytest.approx((6.1 - 1) / 6)
    assert result.metadata["token_usage"] == {"prompt_tokens": 50, "completion_tokens": 6,
                                              "total_tokens": 56, "cached_tokens": 8}
    assert result.metadata["sampled_model_name"] == "judge-v1-2025"
    [request] = server.requests_for(path)
    assert request.json == {
        "model": "judge-v1",
        "messages": [{"role": "system", "content": "Be strict."},
                     {"role": "user", "content": "Q: Capital of France? A: Paris Ref: Paris"}],
        "temperature": 0.0, "max_completion_tokens": 32, "seed": 7, "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "score_model_result", "strict": True, "schema": {
                "type": "object", "required": ["result"], "additionalProperties": False,
                "properties": {"result": {"type": "number", "minimum": 1.0, "maximum": 7.0}}}}}}
    assert request.headers["authorization"] == "Bearer sk-test-key-123"
    assert request.headers["x-trace-id"] == "trace_http"


async def test_http_without_usage_leaves_token_usage_empty(server):
    base_url, _ = scripted(server, completion('{"result": 4}'))
    result = await http_scorer(base_url).grade(SAMPLE, ITEM, "t")
    assert result.reward == 0.5 and result.metadata["token_usage"] is None


async def test_http_5xx_is_retried_then_succeeds(server):
    down = Response("overloaded", status_code=503)
    base_url, path = scripted(server, down, down, JSONResponse({"error": "slow down"}, 429),
                              completion('{"result": 7}'))
    result = await http_scorer(base_url).grade(SAMPLE, ITEM, "t")
    assert result.reward == 1.0 and result.raised_flags == []
    assert server.count(path) == 4


async def test_http_5xx_exhausts_retries(server):
    base_url, path = scripted(server, PlainTextResponse("upstream down", status_code=503))
    result = await http_scorer(base_url).grade(SAMPLE, ITEM, "trace_5xx")
    assert result.raised_flags == ["model_grader_server_error"] and result.should_discard
    details = result.metadata["errors"]["model_grader_server_error_details"]
    assert "4 attempts" in details and "503" in details and "upstream down" in details
    assert "trace_5xx" in details
    assert server.count(path) == 4  # 1 + 3 retries


async def test_http_4xx_is_not_retried_and_key_is_redacted(server):
    secret = "sk-very-secret-999"
    base_url, path = scripted(server, JSONResponse(
        {"error": {"message": f"model 'judge-v1' not found (key {secret})"}}, status_code=404))
    result = await http_scorer(base_url, api_key=secret).grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["model_grader_server_error"]
    details = result.metadata["errors"]["model_grader_server_error_details"]
    assert "HTTP 404" in details and "not found" in details and secret not in details
    assert server.count(path) == 1


async def test_http_400_names_the_problem(server):
    base_url, path = scripted(server, PlainTextResponse("unsupported parameter: seed", 400))
    result = await http_scorer(base_url).grade(SAMPLE, ITEM, "t")
    assert "unsupported parameter: seed" in \
        result.metadata["errors"]["model_grader_server_error_details"]
    assert server.count(path) == 1


async def test_http_timeout_is_retried_then_server_error(server):
    base_url, path = scripted(server, 1.0)
    result = await http_scorer(base_url, timeout_s=0.2, max_retries=1).grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["model_grader_server_error"]
    assert "timeout" in result.metadata["errors"]["model_grader_server_error_details"]
    assert server.count(path) == 2


async def test_http_connection_refused(unused_port):
    result = await http_scorer(f"http://127.0.0.1:{unused_port}/v1").grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["model_grader_server_error"]
    assert "ConnectError" in result.metadata["errors"]["model_grader_server_error_details"]


async def test_http_refusal_field(server):
    base_url, _ = scripted(server, completion(None, refusal="I can't assist with that."))
    result = await http_scorer(base_url).grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["model_grader_refusal_error"]


@pytest.mark.parametrize("body", [{"choices": []}, {"object": "error"}, "not json"])
async def test_http_reply_that_is_not_a_completion(server, body):
    answer = PlainTextResponse(body) if isinstance(body, str) else JSONResponse(body)
    base_url, _ = scripted(server, answer)
    result = await http_scorer(base_url).grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["model_grader_server_error"]
    assert "not a chat completion" in \
        result.metadata["errors"]["model_grader_server_error_details"]


async def test_http_label_model_and_content_parts(server):
    base_url, _ = scripted(server, completion([{"type": "text", "text": "Incorrect"}]))
    judge = http_judge(base_url)
    grader = LabelModelGrader("verdict", judge, INPUT, labels=LABELS, passing_labels=("correct",))
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert result.reward == 0.0 and result.metadata["scores"] == {"label": "incorrect"}


async def test_concurrent_grades_share_one_judge(server):
    base_url, path = scripted(server, 0.05)  # each answer takes 50 ms
    grader = http_scorer(base_url)
    results = await asyncio.gather(*(grader.grade(SAMPLE, ITEM, f"t{i}") for i in range(8)))
    assert [r.reward for r in results] == [0.0] * 8  # {"result": 1} on a 1..7 range
    assert server.count(path) == 8


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- configs ---------------------------------------------------------------------------

def score_config(**overrides) -> dict:
    config = {"type": "score_model", "name": "judge", "model": "bundled:smollm2-135m-instruct",
              "input": [{"role": "system", "content": "Answer JSON."},
                        {"role": "user", "content": "{{sample.output_text}}"}]}
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def label_config(**overrides) -> dict:
    return score_config(**{"type": "label_model", "labels": ["yes", "no"],
                           "passing_labels": ["yes"], **overrides})


def test_score_config_full():
    grader = score_model.from_config(score_config(
        range=[1, 7], pass_threshold=5, base_url="http://localhost:8000/v1",
        sampling_params={"temperature": 0.2, "top_p": 0.9, "max_completions_tokens": 64,
                         "seed": 1, "reasoning_effort": "high"},
        input=[{"type": "message", "role": "developer", "content": {"type": "input_text",
                                                                     "text": "Be strict."}},
               {"role": "user", "content": [{"type": "input_text", "text": "A: "},
                                            {"type": "input_text", "text": "{{sample.output_text}}"}]}]))
    assert isinstance(grader.judge, OpenAICompatibleJudge)
    assert grader.judge.url == "http://localhost:8000/v1/chat/completions"
    assert grader.range == (1.0, 7.0) and grader.pass_threshold == 5.0
    assert grader.params == JudgeParams(0.2, 0.9, 64, 1, "high")
    assert grader.input == (JudgeMessage("developer", "Be strict."),
                            JudgeMessage("user", "A: {{sample.output_text}}"))


def test_score_config_defaults_and_local_models(tmp_path):
    grader = score_model.from_config(score_config())
    assert isinstance(grader.judge, LocalJudge) and grader.range == (0.0, 1.0)
    assert grader.params == JudgeParams() and grader.pass_threshold is None
    assert score_model.from_config(score_config(sampling_params={"max_tokens": 8})) \
        .params.max_tokens == 8
    for model in (str(tmp_path), f"local:{tmp_path}"):
        judge = score_model.from_config(score_config(model=model)).judge
        assert isinstance(judge, LocalJudge) and judge.model == str(tmp_path)


def test_api_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-from-env")
    grader = label_model.from_config(label_config(base_url="https://judge.example/v1",
                                                  api_key_env="MY_JUDGE_KEY", model="gpt-4o"))
    assert grader.judge._headers["Authorization"] == "Bearer sk-from-env"


def test_served_model_without_base_url_uses_openai(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    judge = score_model.from_config(score_config(model="gpt-4o-mini")).judge
    assert judge.url == "https://api.openai.com/v1/chat/completions"


@pytest.mark.parametrize("overrides, field", [
    ({"name": None}, "grader.name"),
    ({"name": ""}, "grader.name"),
    ({"input": None}, "grader.input"),
    ({"refrence": "x"}, "grader.refrence"),
    ({"model": 3}, "grader.model"),
    ({"model": "bundled:nope"}, "grader.model"),
    ({"model": "local:/no/such/dir"}, "grader.model"),
    ({"model": "./judges/missing"}, "grader.model"),
    ({"model": "gpt-4o"}, "grader.model"),  # no base_url and no OPENAI_API_KEY
    ({"input": []}, "grader.input"),
    ({"input": "hello"}, "grader.input"),
    ({"input": [{"role": "user", "content": "a"}, {"role": "judge", "content": "b"}]},
     "grader.input[1].role"),
    ({"input": [{"role": "user"}]}, "grader.input[0].content"),
    ({"input": [{"role": "user", "content": "a", "name": "x"}]}, "grader.input[0].name"),
    ({"input": [{"role": "user", "content": "a", "type": "item"}]}, "grader.input[0].type"),
    ({"input": [{"role": "user", "content": 5}]}, "grader.input[0].content"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "grader.input[0].content[0]"),
    ({"input": ["just text"]}, "grader.input[0]"),
    ({"range": [1]}, "grader.range"),
    ({"range": "0-1"}, "grader.range"),
    ({"range": [1, "7"]}, "grader.range[1]"),
    ({"range": [7, 1]}, "grader.range"),
    ({"range": [1, 1]}, "grader.range"),
    ({"range": [0, math.inf]}, "grader.range[1]"),
    ({"pass_threshold": 2}, "grader.pass_threshold"),
    ({"pass_threshold": "high"}, "grader.pass_threshold"),
    ({"sampling_params": [0.5]}, "grader.sampling_params"),
    ({"sampling_params": {"temprature": 0}}, "grader.sampling_params.temprature"),
    ({"sampling_params": {"temperature": 3}}, "grader.sampling_params.temperature"),
    ({"sampling_params": {"temperature": "hot"}}, "grader.sampling_params.temperature"),
    ({"sampling_params": {"top_p": 0}}, "grader.sampling_params.top_p"),
    ({"sampling_params": {"max_tokens": 0}}, "grader.sampling_params.max_tokens"),
    ({"sampling_params": {"max_completions_tokens": 1.5}},
     "grader.sampling_params.max_completions_tokens"),
    ({"sampling_params": {"max_tokens": 5, "max_completions_tokens": 5}},
     "grader.sampling_params.max_tokens"),
    ({"sampling_params": {"seed": True}}, "grader.sampling_params.seed"),
    ({"sampling_params": {"reasoning_effort": "extreme"}},
     "grader.sampling_params.reasoning_effort"),
    ({"base_url": "localhost:8000"}, "grader.base_url"),
    ({"base_url": 8000}, "grader.base_url"),
    ({"base_url": "http://x/v1", "api_key_env": "AGENTRFT_TEST_UNSET_KEY"}, "grader.api_key_env"),
    ({"api_key": "sk-inline"}, "grader.api_key"),  # keys come from the environment only
    ({"labels": ["a"]}, "grader.labels"),  # not a score_model field
])
def test_score_config_errors_name_the_field(overrides, field, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AGENTRFT_TEST_UNSET_KEY", raising=False)
    with pytest.raises(SpecError) as info:
        score_model.from_config(score_config(**overrides))
    assert info.value.field == field


@pytest.mark.parametrize("overrides, field", [
    ({"labels": None}, "grader.labels"),
    ({"passing_labels": None}, "grader.passing_labels"),
    ({"labels": []}, "grader.labels"),
    ({"labels": "yes"}, "grader.labels"),
    ({"labels": ["yes", 2]}, "grader.labels[1]"),
    ({"labels": ["yes", " "]}, "grader.labels[1]"),
    ({"labels": ["yes", "no", "yes"]}, "grader.labels[2]"),
    ({"labels": ["yes", "Yes"], "passing_labels": ["yes"]}, "grader.labels[1]"),
    ({"passing_labels": []}, "grader.passing_labels"),
    ({"passing_labels": ["yes", "maybe"]}, "grader.passing_labels[1]"),
    ({"range": [0, 1]}, "grader.range"),
    ({"input": [{"role": "tool", "content": "x"}]}, "grader.input[0].role"),
])
def test_label_config_errors_name_the_field(overrides, field):
    with pytest.raises(SpecError) as info:
        label_model.from_config(label_config(**overrides))
    assert info.value.field == field


def test_label_config_builds():
    grader = label_model.from_config(label_config(sampling_params={"temperature": 0}))
    assert grader.labels == ("yes", "no") and grader.passing_labels == {"yes"}
    assert grader.params.temperature == 0.0 and isinstance(grader.judge, LocalJudge)
