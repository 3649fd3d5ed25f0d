"""Structured output by constrained decoding: a random model under a JSON schema's grammar
always writes JSON that validates (both in-process engines, several seeds), the recorded
log-probs are those of the masked distribution, and the chat, Responses, jobs and local-judge
paths all decode under it.

The tiny random Llama with the bundled tokenizer (vocabulary 49,152) is the hardest writer
there is: left alone it never writes JSON. Schemas here are bounded (enums, bounded integers,
short strings) so that a random walk through the grammar ends within the token budget.
"""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
import torch
from fastapi.testclient import TestClient

from agentrft.engines.base import SamplingParams
from agentrft.engines.constrained import Constraint, GrammarError, mask_logits
from agentrft.engines.static_engine import StaticEngine
from agentrft.engines.transformers_engine import TransformersEngine
from agentrft.models.structured import FormatError, read_format, reply_grammar
from tests.tiny_model import tiny_llama

SCHEMA = {
    "type": "object",
    "properties": {
        "unit": {"enum": ["USD", "EUR"]},
        "year": {"type": "integer", "minimum": 2000, "maximum": 2030},
        "ok": {"type": "boolean"},
        "tag": {"type": "string", "maxLength": 6},
    },
    "required": ["unit", "year", "ok", "tag"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "record", "schema": SCHEMA, "strict": True}}
