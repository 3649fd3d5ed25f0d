"""score_model / label_model with a REAL judge: the bundled SmolLM2-135M-Instruct.

(a) in-process (`LocalJudge`, our TransformersEngine), and (b) over HTTP through an
OpenAI-compatible `/v1/chat/completions` on loopback that runs the same model greedily.

A 135M model rarely writes valid JSON on its own. The graders ask for structured output
(`{"result": ...}` in the grader's schema): the local judge decodes under that grammar, so
its answers always parse; the loopback server honours `response_format` the same way, except
on a path that ignores it, where a poem stays a poem (`model_grader_parse_error`). Prefilled
answers (`{"result": `) still parse. Each test keeps to ≤ 32 new tokens.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from agentrft.graders import label_model, score_model
from agentrft.graders.base import GraderResult
from agentrft.graders.model_judge import LocalJudge, OpenAICompatibleJudge, _load
from tests.tool_server import LoopbackToolServer

MODEL = "bundled:smollm2-135m-instruct"
SAMPLE = {"output_text": "The capital of France is Paris.", "output_json": None,
          "output_tools": [], "choices": [], "output_reasoning_summary": None, "trajectory": []}
ITEM = {"question": "What is the capital of France?", "reference": "Paris"}
SYSTEM = {"role": "system", "content": "You are a strict grader. Reply only with JSON of the "
                                       'form {"result": <number from 0 to 1>}.'}
USER = {"role": "user", "content": "Question: {{item.question}}\nReference answer: "
                                   "{{item.reference}}\nModel answer: {{sample.output_text}}\n"
                                   "How correct is the model answer?"}
PREFILL = {"role": "assistant", "content": '{"result": '}
GREEDY = {"temperature": 0, "max_completions_tokens": 32}


def score_config(input, **extra) -> dict:
    return {"type": "score_model", "name": "judge", "model": MODEL, "input": input,
            "sampling_params": GREEDY, **extra}


def assert_well_formed(result: GraderResult, *, max_completion_tokens: int = 32) -> None:
    """A reward in [0, 1] with no flag, or reward 0 with a parse/refusal flag; tokens counted."""
    flags = result.raised_flags
    assert 0.0 <= result.reward <= 1.0
    assert flags == [] or (flags in (["model_grader_parse_error"], ["model_grader_refusal_error"])
                           and result.reward == 0.0), flags
    usage = result.metadata["token_usage"]
    assert usage["prompt_tokens"] > 20
    assert 1 <= usage["completion_tokens"] <= max_completion_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert result.metadata["sampled_model_name"]
    assert result.metadata["execution_time"] > 0


# --- (a) in-process --------------------------------------------------------------------

async def test_local_free_answer_is_well_formed():
    grader = score_model.from_config(score_config([SYSTEM, USER]))
    assert isinstance(grader.judge, LocalJudge)
    result = await grader.grade(SAMPLE, ITEM, "trace_free")
    assert_well_formed(result)
    assert result.metadata["sampled_model_name"] == MODEL


async def test_local_judge_answers_in_the_graders_schema_even_asked_for_a_poem():
    # Greedy, asked for a poem: free, it writes prose; under the grader's grammar, a result.
    for messages in ([SYSTEM, USER], [{"role": "user", "content": "Write a two-line poem about "
                                                                  "the sea."}]):
        grader = score_model.from_config(score_config(messages, range=[0, 10]))
        result = await grader.grade(SAMPLE, ITEM, "trace_poem")
        assert result.raised_flags == [], result.metadata
        assert 0.0 <= result.metadata["scores"]["raw"] <= 10.0  # the schema's range
        assert result.metadata["token_usage"]["completion_tokens"] <= 16


async def test_local_prefilled_answer_parses():
    grader = score_model.from_config(score_config([SYSTEM, USER, PREFILL]))
    result = await grader.grade(SAMPLE, ITEM, "trace_prefill")
    assert result.raised_flags == [], result.metadata
    raw = result.metadata["scores"]["raw"]
    assert math.isfinite(raw)
    assert result.reward == pytest.approx(min(1.0, max(0.0, raw)))
    assert_well_formed(result)


async def test_local_prefilled_answer_on_a_1_to_7_range():
    system = {"role": "system", "content": 'Grade from 1 to 7. Reply only with JSON '
                                           '{"result": <1-7>}.'}
    grader = score_model.from_config(score_config([system, USER, PREFILL], range=[1, 7],
                                                  pass_threshold=4))
    result = await grader.grade(SAMPLE, ITEM, "trace_17")
    assert result.raised_flags == [], result.metadata
    clipped = min(7.0, max(1.0, result.metadata["scores"]["raw"]))
    assert result.reward == pytest.approx((clipped - 1) / 6)
    assert result.metadata["passed"] is (clipped >= 4)


async def test_local_label_model_prefilled_and_free():
    labels = {"labels": ["correct", "incorrect"], "passing_labels": ["correct"]}
    prefilled = label_model.from_config({
        "type": "label_model", "name": "verdict", "model": MODEL, "sampling_params": GREEDY,
        "input": [{"role": "system", "content": 'Answer with JSON {"result": "correct"} or '
                                                '{"result": "incorrect"}.'},
                  USER, {"role": "assistant", "content": '{"result": "'}], **labels})
    result = await prefilled.grade(SAMPLE, ITEM, "trace_label")
    assert result.raised_flags == [], result.metadata
    assert result.metadata["scores"]["label"] in labels["labels"]
    assert result.reward == (1.0 if result.metadata["scores"]["label"] == "correct" else 0.0)
    assert_well_formed(result)

    free = label_model.from_config({
        "type": "label_model", "name": "verdict", "model": MODEL, "sampling_params": GREEDY,
        "input": [{"role": "system", "content": "Answer with one word: correct or incorrect."},
                  USER], **labels})
    assert_well_formed(await free.grade(SAMPLE, ITEM, "trace_label_free"))


async def test_local_concurrent_grades_share_one_loaded_model():
    grader = score_model.from_config(score_config([SYSTEM, USER, PREFILL]))
    other = score_model.from_config(score_config([SYSTEM, USER, PREFILL]))
    samples = [{**SAMPLE, "output_text": text} for text in
               ("Paris.", "Lyon.", "I do not know.", "It is Paris, the largest city of France.")]
    results = await asyncio.gather(*(grader.grade(s, ITEM, f"trace_{i}")
                                     for i, s in enumerate(samples)),
                                   other.grade(SAMPLE, ITEM, "trace_other"))
    for result in results:
        assert_well_formed(result)
    assert _load(MODEL) is _load(MODEL)  # loaded once per process, shared by every grader


# --- (b) the same model behind an OpenAI-compatible server on loopback ------------------

def chat_completions(body: dict, request) -> dict:
    """A minimal /v1/chat/completions over our engine: greedy, a final assistant message
    continued (vLLM's continue_final_message), usage counted from the token ids."""
    from agentrft.engines.base import SamplingParams

    loaded = _load(body["model"])
    messages = body["messages"]
    if messages[-1]["role"] == "assistant":
        prompt = loaded.renderer.prompt_ids(messages[:-1], []) + \
            loaded.tokenizer.encode(messages[-1]["content"], add_special_tokens=False)
    else:
        prompt = loaded.renderer.prompt_ids(messages, [])
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 32
    honoured = None if "/ignoring/" in request.url.path else body.get("response_format")
    params = SamplingParams(temperature=0.0, max_new_tokens=max_tokens,
                            stop_token_ids=loaded.renderer.stop_token_ids,
                            constraint=loaded.constraint_for(honoured))
    with loaded.lock:
        [out] = loaded.engine.generate([prompt], params)
    text = loaded.tokenizer.decode(out.token_ids, skip_special_tokens=True)
    return {"id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": out.finish_reason,
                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(out.token_ids),
                      "total_tokens": len(prompt) + len(out.token_ids)}}


