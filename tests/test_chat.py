"""`ChatRenderer` with the bundled SmolLM2 tokenizer (a template without native tools).

The property that matters most is the last one: appending pieces (prompt, sampled tokens,
close-of-turn, tool results) yields the same text the chat template renders for the whole
conversation, so what the model trains on is what it would be prompted with.
"""

from __future__ import annotations

import copy
import json

import pytest

from agentrft.models.chat import FALLBACK_INSTRUCTIONS, ChatRenderer
from agentrft.models.toolcalls import format_call, parse_tool_calls

TOOLS = [
    {"type": "function", "function": {"name": "lookup", "description": "Look a fact up",
                                      "parameters": {"type": "object",
                                                     "properties": {"key": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "cat", "description": "Read a file",
                                      "parameters": {"type": "object",
                                                     "properties": {"path": {"type": "string"}}}}},
]
BLOCK = FALLBACK_INSTRUCTIONS.format(schemas="\n".join(json.dumps(t) for t in TOOLS))


def decode(tok, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False)


def template(tok, messages, *, add_generation_prompt: bool) -> str:
    return tok.apply_chat_template(messages, tokenize=False,
                                   add_generation_prompt=add_generation_prompt)


def test_smollm2_uses_the_fallback_and_stops_on_im_end(tokenizer, renderer):
    assert not renderer.native_tools and not renderer.has_thinking
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in renderer.stop_token_ids and tokenizer.eos_token_id in renderer.stop_token_ids
    assert tokenizer.unk_token_id not in renderer.stop_token_ids


def test_without_tools_the_prompt_is_the_template_verbatim(tokenizer, renderer):
    messages = [{"role": "user", "content": "Hi there"}]
    text = template(tokenizer, messages, add_generation_prompt=True)
    assert renderer.prompt_ids(messages, []) == tokenizer.encode(text, add_special_tokens=False)
    assert decode(tokenizer, renderer.prompt_ids(messages, [])) == text


def test_fallback_adds_a_system_message_with_the_schemas(tokenizer, renderer):
    messages = [{"role": "user", "content": "What was ACME's revenue?"}]
    text = decode(tokenizer, renderer.prompt_ids(messages, TOOLS))
    assert text == ("<|im_start|>system\n" + BLOCK + "<|im_end|>\n"
                    "<|im_start|>user\nWhat was ACME's revenue?<|im_end|>\n<|im_start|>assistant\n")
    assert "You are a helpful AI assistant named SmolLM" not in text  # ours replaces the default
    for tool in TOOLS:
        assert json.dumps(tool) in text


@pytest.mark.parametrize("role", ["system", "developer"])
def test_fallback_merges_the_schemas_into_an_existing_system_message(tokenizer, renderer, role):
    messages = [{"role": role, "content": "Be brief."}, {"role": "user", "content": "Q?"}]
    text = decode(tokenizer, renderer.prompt_ids(messages, TOOLS))
    assert text.count("<|im_start|>system") == 1 and "<|im_start|>developer" not in text
    assert text.startswith("<|im_start|>system\nBe brief.\n\n" + BLOCK + "<|im_end|>\n")
    assert text.endswith("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n")


def test_demonstration_tool_calls_are_rendered_as_tool_call_text(tokenizer, renderer):
    messages = [
        {"role": "user", "content": "Revenue and CEO?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "lookup", "arguments": '{"key": "revenue"}'}},  # JSON string
            {"id": "call_2", "type": "function",
             "function": {"name": "lookup", "arguments": {"key": "ceo"}}},  # object
        ]},
        {"role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "42"},
        {"role": "tool", "tool_call_id": "call_2", "name": "lookup", "content": "Ada"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "cat", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_3", "content": "file"},
    ]
    before = copy.deepcopy(messages)
    normalized = renderer.normalize(messages, TOOLS)
    assert messages == before  # the caller's messages are not modified

    assert normalized[2] == {"role": "assistant", "content": (
        'Let me check.\n'
        '<tool_call>{"name": "lookup", "arguments": {"key": "revenue"}}</tool_call>\n'
        '<tool_call>{"name": "lookup", "arguments": {"key": "ceo"}}</tool_call>')}
    assert normalized[5] == {"role": "assistant",
                             "content": '<tool_call>{"name": "cat", "arguments": {}}</tool_call>'}
    assert normalized[3] == {"role": "tool", "content": "42"}  # ids/names the template can't show
    # The demonstration is in exactly the format the parser reads back.
    parsed = parse_tool_calls(normalized[2]["content"], {"lookup", "cat"})
    assert [(c.name, c.arguments) for c in parsed.calls] == [("lookup", {"key": "revenue"}),
                                                            ("lookup", {"key": "ceo"})]
    assert parsed.content == "Let me check."

    text = decode(tokenizer, renderer.prompt_ids(messages, TOOLS))
    assert text == template(tokenizer, normalized, add_generation_prompt=True)
    assert "<|im_start|>tool\n42<|im_end|>\n<|im_start|>tool\nAda<|im_end|>\n" in text


def test_close_turn_after_a_stop_token_adds_only_what_follows_it(tokenizer, renderer):
    sampled = tokenizer.encode("The answer is 42.", add_special_tokens=False)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    close = renderer.close_turn_ids(sampled + [im_end])
    assert decode(tokenizer, close) == "\n"
    assert im_end not in close


def test_close_turn_after_a_truncated_turn_adds_the_end_of_turn(tokenizer, renderer):
    sampled = tokenizer.encode("The answer is", add_special_tokens=False)
    assert decode(tokenizer, renderer.close_turn_ids(sampled)) == "<|im_end|>\n"
    assert decode(tokenizer, renderer.close_turn_ids([])) == "<|im_end|>\n"


def test_tool_results_are_tool_messages_then_the_generation_prompt(tokenizer, renderer):
    ids = renderer.tool_results_ids([
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error 400: unknown key 'x'"},
    ])
    assert decode(tokenizer, ids) == ("<|im_start|>tool\n42<|im_end|>\n"
                                      "<|im_start|>tool\nError 400: unknown key 'x'<|im_end|>\n"
                                      "<|im_start|>assistant\n")


def test_incremental_rendering_matches_the_template_of_the_whole_conversation(tokenizer, renderer):
    """prompt + sampled + close + tool results + … decodes to the template's own rendering."""
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    enc = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What was ACME's 2023 revenue?"}]
    calls_1 = [{"id": "call_a", "type": "function",
                "function": {"name": "lookup", "arguments": '{"key": "revenue"}'}},
               {"id": "call_b", "type": "function",
                "function": {"name": "cat", "arguments": '{"path": "notes.txt"}'}}]
    calls_2 = [{"id": "call_c", "type": "function",
                "function": {"name": "lookup", "arguments": '{"key": "year"}'}}]
    # What the model writes, in the fallback format; turn 2 is cut off by max_new_tokens
    # (no stop token) right after its call.
    turn_1 = "Let me check.\n" + "\n".join(format_call(c["function"]["name"], c["function"]["arguments"])
                                          for c in calls_1)
    turn_2 = format_call("lookup", '{"key": "year"}')
    turn_3 = "ACME's 2023 revenue was $42M."
    results_1 = [{"role": "tool", "tool_call_id": "call_a", "content": "$42M"},
                 {"role": "tool", "tool_call_id": "call_b", "content": "nothing here"}]
    results_2 = [{"role": "tool", "tool_call_id": "call_c", "content": "2023"}]

    sampled_1, sampled_2, sampled_3 = enc(turn_1) + [im_end], enc(turn_2), enc(turn_3) + [im_end]
    ids = renderer.prompt_ids(messages, TOOLS)
    ids += sampled_1 + renderer.close_turn_ids(sampled_1) + renderer.tool_results_ids(results_1)
    ids += sampled_2 + renderer.close_turn_ids(sampled_2) + renderer.tool_results_ids(results_2)
    ids += sampled_3 + renderer.close_turn_ids(sampled_3)

    conversation = messages + [
        {"role": "assistant", "content": "Let me check.", "tool_calls": calls_1}, *results_1,
        {"role": "assistant", "content": "", "tool_calls": calls_2}, *results_2,
        {"role": "assistant", "content": turn_3},
    ]
    whole = template(tokenizer, renderer.normalize(conversation, TOOLS), add_generation_prompt=False)
    assert decode(tokenizer, ids) == whole

    # And each prefix the engine is prompted with is the template's generation prompt.
    prefix = renderer.prompt_ids(messages, TOOLS) + sampled_1 + renderer.close_turn_ids(sampled_1) \
        + renderer.tool_results_ids(results_1)
    partial = renderer.normalize(conversation[:2 + 1 + len(results_1)], TOOLS)
    assert decode(tokenizer, prefix) == template(tokenizer, partial, add_generation_prompt=True)


NATIVE_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n<tools>{{ tools | tojson }}</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if m.get('tool_calls') %}[calls:{{ m['tool_calls'] | length }}]{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_with_native_tools_gets_them_natively(tokenizer):
    native = copy.deepcopy(tokenizer)
    native.chat_template = NATIVE_TEMPLATE
    renderer = ChatRenderer(native)
    assert renderer.native_tools
    messages = [{"role": "user", "content": "Q?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "cat", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    normalized = renderer.normalize(messages, TOOLS)
    assert normalized[1]["tool_calls"] == messages[1]["tool_calls"]  # left to the template
    assert normalized[2]["tool_call_id"] == "c1"
    text = decode(native, renderer.prompt_ids(messages, TOOLS))
    assert "You can call tools." not in text and "[calls:1]" in text
    assert text.startswith("<|im_start|>system\n<tools>") and '"name": "lookup"' in text