STRICT_TOOL = {"type": "function", "function": {
    "name": "lookup", "strict": True, "parameters": {
        "type": "object", "properties": {"key": {"enum": ["ada", "bob"]}},
        "required": ["key"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def model(tokenizer):
    m = tiny_llama(seed=3, vocab_size=len(tokenizer), hidden_size=32)
    m.config.pad_token_id = tokenizer.pad_token_id
    return m


@pytest.fixture(scope="module")
def constraint(tokenizer, renderer):
    grammar = reply_grammar(read_format(FORMAT, param="response_format"), [])
    return Constraint.compile(grammar, tokenizer, renderer.stop_token_ids)


def _engines(model, tokenizer):
    return [TransformersEngine(model, pad_token_id=tokenizer.pad_token_id, seed=0),
            StaticEngine(model, pad_token_id=tokenizer.pad_token_id, seed=0, max_len=256,
                         cuda_graphs=False, max_slots=8)]


def test_a_random_model_under_a_schema_always_writes_valid_json(model, tokenizer, renderer,
                                                                 constraint):
    prompt = renderer.prompt_ids([{"role": "user", "content": "Give the record."}], [])
    params = SamplingParams(max_new_tokens=48, stop_token_ids=renderer.stop_token_ids,
                            constraint=constraint)
    free = SamplingParams(max_new_tokens=48, stop_token_ids=renderer.stop_token_ids)
    for engine in _engines(model, tokenizer):
        for seed in range(3):
            engine.reseed(seed)
            outs = engine.generate([prompt] * 4, params)
            for c in outs:
                assert c.finish_reason == "stop", tokenizer.decode(c.token_ids)
                assert c.token_ids[-1] in renderer.stop_token_ids
                jsonschema.validate(json.loads(tokenizer.decode(c.token_ids[:-1])), SCHEMA)
        # the same model unconstrained writes no JSON at all (the test could fail)
        engine.reseed(0)
        text = tokenizer.decode(engine.generate([prompt], free)[0].token_ids)
        with pytest.raises(ValueError):
            json.loads(text)


def test_recorded_logprobs_are_those_of_the_masked_distribution(model, tokenizer, renderer,
                                                                 constraint):
    prompt = renderer.prompt_ids([{"role": "user", "content": "Record?"}], [])
    engine = TransformersEngine(model, pad_token_id=tokenizer.pad_token_id, seed=5)
    params = SamplingParams(temperature=0.7, max_new_tokens=40,
                            stop_token_ids=renderer.stop_token_ids, constraint=constraint)
    (c,) = engine.generate([prompt], params)
    ids = torch.tensor([prompt + c.token_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()  # (T, V)
    guide = constraint.guide()
    masked = []
    for t, tok in enumerate(c.token_ids):  # replay the grammar along the sampled tokens
        row = mask_logits(logits[t:t + 1], [guide])[0]
        masked.append(torch.log_softmax(row / 0.7, -1)[tok].item())
        guide.accept(tok)
    plain = torch.log_softmax(logits / 0.7, -1).gather(-1, torch.tensor(c.token_ids)[:, None])[:, 0]
    assert c.logprobs == pytest.approx(masked, abs=1e-4)
    assert max(c.logprobs) == pytest.approx(0.0, abs=1e-6)  # forced tokens: probability 1
    assert all(m >= p - 1e-5 for m, p in zip(c.logprobs, plain.tolist()))
    assert sum(c.logprobs) > plain.sum().item() + 1.0  # the mask moved real mass


def test_formats_are_read_and_bad_ones_name_the_field():
    assert read_format(None, param="p").kind == "text"
    assert read_format({"type": "json_object"}, param="p").kind == "json_object"
    flat = read_format({"type": "json_schema", "name": "r", "schema": SCHEMA, "strict": True},
                       param="text.format")
    assert flat.schema == SCHEMA and flat.strict and flat.name == "r"
    with pytest.raises(FormatError) as e:
        read_format({"type": "json_schema", "json_schema": {"name": "r"}}, param="response_format")
    assert e.value.param == "response_format.json_schema.schema"
    with pytest.raises(FormatError) as e:
        read_format({"type": "xml"}, param="text.format")
    assert e.value.param == "text.format.type"


def test_a_schema_the_engine_cannot_compile_is_a_clear_error(tokenizer, renderer):
    bad = reply_grammar(read_format({"type": "json_schema", "json_schema": {
        "name": "x", "strict": True, "schema": {"type": "object", "properties": {
            "a": {"$ref": "#/$defs/missing"}}}}}, param="p"), [])
    with pytest.raises(GrammarError):
        Constraint.compile(bad, tokenizer, renderer.stop_token_ids)


def test_tool_calls_follow_a_strict_tools_parameters(model, tokenizer, renderer):
    grammar = reply_grammar(read_format(None, param="p"), [STRICT_TOOL], mode="required",
                            parallel=False)
    c = Constraint.compile(grammar, tokenizer, renderer.stop_token_ids)
    from agentrft.models.toolcalls import parse_tool_calls

    prompt = renderer.prompt_ids([{"role": "user", "content": "Where is Ada?"}], [STRICT_TOOL])
    engine = TransformersEngine(model, pad_token_id=tokenizer.pad_token_id, seed=1)
    outs = engine.generate([prompt] * 4, SamplingParams(
        max_new_tokens=80, stop_token_ids=renderer.stop_token_ids, constraint=c))
    for out in outs:
        assert out.finish_reason == "stop"
        parsed = parse_tool_calls(tokenizer.decode(out.token_ids, skip_special_tokens=True),
                                  {"lookup"})
        assert parsed.calls and not parsed.problems
        assert all(call.arguments["key"] in ("ada", "bob") for call in parsed.calls)


# --- the serving API -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(model, tokenizer):
    from agentrft.serving.app import create_app
    from agentrft.serving.host import ModelHost

    host = ModelHost(model, tokenizer, name="tiny", max_model_len=512)
    with TestClient(create_app(host)) as c:
        yield c


def test_chat_completions_answer_in_the_schema(client):
    r = client.post("/v1/chat/completions", json={
        "model": "tiny", "messages": [{"role": "user", "content": "Record?"}], "n": 3,
        "max_tokens": 60, "seed": 1, "response_format": FORMAT})
    assert r.status_code == 200, r.text
    for choice in r.json()["choices"]:
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
    obj = client.post("/v1/chat/completions", json={
        "model": "tiny", "messages": [{"role": "user", "content": "Any JSON"}],
        "max_tokens": 200, "seed": 0, "response_format": {"type": "json_object"}}).json()
    if obj["choices"][0]["finish_reason"] == "stop":  # an object may be long for a random model
        assert isinstance(json.loads(obj["choices"][0]["message"]["content"]), dict)
    else:
        assert obj["choices"][0]["message"]["content"].startswith("{")


def test_chat_strict_tool_arguments_follow_their_schema(client):
    r = client.post("/v1/chat/completions", json={
        "model": "tiny", "messages": [{"role": "user", "content": "Where is Ada?"}],
        "tools": [STRICT_TOOL], "tool_choice": "required", "parallel_tool_calls": False,
        "max_tokens": 80, "seed": 2})
    body = r.json()
    assert r.status_code == 200, r.text
    calls = body["choices"][0]["message"]["tool_calls"]
    assert calls and body["choices"][0]["finish_reason"] == "tool_calls"
    for call in calls:
        assert json.loads(call["function"]["arguments"])["key"] in ("ada", "bob")


def test_responses_text_format_json_schema(client):
    r = client.post("/v1/responses", json={
        "model": "tiny", "input": "Record?", "store": False, "max_output_tokens": 60, "seed": 3,
        "text": {"format": {"type": "json_schema", "name": "record", "schema": SCHEMA,
                            "strict": True}}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["text"]["format"]["type"] == "json_schema"
    text = body["output"][-1]["content"][0]["text"]
    jsonschema.validate(json.loads(text), SCHEMA)
    bad = client.post("/v1/responses", json={
        "model": "tiny", "input": "x", "text": {"format": {"type": "json_schema", "name": "r"}}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "text.format.schema"


# --- jobs and judges -----------------------------------------------------------------------

def test_job_response_format_constrains_the_rollouts_final_answer(model, tokenizer, renderer):
    from agentrft.engines.batcher import BatchingSampler
    from agentrft.rollout.loop import RolloutEnv, run_rollouts
    from agentrft.spec.dataset import DatasetRow
    from agentrft.spec.job import Reinforcement

    rl = Reinforcement(grader={"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
                               "reference": "x", "operation": "eq"}, response_format=FORMAT)
    env = RolloutEnv(
        sampler=BatchingSampler(TransformersEngine(model, pad_token_id=tokenizer.pad_token_id,
                                                   seed=4)),
        renderer=renderer, tools={},
        params=SamplingParams(max_new_tokens=60, stop_token_ids=renderer.stop_token_ids),
        max_episode_steps=2, max_rollout_tokens=400,
        answer_format=read_format(rl.response_format, param="response_format"))
    row = DatasetRow.model_validate({"messages": [{"role": "user", "content": "Record?"}]})
    rollouts = asyncio.run(run_rollouts([(i, row) for i in range(4)], env))
    for r in rollouts:
        assert r.status == "completed", r.discard_reason
        jsonschema.validate(r.to_sample()["output_json"], SCHEMA)
        assert r.logprobs[-1] is not None


@pytest.mark.parametrize("fmt, says", [
    ({"type": "xml"}, "response_format.type"),
    ({"type": "json_schema", "json_schema": {"name": "r"}}, "response_format.json_schema.schema"),
])
def test_a_job_with_an_unusable_response_format_is_refused(fmt, says):
    from pydantic import ValidationError

    from agentrft.spec.job import Reinforcement

    with pytest.raises(ValidationError, match=says.replace(".", r"\.")):
        Reinforcement(grader={"type": "string_check", "name": "s", "input": "a",
                              "reference": "a", "operation": "eq"}, response_format=fmt)
    with pytest.raises(ValidationError, match="in-process engine"):
        Reinforcement(grader={"type": "string_check", "name": "s", "input": "a", "reference": "a",
                              "operation": "eq"}, response_format=FORMAT,
                      engine={"type": "remote", "base_url": "http://127.0.0.1:1/v1"})


def test_a_local_judge_answers_in_the_graders_schema(tiny_model_dir):
    """A random local judge can only write `{"result": <number>}` under the grader's grammar,
    so its answer always parses (free text from the same model would not)."""
    from agentrft.graders.build import build_grader

    grader = build_grader({
        "type": "score_model", "name": "judge", "model": str(tiny_model_dir), "range": [0, 10],
        "input": [{"role": "user", "content": "Score: {{sample.output_text}}"}],
        "sampling_params": {"seed": 0, "max_completions_tokens": 40}})
    results = [asyncio.run(grader.grade({"output_text": f"answer {i}"}, {}, f"trace_{i}"))
               for i in range(3)]
    for res in results:
        errors = res.metadata["errors"]
        assert not any(errors.values()), res.to_dict()
        assert 0.0 <= res.reward <= 1.0


def test_streamed_chat_and_responses_decode_under_the_schema(client):
    """The stream samples through its own loop (`serving/stream.py`): the same grammar."""
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "Record?"}], "n": 2,
            "max_tokens": 60, "seed": 4, "stream": True, "response_format": FORMAT}) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines()
                  if line.startswith("data: {")]
    texts = ["", ""]
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
    for text in texts:
        jsonschema.validate(json.loads(text), SCHEMA)
    with client.stream("POST", "/v1/responses", json={
            "model": "tiny", "input": "Record?", "max_output_tokens": 60, "seed": 5,
            "stream": True, "text": {"format": {**FORMAT["json_schema"], "type": "json_schema"}}}
            ) as r:
        done = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    (text,) = [e["text"] for e in done if e["type"] == "response.output_text.done"]
    jsonschema.validate(json.loads(text), SCHEMA)


def test_responses_logprobs_of_the_output_text(client):
    """`include: ["message.output_text.logprobs"]`: one entry per token of the text, with the
    top alternatives; under a grammar the log-probs are the masked distribution's, so a
    forced token (`{"` at the start of a schema's object) has log-prob 0."""
    body = {"model": "tiny", "input": "Record?", "max_output_tokens": 60, "seed": 6,
            "include": ["message.output_text.logprobs"], "top_logprobs": 2}
    plain = client.post("/v1/responses", json={**body, "max_output_tokens": 5}).json()
    part = plain["output"][-1]["content"][0]
    assert "".join(e["token"] for e in part["logprobs"]) == part["text"]
    assert all(len(e["top_logprobs"]) == 2 and e["logprob"] <= 0 for e in part["logprobs"])
    shaped = client.post("/v1/responses", json={**body, "text": {"format": {
        **FORMAT["json_schema"], "type": "json_schema"}}}).json()
    part = shaped["output"][-1]["content"][0]
    jsonschema.validate(json.loads(part["text"]), SCHEMA)
    assert "".join(e["token"] for e in part["logprobs"]) == part["text"]
    assert part["logprobs"][0]["logprob"] == pytest.approx(0.0, abs=1e-6)
    streamed = client.post("/v1/responses", json={**body, "stream": True})
    assert streamed.status_code == 400 and streamed.json()["error"]["param"] == "include"
