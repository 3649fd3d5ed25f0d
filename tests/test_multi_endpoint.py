"""`multi` (sub-graders + formula) and `endpoint` (a real scoring server on loopback)."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time

import httpx
import pytest
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from agentrft.errors import GraderInfraFailure, SpecError
from agentrft.graders.base import DETAIL_KEYS, ERROR_KEYS, Grader, GraderResult
from agentrft.graders.build import build_grader
from agentrft.graders.endpoint import EndpointGrader
from agentrft.graders.multi import MultiGrader
from tests.tool_server import LoopbackToolServer

SAMPLE = {"output_text": "Thanks! The answer is Paris.", "output_json": None, "output_tools": [],
          "choices": [], "output_reasoning_summary": None,
          "trajectory": [{"role": "assistant", "content": "Thanks! The answer is Paris."}]}
ITEM = {"answer": "Paris", "greeting": "Thanks"}
SECRET = "Bearer sk-very-secret-123"


def check(name: str, input: str = "{{sample.output_text}}", reference: str = "{{item.answer}}",
          operation: str = "like") -> dict:
    return {"type": "string_check", "name": name, "input": input, "reference": reference,
            "operation": operation}


def multi(formula: str, **graders: dict) -> dict:
    return {"type": "multi", "name": "combo", "graders": graders, "calculate_output": formula}


def assert_shape(result: GraderResult, type_: str) -> None:
    assert 0.0 <= result.reward <= 1.0
    assert set(result.metadata["errors"]) == set(ERROR_KEYS) | set(DETAIL_KEYS)
    assert result.metadata["type"] == type_
    assert result.metadata["execution_time"] >= 0.0
    json.dumps(result.to_dict())


class Fixed(Grader):
    """A sub-grader with a canned result, optionally slow, optionally failing."""
    type = "fixed"

    def __init__(self, name: str, reward: float = 1.0, *, delay: float = 0.0,
                 flags: dict | None = None, details: dict | None = None,
                 usage: dict | None = None, model: str | None = None, fail: bool = False):
        self.name, self.reward, self.delay, self.fail = name, reward, delay, fail
        self.flags, self.details, self.usage, self.model = flags, details, usage, model
        self.finished = False

    async def grade(self, sample, item, trace_id):
        await asyncio.sleep(self.delay)
        self.finished = True
        if self.fail:
            raise GraderInfraFailure("judge server down")
        return GraderResult.make(self.reward, name=self.name, type=self.type, errors=self.flags,
                                 details=self.details, token_usage=self.usage,
                                 sampled_model_name=self.model, scores={"seen": trace_id})


# --- multi: grading ----------------------------------------------------------------------

async def test_multi_combines_string_checks_with_the_formula():
    grader = build_grader(multi("0.7 * correct + 0.3 * polite",
                                correct=check("c"),
                                polite=check("p", reference="{{item.greeting}}"),
                                wrong=check("w", reference="London")))
    assert isinstance(grader, MultiGrader)
    result = await grader.grade(SAMPLE, ITEM, "trace_1")
    assert_shape(result, "multi")
    assert result.reward == pytest.approx(1.0)
    assert result.sub_rewards == {"correct": 1.0, "polite": 1.0, "wrong": 0.0}  # unused keys run
    assert result.metadata["name"] == "combo" and result.raised_flags == []

    half = await grader.grade({**SAMPLE, "output_text": "It is Paris."}, ITEM, "t")
    assert half.reward == pytest.approx(0.7)
    assert half.sub_rewards["polite"] == 0.0


@pytest.mark.parametrize("formula, reward, raw", [
    ("correct + polite + 1", 1.0, 3.0),
    ("correct - 2", 0.0, -1.0),
    ("min(correct, polite) ^ 2 / 2", 0.5, 0.5),
    ("-2^2 + 5 * correct", 1.0, 1.0),
])
async def test_multi_clips_and_keeps_raw(formula, reward, raw):
    grader = build_grader(multi(formula, correct=check("c"),
                                polite=check("p", reference="{{item.greeting}}")))
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert result.reward == reward
    assert result.metadata["scores"]["raw"] == pytest.approx(raw)


async def test_multi_sample_flag_scores_zero_through_formula():
    grader = build_grader(multi("0.5 * correct + 0.5 * typo",
                                correct=check("c"), typo=check("t", reference="{{item.nope}}")))
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert result.reward == 0.5
    assert result.raised_flags == ["invalid_variable_error"]
    assert not result.should_discard  # a flag about the sample: it scores, not discarded


async def test_multi_carries_the_union_of_flags_and_details():
    judge = Fixed("judge", 0.0, flags={"model_grader_server_error": True},
                  details={"model_grader_server_error_details": "HTTP 500 from judge"})
    py = Fixed("py", 0.0, flags={"python_grader_runtime_error": True},
               details={"python_grader_runtime_error_details": "KeyError: 'x'"})
    grader = MultiGrader("m", {"judge": judge, "py": py, "ok": Fixed("ok")}, "judge + py + ok")
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert set(result.raised_flags) == {"model_grader_server_error", "python_grader_runtime_error"}
    errors = result.metadata["errors"]
    assert errors["model_grader_server_error_details"] == "judge: HTTP 500 from judge"
    assert errors["python_grader_runtime_error_details"] == "py: KeyError: 'x'"
    assert result.should_discard
    assert result.metadata["scores"]["graders"]["ok"] == {"seen": "t"}


async def test_multi_eval_error_is_formula_parse_error_and_discards():
    grader = build_grader(multi("correct / wrong", correct=check("c"),
                                wrong=check("w", reference="London")))
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert_shape(result, "multi")
    assert result.reward == 0.0 and result.raised_flags == ["formula_parse_error"]
    assert result.should_discard
    assert "division by zero" in result.metadata["scores"]["formula_error"]
    assert result.sub_rewards == {"correct": 1.0, "wrong": 0.0}


async def test_multi_runs_sub_graders_concurrently():
    subs = {f"g{i}": Fixed(f"g{i}", delay=0.2) for i in range(4)}
    grader = MultiGrader("m", subs, "(g0 + g1 + g2 + g3) / 4")
    start = time.perf_counter()
    result = await grader.grade(SAMPLE, ITEM, "t")
    elapsed = time.perf_counter() - start
    assert result.reward == 1.0
    assert elapsed < 0.5  # sequential would be 0.8 s
    assert result.metadata["execution_time"] == pytest.approx(elapsed, abs=0.05)


async def test_multi_sub_infra_failure_raises_after_all_finish():
    slow = Fixed("slow", delay=0.2)
    grader = MultiGrader("m", {"judge": Fixed("judge", fail=True), "slow": slow}, "judge + slow")
    with pytest.raises(GraderInfraFailure, match="sub-grader 'judge'.*judge server down"):
        await grader.grade(SAMPLE, ITEM, "t")
    assert slow.finished  # nothing left running after grade returned


async def test_multi_sums_token_usage():
    a = Fixed("a", usage={"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
              model="judge-1")
    b = Fixed("b", usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
              model="judge-1")
    result = await MultiGrader("m", {"a": a, "b": b, "c": Fixed("c")}, "a * b").grade(
        SAMPLE, ITEM, "t")
    assert result.metadata["token_usage"] == {"prompt_tokens": 15, "completion_tokens": 3,
                                              "total_tokens": 18}
    assert result.to_dict()["model_grader_token_usage_per_model"] == {
        "judge-1": result.metadata["token_usage"]}
    none = await MultiGrader("m", {"c": Fixed("c")}, "c").grade(SAMPLE, ITEM, "t")
    assert none.metadata["token_usage"] is None


async def test_multi_nests():
    inner = multi("a * b", a=check("a"), b=check("b", reference="{{item.greeting}}"))
    grader = build_grader(multi("0.5 * inner + 0.5 * c", inner=inner, c=check("c")))
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert result.reward == 1.0 and result.sub_rewards == {"inner": 1.0, "c": 1.0}


# --- multi: build errors -----------------------------------------------------------------

@pytest.mark.parametrize("config, field, says", [
    (multi("a", a=check("a")) | {"extra": 1}, "grader.extra", "unknown key"),
    ({"type": "multi", "name": "m", "graders": {"a": check("a")}}, "grader.calculate_output",
     "missing"),
    ({"type": "multi", "name": "m", "calculate_output": "1"}, "grader.graders", "missing"),
    (multi("a"), "grader.graders", "at least one"),
    ({"type": "multi", "name": "m", "graders": [check("a")], "calculate_output": "a"},
     "grader.graders", "expected an object"),
    (multi("a + b", a=check("a")), "grader.calculate_output", "unknown variable 'b'"),
    (multi("a +", a=check("a")), "grader.calculate_output", "end of formula"),
    (multi("a ** 2", a=check("a")), "grader.calculate_output", "'^'"),
    (multi("nope(a)", a=check("a")), "grader.calculate_output", "unknown function"),
    (multi(3, a=check("a")), "grader.calculate_output", "expected a string"),
    (multi("a", a={k: v for k, v in check("a").items() if k != "reference"}),
     "grader.graders.a.reference", "missing key"),
    (multi("a", a=check("a", operation="EQ")), "grader.graders.a.operation", "unknown operation"),
    (multi("a", a=check("a") | {"refrence": "x"}), "grader.graders.a.refrence", "unknown key"),
    (multi("a", a={"type": "fuzzy", "name": "x"}), "grader.graders.a.type", "unknown grader"),
    (multi("a", a="not a grader"), "grader.graders.a", "expected an object"),
    (multi("a", a=multi("b", b=check("b", operation="nope"))),
     "grader.graders.a.graders.b.operation", "unknown operation"),
    (multi("a", a=multi("b + c", b=check("b"))), "grader.graders.a.calculate_output",
     "unknown variable 'c'"),
    ({"type": "multi", "name": "m", "graders": {"my-key": check("a")}, "calculate_output": "1"},
     "grader.graders.my-key", "cannot be named in a formula"),
    (multi("a", a={"type": "endpoint", "name": "e", "url": "ftp://x"}), "grader.graders.a.url",
     "http"),
])
def test_multi_build_errors_name_the_field(config, field, says):
    with pytest.raises(SpecError) as info:
        build_grader(config)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")
    assert says in str(info.value)
    assert str(info.value).count(field) == 1  # the path is not repeated inside the message


# --- endpoint ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    with LoopbackToolServer() as s:
        s.add_handler("/score", lambda body, req: {"score": body["item"].get("want", 0.8)})
        yield s


@pytest.fixture(autouse=True)
def _fresh_records(request):
    if "server" in request.fixturenames:
        request.getfixturevalue("server").clear()


@pytest.fixture
async def make_grader(server):
    made: list[EndpointGrader] = []

    def make(path: str, **kwargs) -> EndpointGrader:
        url = path if path.startswith("http") else server.url(path)
        kwargs.setdefault("backoff_s", 0.01)
        made.append(EndpointGrader(kwargs.pop("name", "judge"), url, **kwargs))
        return made[-1]

    yield make
    for grader in made:
        await grader.aclose()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_endpoint_posts_sample_item_trace_id_and_headers(server, make_grader):
    grader = make_grader("/score", headers={"Authorization": SECRET, "X-Team": "ml",
                                            "content-type": "text/plain"})
    result = await grader.grade(SAMPLE, ITEM, "trace_abc")
    assert_shape(result, "endpoint")
    assert result.reward == 0.8 and result.raised_flags == []
    assert result.metadata["scores"] == {"raw": 0.8, "attempts": 1}
    [req] = server.requests_for("/score")
    assert req.json == {"sample": SAMPLE, "item": ITEM, "trace_id": "trace_abc"}
    assert req.headers["authorization"] == SECRET and req.headers["x-team"] == "ml"
    assert req.headers["content-type"] == "application/json"  # ours wins
    assert SECRET not in json.dumps(result.to_dict())


@pytest.mark.parametrize("want, reward", [(1.7, 1.0), (-0.3, 0.0), (0, 0.0), (1, 1.0),
                                          (0.25, 0.25)])
async def test_endpoint_clips_score_and_keeps_raw(make_grader, want, reward):
    result = await make_grader("/score").grade(SAMPLE, {"want": want}, "t")
    assert result.reward == reward and result.metadata["scores"]["raw"] == want
    assert not result.should_discard


async def test_endpoint_pass_threshold(make_grader):
    grader = make_grader("/score", pass_threshold=0.5)
    assert (await grader.grade(SAMPLE, {"want": 0.5}, "t")).metadata["passed"] is True
    assert (await grader.grade(SAMPLE, {"want": 0.4}, "t")).metadata["passed"] is False
    assert "passed" not in (await make_grader("/score").grade(SAMPLE, {}, "t")).metadata


async def test_endpoint_retries_5xx_then_unresponsive(server, make_grader):
    result = await make_grader("/flaky503").grade(SAMPLE, ITEM, "t")
    assert_shape(result, "endpoint")
    assert server.count("/flaky503") == 4  # 1 + 3 retries
    assert result.reward == 0.0 and result.raised_flags == ["unresponsive_reward_error"]
    assert result.should_discard
    scores = result.metadata["scores"]
    assert scores["status_code"] == 503 and scores["attempts"] == 4
    assert "HTTP 503" in scores["error"] and "4 attempts" in scores["error"]


async def test_endpoint_recovers_after_transient_failures(server, make_grader):
    calls = []

    def flaky(body, req):
        calls.append(1)
        if len(calls) <= 2:
            return Response("busy", status_code=502)
        return {"score": 0.6}

    server.add_handler("/flaky_then_ok", flaky)
    result = await make_grader("/flaky_then_ok").grade(SAMPLE, ITEM, "t")
    assert result.reward == 0.6 and result.metadata["scores"]["attempts"] == 3


async def test_endpoint_backs_off_exponentially(server, make_grader):
    start = time.perf_counter()
    await make_grader("/flaky503", backoff_s=0.05).grade(SAMPLE, ITEM, "t")
    times = [r.received_at for r in server.requests_for("/flaky503")]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.19
    assert time.perf_counter() - start >= 0.35


@pytest.mark.parametrize("reply", [
    PlainTextResponse("plain text, not JSON"),
    JSONResponse({"result": 1.0}),
    JSONResponse([0.5]),
    Response('{"score": NaN}', media_type="application/json"),
    Response('{"score": Infinity}', media_type="application/json"),
    JSONResponse({"score": "0.5"}),
    JSONResponse({"score": True}),
    JSONResponse({"score": None}),
])
async def test_endpoint_unusable_replies_are_retried_then_unresponsive(server, make_grader, reply):
    server.add_handler("/bad", lambda body, req: reply)
    result = await make_grader("/bad").grade(SAMPLE, ITEM, "t")
    assert server.count("/bad") == 4
    assert result.reward == 0.0 and result.raised_flags == ["unresponsive_reward_error"]
    assert result.metadata["scores"]["status_code"] == 200


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_endpoint_4xx_is_not_retried(server, make_grader, status):
    server.add_handler("/reject", lambda body, req: PlainTextResponse(
        f"rejected; you sent {req.headers.get('authorization')}", status_code=status))
    result = await make_grader("/reject", headers={"Authorization": SECRET}).grade(
        SAMPLE, ITEM, "t")
    assert server.count("/reject") == 1
    assert result.raised_flags == ["unresponsive_reward_error"] and result.should_discard
    scores = result.metadata["scores"]
    assert scores["status_code"] == status and scores["attempts"] == 1
    assert f"HTTP {status}" in scores["error"] and "not retried" in scores["error"]
    assert SECRET not in json.dumps(result.to_dict()) and "[redacted]" in scores["error"]


@pytest.mark.parametrize("status", [408, 429])
async def test_endpoint_408_and_429_are_retried(server, make_grader, status):
    server.add_handler("/busy", lambda body, req: Response(
        "slow down", status_code=status, headers={"Retry-After": "0"}))
    result = await make_grader("/busy").grade(SAMPLE, ITEM, "t")
    assert server.count("/busy") == 4
    assert result.metadata["scores"]["status_code"] == status


async def test_endpoint_redacts_secrets_echoed_in_5xx(server, make_grader):
    server.add_handler("/echo500", lambda body, req: PlainTextResponse(
        f"boom with {req.headers.get('authorization')}", status_code=500))
    grader = make_grader("/echo500", headers={"Authorization": SECRET}, max_retries=1)
    result = await grader.grade(SAMPLE, ITEM, "t")
    text = json.dumps(result.to_dict())
    assert SECRET not in text and "sk-very-secret" not in text
    assert "[redacted]" in result.metadata["scores"]["error"]


async def test_endpoint_drops_url_password_from_errors(make_grader):
    url = f"http://user:hunter2-password@127.0.0.1:{closed_port()}/score"
    result = await make_grader(url, max_retries=0).grade(SAMPLE, ITEM, "t")
    assert "hunter2" not in json.dumps(result.to_dict())


async def test_endpoint_timeout_is_retried_then_unresponsive(server, make_grader):
    async def slow(body, req):
        await asyncio.sleep(2)
        return {"score": 1.0}

    server.add_handler("/slow_score", slow)
    start = time.perf_counter()
    result = await make_grader("/slow_score", timeout_s=0.2, max_retries=1).grade(
        SAMPLE, ITEM, "t")
    assert time.perf_counter() - start < 1.5
    assert server.count("/slow_score") == 2
    assert result.raised_flags == ["unresponsive_reward_error"]
    assert "timeout" in result.metadata["scores"]["error"]
    assert result.metadata["scores"]["status_code"] is None


async def test_endpoint_connection_refused_is_unresponsive(make_grader):
    result = await make_grader(f"http://127.0.0.1:{closed_port()}/score").grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["unresponsive_reward_error"]
    assert result.metadata["scores"]["attempts"] == 4
    assert "Connect" in result.metadata["scores"]["error"]


async def test_endpoint_rate_limit_spaces_requests(server, make_grader):
    grader = make_grader("/score", rate_limit=10)
    await grader.grade(SAMPLE, ITEM, "warm-up")  # connection set-up would skew the first gap
    server.clear()
    results = await asyncio.gather(*(grader.grade(SAMPLE, ITEM, f"t{i}") for i in range(6)))
    assert all(r.reward == 0.8 for r in results)
    times = sorted(r.received_at for r in server.requests_for("/score"))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.07, gaps  # 1/10 s apart, less scheduling jitter
    assert times[-1] - times[0] >= 0.45, gaps  # unlimited, all six would land within ~10 ms


async def test_endpoint_rate_limit_is_shared_by_graders_of_one_url(server, make_grader):
    a = make_grader("/score", rate_limit=20)
    b = make_grader("/score", rate_limit=20, name="judge_eval")
    await asyncio.gather(a.grade(SAMPLE, ITEM, "warm-up"), b.grade(SAMPLE, ITEM, "warm-up"))
    server.clear()
    await asyncio.gather(*(g.grade(SAMPLE, ITEM, "t") for g in (a, b, a, b, a, b)))
    times = sorted(r.received_at for r in server.requests_for("/score"))
    gaps = [y - x for x, y in zip(times, times[1:])]
    assert min(gaps) >= 0.035, gaps  # 1/20 s apart across both graders
    assert times[-1] - times[0] >= 0.22, gaps


async def test_endpoint_without_rate_limit_sends_concurrently(server, make_grader):
    async def slowish(body, req):
        await asyncio.sleep(0.2)
        return {"score": 1}

    server.add_handler("/slowish", slowish)
    grader = make_grader("/slowish")
    start = time.perf_counter()
    await asyncio.gather(*(grader.grade(SAMPLE, ITEM, "t") for _ in range(5)))
    assert time.perf_counter() - start < 0.6


async def test_endpoint_never_raises(server):
    def explode(request):
        raise RuntimeError("transport bug")

    client = httpx.AsyncClient(transport=httpx.MockTransport(explode))
    grader = EndpointGrader("judge", server.url("/score"), client=client)
    result = await grader.grade(SAMPLE, ITEM, "t")
    assert result.raised_flags == ["other_error"] and result.should_discard
    assert "RuntimeError: transport bug" in result.metadata["scores"]["error"]
    await client.aclose()


def test_endpoint_works_across_event_loops(server):
    grader = EndpointGrader("judge", server.url("/score"))
    assert asyncio.run(grader.grade(SAMPLE, ITEM, "t")).reward == 0.8
    assert asyncio.run(grader.grade(SAMPLE, ITEM, "t")).reward == 0.8  # a fresh loop


async def test_endpoint_inside_multi(server):
    grader = build_grader(multi("0.5 * judge + 0.5 * exact",
                                judge={"type": "endpoint", "name": "j", "url": server.url("/score")},
                                exact=check("e")))
    result = await grader.grade(SAMPLE, {**ITEM, "want": 0.6}, "trace_m")
    assert result.reward == pytest.approx(0.8)
    assert server.requests_for("/score")[0].json["trace_id"] == "trace_m"
    down = build_grader(multi("judge", judge={"type": "endpoint", "name": "j",
                                              "url": server.url("/flaky503")}))
    down.graders["judge"].backoff_s = 0.01
    assert (await down.grade(SAMPLE, ITEM, "t")).should_discard


# --- endpoint: build ---------------------------------------------------------------------

def test_build_endpoint_fields():
    g = build_grader({"type": "endpoint", "name": "j", "url": "https://grader.example/score",
                      "headers": {"Authorization": SECRET}, "rate_limit": 5,
                      "pass_threshold": 0.7, "timeout_s": 30})
    assert isinstance(g, EndpointGrader)
    assert (g.name, g.rate_limit, g.pass_threshold, g.timeout_s) == ("j", 5.0, 0.7, 30.0)
    default = build_grader({"type": "endpoint", "name": "j", "url": "http://localhost:1/x"})
    assert default.timeout_s == 600.0 and default.rate_limit is None


@pytest.mark.parametrize("extra, field, says", [
    ({"refrence": 1}, "grader.refrence", "unknown key"),
    ({"url": None}, "grader.url", "expected a string"),
    ({"url": "grader.example/score"}, "grader.url", "absolute"),
    ({"url": "ftp://grader.example/score"}, "grader.url", "http"),
    ({"headers": ["Authorization"]}, "grader.headers", "expected an object"),
    ({"headers": {"Authorization": 12345678}}, "grader.headers.Authorization", "expected a string"),
    ({"rate_limit": 0}, "grader.rate_limit", "greater than 0"),
    ({"rate_limit": -1}, "grader.rate_limit", "greater than 0"),
    ({"rate_limit": "10"}, "grader.rate_limit", "expected a number"),
    ({"rate_limit": True}, "grader.rate_limit", "expected a number"),
    ({"rate_limit": math.inf}, "grader.rate_limit", "expected a number"),
    ({"pass_threshold": 1.5}, "grader.pass_threshold", "[0, 1]"),
    ({"timeout_s": 0}, "grader.timeout_s", "greater than 0"),
])
def test_build_endpoint_errors_name_the_field(extra, field, says):
    config = {"type": "endpoint", "name": "j", "url": "http://localhost:1/score", **extra}
    with pytest.raises(SpecError) as info:
        build_grader(config)
    assert info.value.field == field and says in str(info.value)


def test_build_endpoint_missing_url():
    with pytest.raises(SpecError) as info:
        build_grader({"type": "endpoint", "name": "j"})
    assert info.value.field == "grader.url"
