"""`agentrft serve` in a real child process on loopback, driven by the official `openai` SDK.

Two served models:
- a checkpoint trained (supervised, full weights, in the trainer's checkpoint format) to
  answer one question with a tool call, so tool calls in responses come from a real model;
- the tiny base model, with the RL trainer's LoRA checkpoint loaded and unloaded at run
  time through vLLM's endpoints.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from agentrft.models.chat import ChatRenderer
from agentrft.models.loading import load_model, load_tokenizer
from tests.serving_fixtures import ServeProcess, overfit, train_tiny
from tests.tiny_model import full_forward_logprobs

KEY = "sk-serve-test"
TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Look up the room of a person.",
    "parameters": {"type": "object", "properties": {"key": {"type": "string"}},
                   "required": ["key"]}}}]
ASK = [{"role": "user", "content": "Where is Ada?"}]
CALL_TEXT = '<tool_call>{"name": "lookup", "arguments": {"key": "ada"}}</tool_call>'
ANSWER_MESSAGES = ASK + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "lookup", "arguments": '{"key": "ada"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Room 12"}]
ANSWER_TEXT = "Ada is in room 12."


def train_tool_caller(base_dir, out_dir):
    """The tiny model, trained until greedy decoding writes CALL_TEXT after ASK and
    ANSWER_TEXT after the tool result."""
    tok = load_tokenizer(str(base_dir))
    renderer = ChatRenderer(tok)
    examples = [(renderer.prompt_ids(messages, TOOLS),
                 tok.encode(target, add_special_tokens=False) + [renderer.stop_token_ids[0]])
                for messages, target in ((ASK, CALL_TEXT), (ANSWER_MESSAGES, ANSWER_TEXT))]
    return overfit(base_dir, out_dir, examples)


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("serve-tools")
    ckpt = train_tool_caller(tiny_model_dir, tmp / "step_000001")
    server = ServeProcess(str(ckpt), tmp, "--api-key", KEY, "--served-model-name", "tool-caller")
    yield server, ckpt
    server.stop()


@pytest.fixture(scope="module")
def base_server(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("serve-base")
    server = ServeProcess(str(tiny_model_dir), tmp, "--served-model-name", "tiny-base")
    yield server, tmp
    server.stop()


def client_for(server, key=KEY) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


def test_sdk_chat_returns_the_models_tool_call_with_ids_and_logprobs(tool_server):
    server, _ = tool_server
    client = client_for(server)
    r = client.chat.completions.create(model="tool-caller", messages=ASK, tools=TOOLS,
                                       temperature=0, logprobs=True, top_logprobs=2,
                                       extra_body={"return_token_ids": True})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"key": "ada"}
    token_ids = choice.model_extra["token_ids"]
    tok = load_tokenizer("bundled:smollm2-135m-instruct")
    assert tok.decode(token_ids, skip_special_tokens=True) == CALL_TEXT
    content = choice.logprobs.content
    assert len(content) == len(token_ids) == r.usage.completion_tokens
    assert all(len(c.top_logprobs) == 2 and c.logprob <= 0 for c in content)
    assert r.model_extra["prompt_token_ids"] == ChatRenderer(tok).prompt_ids(ASK, TOOLS)
    assert r.usage.prompt_tokens == len(r.model_extra["prompt_token_ids"])

    # The tool result goes back in, and the model answers in plain text.
    r2 = client.chat.completions.create(model="tool-caller", messages=ANSWER_MESSAGES,
                                        tools=TOOLS, temperature=0)
    assert r2.choices[0].finish_reason == "stop"
    assert r2.choices[0].message.content == ANSWER_TEXT
    assert not r2.choices[0].message.tool_calls


def test_sdk_streaming_chat_with_tools(tool_server):
    server, _ = tool_server
    client = client_for(server)
    stream = client.chat.completions.create(model="tool-caller", messages=ASK, tools=TOOLS,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    calls = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "lookup"
    assert json.loads(calls[0].function.arguments) == {"key": "ada"}
    content = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert "<tool_call>" not in content  # the call text is never leaked as content
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]
    assert chunks[-1].usage.completion_tokens > 10

    # Plain text streams token by token and matches the non-streamed answer.
    pieces = [ch.delta.content for c in client.chat.completions.create(
        model="tool-caller", messages=ANSWER_MESSAGES, tools=TOOLS, temperature=0, stream=True)
        for ch in c.choices if ch.delta.content]
    assert len(pieces) > 3 and "".join(pieces) == ANSWER_TEXT


def test_streamed_and_whole_samples_agree_for_a_seed(tool_server):
    server, _ = tool_server
    client = client_for(server)
    kwargs = dict(model="tool-caller", messages=[{"role": "user", "content": "Say something."}],
                  temperature=1.0, max_tokens=12, seed=7, extra_body={"return_token_ids": True})
    whole = client.chat.completions.create(**kwargs).choices[0].model_extra["token_ids"]
    streamed = [t for c in client.chat.completions.create(stream=True, **kwargs)
                for ch in c.choices for t in (ch.model_extra.get("token_ids") or [])]
    again = client.chat.completions.create(**kwargs).choices[0].model_extra["token_ids"]
    assert whole == streamed == again and len(whole) > 1


def test_completions_take_token_id_batches_and_return_exact_logprobs(tool_server):
    server, ckpt = tool_server
    client = client_for(server)
    prompts = [[1, 520, 9531, 198], [4093, 198, 6004]]
    r = client.completions.create(model="tool-caller", prompt=prompts, max_tokens=6, temperature=1.0,
                                  seed=3, logprobs=0,
                                  extra_body={"return_token_ids": True,
                                              "return_tokens_as_token_ids": True})
    assert [c.index for c in r.choices] == [0, 1]
    model = load_model(str(ckpt))
    for prompt, choice in zip(prompts, r.choices):
        ids = choice.model_extra["token_ids"]
        assert choice.model_extra["prompt_token_ids"] == prompt and len(ids) >= 1
        assert choice.logprobs.tokens == [f"token_id:{t}" for t in ids]
        expected = full_forward_logprobs(model, prompt + ids, len(prompt))
        assert choice.logprobs.token_logprobs == pytest.approx(expected, abs=1e-4)


def test_streamed_completions_match_whole_ones(tool_server):
    server, _ = tool_server
    client = client_for(server)
    kwargs = dict(model="tool-caller", prompt=[[1, 520, 9531, 198]], max_tokens=8, temperature=1.0,
                  seed=9, n=2, logprobs=0, extra_body={"return_token_ids": True})
    whole = client.completions.create(**kwargs)
    chunks = list(client.completions.create(stream=True, **kwargs))
    for i in range(2):
        mine = [ch for c in chunks for ch in c.choices if ch.index == i]
        ids = [t for ch in mine for t in (ch.model_extra.get("token_ids") or [])]
        assert ids == whole.choices[i].model_extra["token_ids"]
        assert "".join(ch.text for ch in mine) == whole.choices[i].text
        assert [ch.finish_reason for ch in mine if ch.finish_reason] == [whole.choices[i].finish_reason]
        lps = [v for ch in mine if ch.logprobs for v in ch.logprobs.token_logprobs]
        assert lps == pytest.approx(whole.choices[i].logprobs.token_logprobs, abs=1e-4)
    text = client.completions.create(model="tool-caller", prompt="Hello", max_tokens=3, temperature=0)
    assert text.usage.prompt_tokens >= 1 and text.usage.completion_tokens >= 1


def test_bad_requests_are_4xx_with_a_message(tool_server):
    server, _ = tool_server
    client = client_for(server)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-nope", messages=ASK)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="tool-caller", messages=ASK, temperature=5)
    with pytest.raises(openai.BadRequestError, match="stop strings"):
        client.chat.completions.create(model="tool-caller", messages=ASK, stop=["\n"])
    with pytest.raises(openai.BadRequestError, match="unknown key 'bogus'"):
        client.chat.completions.create(model="tool-caller", messages=ASK, extra_body={"bogus": 1})
    with pytest.raises(openai.BadRequestError, match="context"):
        client.chat.completions.create(model="tool-caller", messages=ASK, max_tokens=100_000)
    with pytest.raises(openai.BadRequestError, match="vocabulary"):
        client.completions.create(model="tool-caller", prompt=[[10**9]])
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model="tool-caller", messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        client_for(server, key="sk-wrong").models.list()
    assert [m.id for m in client.models.list()] == ["tool-caller"]


def test_lora_adapters_load_and_unload_at_run_time(base_server, tmp_path, tiny_model_dir):
    server, _ = base_server
    client = client_for(server, key="unused")
    ckpt = train_tiny(tmp_path, tiny_model_dir, finetune="lora")
    api = httpx.Client(base_url=server.base_url, timeout=60)

    r = api.post("/load_lora_adapter", json={"lora_name": "rl-step-1", "lora_path": str(ckpt)})
    assert r.status_code == 200 and "rl-step-1" in r.text
    assert sorted(m.id for m in client.models.list()) == ["rl-step-1", "tiny-base"]
    prompt = [1, 520, 9531, 198]

    def sample(model: str):
        c = client.completions.create(model=model, prompt=[prompt], max_tokens=5, temperature=1.0,
                                      seed=11, logprobs=0, extra_body={"return_token_ids": True})
        return c.choices[0].model_extra["token_ids"], c.choices[0].logprobs.token_logprobs

    ids, logps = sample("rl-step-1")
    trained = full_forward_logprobs(load_model(str(ckpt)), prompt + ids, len(prompt))
    base = full_forward_logprobs(load_model(str(tiny_model_dir)), prompt + ids, len(prompt))
    assert logps == pytest.approx(trained, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(trained, base)) > 1e-2  # the adapter does matter
    base_ids, base_logps = sample("tiny-base")  # the base model is still served as it was
    assert base_logps == pytest.approx(
        full_forward_logprobs(load_model(str(tiny_model_dir)), prompt + base_ids, len(prompt)),
        abs=1e-4)

    # The RL-trained adapter chats through the SDK, whole and streamed, with tools offered.
    chat = dict(model="rl-step-1", messages=ASK, tools=TOOLS, temperature=1.0, seed=5,
                max_tokens=10, extra_body={"return_token_ids": True})
    whole = client.chat.completions.create(**chat).choices[0]
    streamed = [t for c in client.chat.completions.create(stream=True, **chat)
                for ch in c.choices for t in (ch.model_extra.get("token_ids") or [])]
    assert whole.model_extra["token_ids"] == streamed and whole.finish_reason in ("stop", "length")

    assert api.post("/load_lora_adapter", json={"lora_name": "rl-step-1",
                                                "lora_path": str(ckpt)}).status_code == 400
    bad = api.post("/load_lora_adapter", json={"lora_name": "x", "lora_path": str(tmp_path)})
    assert bad.status_code == 400 and "adapter_config.json" in bad.json()["error"]["message"]
    assert api.post("/unload_lora_adapter", json={"lora_name": "rl-step-1"}).status_code == 200
    with pytest.raises(openai.NotFoundError):
        sample("rl-step-1")
    gone = api.post("/unload_lora_adapter", json={"lora_name": "rl-step-1"})
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "lora_name"
    # after the last adapter is gone the base still answers, and adapters load again
    again_ids, again_logps = sample("tiny-base")
    assert again_ids == base_ids and again_logps == pytest.approx(base_logps, abs=1e-5)
    assert api.post("/load_lora_adapter", json={"lora_name": "again",
                                                "lora_path": str(ckpt)}).status_code == 200
    assert sample("again")[1] == pytest.approx(logps, abs=1e-5)
