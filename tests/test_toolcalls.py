"""`parse_tool_calls`: what the model wrote → calls to make and problems to show it."""

from __future__ import annotations

import json

import pytest

from agentrft.models.toolcalls import CLOSE, OPEN, ParsedCall, format_call, parse_tool_calls

KNOWN = {"search", "cat"}


def block(payload) -> str:
    return OPEN + (payload if isinstance(payload, str) else json.dumps(payload)) + CLOSE


def test_text_without_calls_is_the_content():
    turn = parse_tool_calls("  The answer is 42.\n", KNOWN)
    assert turn.content == "The answer is 42." and turn.calls == [] and turn.problems == []
    assert turn.attempted == 0


def test_several_calls_in_one_turn_in_order_with_content_removed():
    text = ("Let me look.\n"
            + block({"name": "search", "arguments": {"query": "ACME revenue"}})
            + "\nand\n"
            + block({"name": "cat", "arguments": {"path": "r.txt"}})
            + "\nDone.")
    turn = parse_tool_calls(text, KNOWN)
    assert turn.calls == [ParsedCall("search", {"query": "ACME revenue"}),
                          ParsedCall("cat", {"path": "r.txt"})]
    assert turn.problems == [] and turn.attempted == 2
    assert OPEN not in turn.content and CLOSE not in turn.content
    assert turn.content == "Let me look.\n\nand\n\nDone."


def test_block_spanning_lines_with_whitespace():
    text = OPEN + '\n  {"name": "cat",\n   "arguments": {"path": "a"}}\n' + CLOSE
    assert parse_tool_calls(text, KNOWN).calls == [ParsedCall("cat", {"path": "a"})]


@pytest.mark.parametrize("arguments, expected", [
    ({"query": "x", "k": 3}, {"query": "x", "k": 3}),
    ('{"query": "x", "k": 3}', {"query": "x", "k": 3}),  # OpenAI-style JSON string
    ("", {}),
    ("   ", {}),
])
def test_arguments_as_object_or_json_string(arguments, expected):
    turn = parse_tool_calls(block({"name": "search", "arguments": arguments}), KNOWN)
    assert turn.calls == [ParsedCall("search", expected)] and turn.problems == []


def test_missing_arguments_mean_empty_object():
    assert parse_tool_calls(block({"name": "cat"}), KNOWN).calls == [ParsedCall("cat", {})]


def test_arguments_json_is_a_json_string_of_the_object():
    call = parse_tool_calls(block({"name": "search", "arguments": {"q": "é"}}), KNOWN).calls[0]
    assert json.loads(call.arguments_json) == {"q": "é"} and "é" in call.arguments_json


def test_invalid_json_is_a_problem_with_the_format_hint():
    raw = '{"name": "search", "arguments": {query: 1}}'
    turn = parse_tool_calls("Hi " + block(raw), KNOWN)
    assert turn.calls == []
    (problem,) = turn.problems
    assert problem.raw == raw
    assert problem.message.startswith("Error: the tool call is not valid JSON")
    assert OPEN in problem.message and CLOSE in problem.message
    assert turn.content == "Hi" and turn.attempted == 1


@pytest.mark.parametrize("payload", [
    {"arguments": {"q": 1}},  # no name
    {"name": 7, "arguments": {}},  # name not a string
    ["search", {"q": 1}],  # not an object
    "42",
])
def test_missing_or_non_string_name_is_a_problem(payload):
    (problem,) = parse_tool_calls(block(payload), KNOWN).problems
    assert problem.message == 'Error: a tool call needs a JSON object with a string "name".'


def test_unknown_tool_lists_the_known_ones():
    (problem,) = parse_tool_calls(block({"name": "shell", "arguments": {}}), KNOWN).problems
    assert "unknown tool 'shell'" in problem.message
    assert "Available tools: cat, search." in problem.message


def test_unknown_tool_with_no_tools_at_all():
    (problem,) = parse_tool_calls(block({"name": "shell"}), set()).problems
    assert "Available tools: none." in problem.message


def test_without_a_known_set_any_name_is_accepted():
    assert parse_tool_calls(block({"name": "shell"})).calls == [ParsedCall("shell", {})]


@pytest.mark.parametrize("arguments", [[1, 2], "[1, 2]", 3, "null", "\"text\""])
def test_non_object_arguments_are_a_problem(arguments):
    (problem,) = parse_tool_calls(block({"name": "cat", "arguments": arguments}), KNOWN).problems
    assert problem.message == "Error: \"arguments\" of 'cat' must be a JSON object."


def test_arguments_string_that_is_not_json_is_a_problem():
    (problem,) = parse_tool_calls(block({"name": "cat", "arguments": "{path: a}"}), KNOWN).problems
    assert problem.message == "Error: arguments of 'cat' are not valid JSON."


def test_unclosed_block_is_a_problem_and_cut_from_the_content():
    text = "Checking. " + OPEN + '{"name": "search", "arguments": {"query": "ACME'
    turn = parse_tool_calls(text, KNOWN)
    assert turn.calls == []
    (problem,) = turn.problems
    assert problem.raw == OPEN + '{"name": "search", "arguments": {"query": "ACME'
    assert "opened but never closed" in problem.message
    assert turn.content == "Checking."


def test_good_and_bad_calls_mix_and_an_unclosed_tail_comes_last():
    text = (block({"name": "search", "arguments": {"q": 1}}) + block("not json")
            + block({"name": "nope"}) + " tail " + OPEN + '{"name": "cat"')
    turn = parse_tool_calls(text, KNOWN)
    assert turn.calls == [ParsedCall("search", {"q": 1})]
    assert [p.raw for p in turn.problems] == ["not json", '{"name": "nope"}',
                                              OPEN + '{"name": "cat"']
    assert turn.attempted == 4 and turn.content == "tail"


def test_format_call_round_trips_through_the_parser():
    for arguments in ({"path": "a/b.txt", "n": 2}, '{"path": "a/b.txt", "n": 2}'):
        text = format_call("cat", arguments)
        assert text.startswith(OPEN) and text.endswith(CLOSE)
        assert parse_tool_calls(text, KNOWN).calls == [ParsedCall("cat", {"path": "a/b.txt", "n": 2})]
    assert format_call("cat", "") == OPEN + '{"name": "cat", "arguments": {}}' + CLOSE
