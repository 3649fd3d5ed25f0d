"""`POST /v1/responses` of `agentrft serve` (a real child process on loopback), driven by the
official `openai` SDK the way OpenAI's Agent RFT notebook drives it: a tool loop whose
`function_call` items are executed against a real tool server on loopback and sent back as
`function_call_output` items.

The served model is the tiny one, trained (supervised, seconds) to answer a question with
two parallel tool calls and to answer in text once both results are in, so the calls come
from a real model's sampling, rendering and parsing.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from agentrft.models.chat import ChatRenderer
from agentrft.models.loading import load_tokenizer
from agentrft.models.toolcalls import OPEN, format_call
from tests.serving_fixtures import ServeProcess, overfit
from tests.tool_server import LoopbackToolServer

MODEL = "tool-caller"
PARAMETERS = {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}
TOOLS = [{"type": "function", "name": "lookup", "description": "Look up the room of a person.",
          "parameters": PARAMETERS}]  # the Responses API's flat shape
CHAT_TOOLS = [{"type": "function", "function": {"name": "lookup",
                                                 "description": "Look up the room of a person.",
                                                 "parameters": PARAMETERS}}]
QUESTION = "Where are Ada and Bob?"
ROOMS = {"ada": "Room 12", "bob": "Room 7"}
CALLS_TEXT = "\n".join(format_call("lookup", {"key": k}) for k in ROOMS)
ANSWER = "Ada is in room 12 and Bob is in room 7."


def _answer_messages() -> list[dict]:
    calls = [{"id": f"call_{k}", "type": "function",
              "function": {"name": "lookup", "arguments": json.dumps({"key": k})}} for k in ROOMS]
    return [{"role": "user", "content": QUESTION},
            {"role": "assistant", "content": None, "tool_calls": calls},
            *({"role": "tool", "tool_call_id": f"call_{k}", "content": v} for k, v in ROOMS.items())]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("responses")
    tok = load_tokenizer(str(tiny_model_dir))
    renderer = ChatRenderer(tok)
    stop = [renderer.stop_token_ids[0]]
    examples = [(renderer.prompt_ids(messages, CHAT_TOOLS),
                 tok.encode(target, add_special_tokens=False) + stop)
                for messages, target in (([{"role": "user", "content": QUESTION}], CALLS_TEXT),
                                         (_answer_messages(), ANSWER))]
    ckpt = overfit(tiny_model_dir, tmp / "step_000001", examples)
    proc = ServeProcess(str(ckpt), tmp, "--served-model-name", MODEL)
    yield proc, renderer
    proc.stop()


@pytest.fixture(scope="module")
def tools():
    with LoopbackToolServer(lookup=ROOMS) as tool_server:
        yield tool_server


def client_for(server) -> OpenAI:
    return OpenAI(base_url=server[0].base_url, api_key="unused", max_retries=0, timeout=60)


def run_tool(tool_server, call_id: str, name: str, arguments: str) -> str:
    """What the notebook's tool executor does: POST the call to the tool's endpoint (DESIGN.md's
    wire format) and return its output; a 4xx (the model called it wrong) is the output."""
    r = httpx.post(tool_server.url(f"/{name}"), timeout=10, json={
        "type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
        "arguments": arguments, "trace_id": "trace_responses_test", "item": {}})
    if 400 <= r.status_code < 500:
        return f"Error {r.status_code}: {r.text}"
    r.raise_for_status()
    return r.json()["output"]


def responses_loop(client, tool_server, *, max_turns: int = 4, model: str = MODEL,
                   first: list | None = None, **kwargs):
    """The notebook's loop: create, run every function_call, send the outputs back with the
    whole conversation (store: false), until a turn calls no tool. Returns each turn's
    response."""
    items: list = list(first or [{"role": "user", "content": QUESTION}])
    turns = []
    for _ in range(max_turns):
        r = client.responses.create(model=model, input=items, tools=TOOLS, store=False, **kwargs)
        turns.append(r)
        calls = [o for o in r.output if o.type == "function_call"]
        if not calls:
            return turns
        items += r.output  # echo every item, as the notebook does (the SDK serialises them)
        items += [{"type": "function_call_output", "call_id": c.call_id,
                   "output": run_tool(tool_server, c.call_id, c.name, c.arguments)} for c in calls]
    raise AssertionError(f"no final answer in {max_turns} turns")


def chat_loop(client, tool_server, *, max_turns: int = 4, **kwargs):
    messages: list = [{"role": "user", "content": QUESTION}]
    turns = []
    for _ in range(max_turns):
        r = client.chat.completions.create(model=MODEL, messages=messages, tools=CHAT_TOOLS,
                                           **kwargs)
        turns.append(r)
        message = r.choices[0].message
        if not message.tool_calls:
            return turns
        messages.append(message.model_dump(exclude_none=True))
        messages += [{"role": "tool", "tool_call_id": c.id,
                      "content": run_tool(tool_server, c.id, c.function.name, c.function.arguments)}
                     for c in message.tool_calls]
    raise AssertionError(f"no final answer in {max_turns} turns")


def test_notebook_tool_loop_through_the_sdk(server, tools):
    client = client_for(server)
    tools.clear()
    turns = responses_loop(client, tools, tool_choice="auto", parallel_tool_calls=True,
                           reasoning={"effort": "medium"}, include=["reasoning.encrypted_content"],
                           text={"format": {"type": "text"}}, temperature=0)
    assert len(turns) == 2
    first, last = turns
    calls = [o for o in first.output if o.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == \
        [("lookup", {"key": "ada"}), ("lookup", {"key": "bob"})]
    assert len({c.call_id for c in calls}) == 2 and all(c.id.startswith("fc_") for c in calls)
    assert first.status == "completed" and first.output_text == ""
    # the tool server saw both calls, with the ids the response gave them
    seen = [json.loads(r.body) for r in tools.requests_for("/lookup")]
    assert [s["call_id"] for s in seen] == [c.call_id for c in calls]

    assert last.output_text == ANSWER and last.status == "completed"
    (message,) = last.output
    assert message.type == "message" and message.role == "assistant"
    # usage: the prompt is exactly what the chat template renders for this conversation
    renderer = server[1]
    assert first.usage.input_tokens == len(renderer.prompt_ids(
        [{"role": "user", "content": QUESTION}], CHAT_TOOLS))
    assert last.usage.input_tokens == len(renderer.prompt_ids(_answer_messages(), CHAT_TOOLS))
    for r in turns:
        u = r.usage
        assert u.total_tokens == u.input_tokens + u.output_tokens and u.output_tokens > 5
        assert u.input_tokens_details.cached_tokens == 0
        assert u.output_tokens_details.reasoning_tokens == 0


def test_chat_completions_and_responses_make_the_same_tool_calls(server, tools):
    client = client_for(server)
    via_responses = responses_loop(client, tools, temperature=0, extra_body={"seed": 3})
    via_chat = chat_loop(client, tools, temperature=0, seed=3)
    assert len(via_responses) == len(via_chat) == 2
    for r, c in zip(via_responses, via_chat):
        r_calls = [(o.name, json.loads(o.arguments)) for o in r.output if o.type == "function_call"]
        c_calls = [(t.function.name, json.loads(t.function.arguments))
                   for t in c.choices[0].message.tool_calls or []]
        assert r_calls == c_calls
        assert r.usage.input_tokens == c.usage.prompt_tokens  # the same rendered prompt
        assert r.usage.output_tokens == c.usage.completion_tokens
    assert via_responses[-1].output_text == via_chat[-1].choices[0].message.content == ANSWER
    assert len(via_responses[0].output) == 2  # both calls, and no empty message

    # Sampling above temperature 0 with a seed: the same tokens through both APIs.
    kwargs = dict(temperature=1.0, max_output_tokens=12, extra_body={"seed": 11})
    free = [{"role": "user", "content": "Say something."}]
    a = client.responses.create(model=MODEL, input=free, **kwargs)
    b = client.chat.completions.create(model=MODEL, messages=free, temperature=1.0,
                                       max_completion_tokens=12, seed=11)
    assert a.output_text == b.choices[0].message.content and a.usage.output_tokens > 1


def test_streamed_events_match_the_whole_response(server):
    client = client_for(server)
    whole = client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS, temperature=0)
    events = list(client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS,
                                          temperature=0, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and \
        kinds[-1] == "response.completed"
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    call_events = ["response.output_item.added", "response.function_call_arguments.delta",
                   "response.function_call_arguments.done", "response.output_item.done"]
    assert kinds[2:-1] == call_events * 2  # two calls, no text leaked before them
    done = events[-1].response
    assert [(o.name, o.arguments) for o in done.output] == \
        [(o.name, o.arguments) for o in whole.output]
    args = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
    assert args == [o.arguments for o in done.output]
    assert done.usage.output_tokens == whole.usage.output_tokens

    # Text streams token by token; the deltas make the final text.
    items = [{"role": "user", "content": QUESTION}]
    items += [{"type": "function_call", "call_id": f"call_{k}", "name": "lookup",
               "arguments": json.dumps({"key": k})} for k in ROOMS]
    items += [{"type": "function_call_output", "call_id": f"call_{k}", "output": v}
              for k, v in ROOMS.items()]
    with client.responses.stream(model=MODEL, input=items, tools=TOOLS, temperature=0) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 3 and "".join(deltas) == ANSWER == final.output_text


def test_tool_choice_and_parallel_tool_calls(server, tools):
    client = client_for(server)
    renderer = server[1]
    one = client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS, temperature=0,
                                  parallel_tool_calls=False)
    assert [(o.type, json.loads(o.arguments)) for o in one.output] == [("function_call", {"key": "ada"})]
    assert one.parallel_tool_calls is False

    none = client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS, temperature=0,
                                   tool_choice="none", max_output_tokens=8)
    assert [o.type for o in none.output] == ["message"]
    assert none.usage.input_tokens == len(renderer.prompt_ids(
        [{"role": "user", "content": QUESTION}], []))  # no tools rendered

    # Forced calls: the reply's head is written into the prompt, the model continues it.
    tok = renderer.tok
    base = len(renderer.prompt_ids([{"role": "user", "content": QUESTION}], CHAT_TOOLS))
    forced = client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS, temperature=0,
                                     tool_choice="required")
    assert forced.usage.input_tokens == base + len(tok.encode(OPEN, add_special_tokens=False))
    assert [json.loads(o.arguments) for o in forced.output] == [{"key": "ada"}, {"key": "bob"}]
    named = client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS, temperature=0,
                                    tool_choice={"type": "function", "name": "lookup"})
    assert [o.name for o in named.output] == ["lookup", "lookup"]
    assert named.tool_choice.name == "lookup"
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                          tools=CHAT_TOOLS, temperature=0, tool_choice="required")
    assert chat.usage.prompt_tokens == forced.usage.input_tokens
    assert [c.function.arguments for c in chat.choices[0].message.tool_calls] == \
        [o.arguments for o in forced.output]

    # reasoning.effort on a template without a thinking mode: no effect, and said so
    raw = client.responses.with_raw_response.create(model=MODEL, input="Hi", max_output_tokens=2,
                                                    reasoning={"effort": "high"})
    assert "no thinking mode" in raw.headers["agentrft-reasoning-effort"]
    assert raw.parse().reasoning.effort == "high"
    short = client.responses.create(model=MODEL, input="Hi", max_output_tokens=2, temperature=0)
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"
    assert short.usage.output_tokens == 2


@pytest.mark.parametrize("body, status, param, says", [
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, 400,
     "text.format.schema", "needs a schema"),
    ({"text": {"format": {"type": "grammar"}}}, 400, "text.format.type", "not supported"),
    ({"store": True}, 400, "store", "keeps no"),
    ({"previous_response_id": "resp_1"}, 400, "previous_response_id", "keeps no"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, 400,
     "input[0].content[0]", "input_image"),
    ({"input": [{"role": "user", "content": "q"},
                {"type": "function_call_output", "call_id": "call_x", "output": "1"}]}, 400,
     "input[1].call_id", "call_x"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input[0].type", "no state"),
    ({"input": []}, 400, "input", "empty"),
    ({"input": [{"role": "robot", "content": "x"}]}, 400, "input[0].role", "role"),
    ({"tools": [{"type": "web_search"}]}, 400, "tools[0].type", "function tools"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "name": "nope"}}, 400, "tool_choice",
     "nope"),
    ({"tool_choice": "required"}, 400, "tool_choice", "at least one tool"),
    ({"max_output_tokens": 10**6}, 400, "max_output_tokens", "context"),
    ({"temperature": 3}, 400, "temperature", "temperature"),
    ({"reasoning": {"effort": "extreme"}}, 400, "reasoning.effort", "effort"),
    ({"bogus": 1}, 400, "bogus", "unknown key"),
    ({"model": "gpt-nope"}, 404, "model", "does not exist"),
])
def test_bad_requests_get_openai_errors_naming_the_field(server, body, status, param, says):
    r = httpx.post(f"{server[0].base_url}/responses", timeout=30,
                   json={"model": MODEL, "input": "Hi", **body})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and says in error["message"]
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_sdk_raises_its_usual_errors(server):
    client = client_for(server)
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.responses.create(model=MODEL, input="Hi", text={"format": {"type": "grammar"}})
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-nope", input="Hi")


def test_input_items_become_the_chat_path_messages():
    from agentrft.serving.responses import ResponsesRequest, input_messages

    req = ResponsesRequest(model="m", instructions="Be brief.", input=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Where "},
                                                        {"type": "input_text", "text": "is Ada?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"key": "ada"}'},
        {"type": "function_call", "call_id": "c2", "name": "lookup", "arguments": '{"key": "bob"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "Room 12"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "Room 7"}]},
        {"type": "function_call", "call_id": "c3", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c3", "output": "?"},
        {"role": "user", "content": "Thanks"},
    ])
    call = lambda cid, args: {"id": cid, "type": "function",  # noqa: E731
                              "function": {"name": "lookup", "arguments": args}}
    assert input_messages(req) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is Ada?"},
        {"role": "assistant", "content": "Looking.",  # text and calls: one assistant turn
         "tool_calls": [call("c1", '{"key": "ada"}'), call("c2", '{"key": "bob"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "Room 12"},
        {"role": "tool", "tool_call_id": "c2", "content": "Room 7"},
        {"role": "assistant", "content": "", "tool_calls": [call("c3", "{}")]},
        {"role": "tool", "tool_call_id": "c3", "content": "?"},
        {"role": "user", "content": "Thanks"},
    ]


@pytest.mark.slow
def test_bundled_model_runs_the_notebook_loop(tmp_path):
    """The real bundled model, one demonstration exchange in the input (it rarely calls a tool
    without one), a real tool server whose directory has everyone in room 12 (the model
    misspells names): function_call items out, outputs in, a final answer."""
    demo = [{"role": "user", "content": "Where is Carl?"},
            {"type": "function_call", "call_id": "call_demo", "name": "lookup",
             "arguments": json.dumps({"key": "carl"})},
            {"type": "function_call_output", "call_id": "call_demo", "output": "Room 3"},
            {"role": "assistant", "content": "Carl is in room 3."},
            {"role": "user", "content": "Where is Ada?"}]
    with LoopbackToolServer() as tools:
        tools.add_handler("/lookup", lambda body, request: {"output": "Room 12"})
        proc = ServeProcess("bundled:smollm2-135m-instruct", tmp_path, "--served-model-name", "smol")
        try:
            client = OpenAI(base_url=proc.base_url, api_key="unused", max_retries=0, timeout=300)
            turns = responses_loop(client, tools, model="smol", first=demo, max_turns=3,
                                   tool_choice="auto", parallel_tool_calls=True, temperature=0,
                                   max_output_tokens=48, reasoning={"effort": "low"},
                                   include=["reasoning.encrypted_content"])
        finally:
            proc.stop()
        seen = [json.loads(r.body)["call_id"] for r in tools.requests_for("/lookup")]
    calls = [o for o in turns[0].output if o.type == "function_call"]
    assert calls and all(c.name == "lookup" and "key" in json.loads(c.arguments) for c in calls)
    assert seen[:len(calls)] == [c.call_id for c in calls]
    assert len(turns) >= 2 and turns[-1].output_text.strip()
    assert turns[-1].usage.input_tokens > turns[0].usage.input_tokens


def test_reasoning_effort_maps_to_the_thinking_switch_and_replies_split_the_think_block():
    from agentrft.engines.base import SamplingParams
    from agentrft.serving.chat_turn import ChatTurn, parse_reply
    from agentrft.serving.responses import ResponsesRequest, thinking

    def effort(value, has_thinking):
        return thinking(ResponsesRequest(model="m", input="q", reasoning={"effort": value}),
                        has_thinking)

    assert effort("high", False) == ({}, "high: no effect (the chat template has no thinking mode)")
    assert effort("minimal", True)[0] == {"enable_thinking": False}
    assert effort("medium", True)[0] == {"enable_thinking": True}
    assert thinking(ResponsesRequest(model="m", input="q"), True) == ({}, None)

    turn = ChatTurn(None, [1, 2], frozenset({"lookup"}), SamplingParams())
    think, close = 900, 901  # the ids of <think> and </think> in a thinking tokenizer
    text = '<think>Ada? Look it up.</think>\n<tool_call>{"name": "lookup", "arguments": {"key": "ada"}}</tool_call>'
    r = parse_reply(text, turn, "stop", think_ids=(think, close), token_ids=[think, 5, 6, close, 7, 8])
    assert r.reasoning == "Ada? Look it up." and r.reasoning_tokens == 4
    assert [(c.name, c.arguments) for c in r.calls] == [("lookup", {"key": "ada"})]
    plain = parse_reply(text, turn, "stop")  # a template without thinking: no split
    assert plain.reasoning is None and plain.reasoning_tokens == 0 and plain.calls


THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}")


def test_reasoning_effort_budgets_a_thinking_templates_thinking(tokenizer):
    """A tokenizer with `<think>`/`</think>` and a template with `enable_thinking` (as Qwen3's),
    the tiny random model (it never closes its thinking itself): `low` effort caps the
    thinking, `</think>` is written for it, and the answer is sampled after it."""
    import copy

    from fastapi.testclient import TestClient

    from agentrft.serving.app import create_app
    from agentrft.serving.host import ModelHost
    from tests.tiny_model import tiny_llama

    tok = copy.deepcopy(tokenizer)
    tok.add_tokens(["<think>", "</think>"])
    tok.chat_template = THINKING_TEMPLATE
    close = tok.convert_tokens_to_ids("</think>")
    client = TestClient(create_app(ModelHost(tiny_llama(vocab_size=len(tok)), tok, name="thinker")))

    def ask(effort: str, **extra):
        r = client.post("/v1/responses", json={"model": "thinker", "input": "Hi", "temperature": 0,
                                               "reasoning": {"effort": effort}, **extra})
        assert r.status_code == 200, r.text
        return r

    low = ask("low", max_output_tokens=20)
    assert low.headers["agentrft-reasoning-effort"] == "low: thinking on, at most 10 thinking tokens"
    body = low.json()
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] == 11  # 10 + </think>
    assert body["output"][0]["type"] == "reasoning" and body["output"][1]["type"] == "message"
    assert body["usage"]["output_tokens"] <= 20
    off = ask("none", max_output_tokens=4).json()
    thinking_off = len(tok.encode("<think>\n\n</think>\n\n", add_special_tokens=False))
    assert off["usage"]["input_tokens"] == body["usage"]["input_tokens"] + thinking_off
    assert off["usage"]["output_tokens_details"]["reasoning_tokens"] == 0
    assert close not in tok.encode(off["output"][0]["content"][0]["text"])