@pytest.fixture(scope="module")
def model_server():
    with LoopbackToolServer() as server:
        server.add_handler("/v1/chat/completions", chat_completions)
        server.add_handler("/ignoring/v1/chat/completions", chat_completions)
        yield server


@pytest.mark.parametrize("messages", [[SYSTEM, USER], [SYSTEM, USER, PREFILL],
                                      [{"role": "user", "content": "Write a two-line poem "
                                                                   "about the sea."}]],
                         ids=["free", "prefill", "poem"])
async def test_http_judge_matches_the_in_process_judge(model_server, messages):
    over_http = score_model.from_config(score_config(messages,
                                                     base_url=model_server.url("/v1")))
    in_process = score_model.from_config(score_config(messages))
    assert isinstance(over_http.judge, OpenAICompatibleJudge)
    remote = await over_http.grade(SAMPLE, ITEM, "trace_http")
    local = await in_process.grade(SAMPLE, ITEM, "trace_local")
    assert_well_formed(remote)
    # Same model, greedy, same prompt ids: same answer, same verdict, same token counts.
    assert remote.raised_flags == local.raised_flags
    assert remote.reward == pytest.approx(local.reward)
    assert remote.metadata["scores"] == local.metadata["scores"]
    assert remote.metadata["token_usage"] == local.metadata["token_usage"]
    assert remote.raised_flags == []  # the server honoured the structured output asked for
    sent = model_server.requests_for("/v1/chat/completions")[-1].json["response_format"]
    assert sent["json_schema"]["schema"]["properties"]["result"]["type"] == "number"
    await over_http.judge.aclose()


async def test_http_judge_that_ignores_structured_output_may_not_parse(model_server):
    poem = [{"role": "user", "content": "Write a two-line poem about the sea."}]
    grader = score_model.from_config(score_config(poem, base_url=model_server.url("/ignoring/v1")))
    result = await grader.grade(SAMPLE, ITEM, "trace_poem")
    assert result.raised_flags == ["model_grader_parse_error"]
    assert result.reward == 0.0 and result.should_discard
    assert result.metadata["scores"]["judge_output"]  # what the judge wrote, shown
    await grader.judge.aclose()


async def test_http_label_model(model_server):
    grader = label_model.from_config({
        "type": "label_model", "name": "verdict", "model": MODEL, "sampling_params": GREEDY,
        "base_url": model_server.url("/v1"), "labels": ["correct", "incorrect"],
        "passing_labels": ["correct"],
        "input": [{"role": "system", "content": 'Answer with JSON {"result": "correct"} or '
                                                '{"result": "incorrect"}.'},
                  USER, {"role": "assistant", "content": '{"result": "'}]})
    result = await grader.grade(SAMPLE, ITEM, "trace_http_label")
    await grader.judge.aclose()
    assert result.raised_flags == [] and result.metadata["scores"]["label"] in ("correct",
                                                                                 "incorrect")
    assert_well_formed(result)
    [request] = model_server.requests_for("/v1/chat/completions")[-1:]
    assert request.json["max_completion_tokens"] == 32 and request.json["temperature"] == 0
