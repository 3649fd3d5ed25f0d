"""MCP tools through the official `mcp` SDK: the real `mcp-server-time` from PyPI over stdio
(listing, schemas, calls, model errors, a whole training job whose rollouts call it), and a
server built with the SDK's own MCPServer (`tests/mcp_echo_server.py`) for what the PyPI one
cannot show: the trace_id in `_meta`, headers over streamable HTTP, a crashing process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentrft.errors import SpecError, ToolInfraFailure, ToolUnreachable
from agentrft.spec.job import ToolDecl
from agentrft.tools.base import ToolCallRequest
from agentrft.train.setup import build_tools
from tests.serving_fixtures import ROOT, free_port, overfit

TIME_SERVER = [str(Path(sys.executable).parent / "mcp-server-time"), "--local-timezone", "UTC"]
ECHO_SERVER = [sys.executable, str(ROOT / "tests" / "mcp_echo_server.py")]


def request(name: str, arguments, trace_id: str = "trace_test1", call_id: str = "call_1"):
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCallRequest(id="fc_1", call_id=call_id, name=name, arguments=args, trace_id=trace_id)


async def close_all(tools) -> None:
    for t in tools.values():
        await t.aclose()


async def test_a_real_pypi_mcp_server_is_listed_offered_and_called():
    tools = build_tools([ToolDecl(name="clock", mcp={"command": TIME_SERVER})])
    try:
        assert set(tools) == {"get_current_time", "convert_time"}
        fn = tools["get_current_time"].schema["function"]
        assert fn["name"] == "get_current_time" and fn["description"]
        assert fn["parameters"]["required"] == ["timezone"]  # the server's own input schema
        await tools["get_current_time"].check()

        out = await tools["get_current_time"].call(request("get_current_time", {"timezone": "Asia/Tokyo"}))
        data = json.loads(out.output)
        assert not out.is_error and data["timezone"] == "Asia/Tokyo"
        assert data["datetime"].endswith("+09:00")
        conv = await tools["convert_time"].call(request("convert_time", {
            "source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}))
        assert not conv.is_error and "21:00" in conv.output

        # the model's mistakes are shown to it, not raised
        bad_zone = await tools["get_current_time"].call(request("get_current_time", {"timezone": "Mars/Olympus"}))
        assert bad_zone.is_error and "Mars/Olympus" in bad_zone.output
        missing = await tools["get_current_time"].call(request("get_current_time", {}))
        assert missing.is_error and "timezone" in missing.output
        not_json = await tools["get_current_time"].call(request("get_current_time", "{oops"))
        assert not_json.is_error and "not valid JSON" in not_json.output
    finally:
        await close_all(tools)


def test_mcp_declarations_are_checked_with_the_field_named(tmp_path):
    only = build_tools([ToolDecl(name="clock", mcp={"command": TIME_SERVER, "tools": ["convert_time"]})])
    assert set(only) == {"convert_time"}
    with pytest.raises(SpecError) as e:
        build_tools([ToolDecl(name="clock", mcp={"command": TIME_SERVER, "tools": ["nope"]})])
    assert e.value.field == "method.reinforcement.tools[0].mcp.tools" and "get_current_time" in str(e.value)
    with pytest.raises(SpecError) as e:
        build_tools([ToolDecl(name="convert_time", python="examples.lookup.task:lookup"),
                     ToolDecl(name="clock", mcp={"command": TIME_SERVER})])
    assert e.value.field == "method.reinforcement.tools[1].mcp" and "convert_time" in str(e.value)
    with pytest.raises(SpecError) as e:
        build_tools([ToolDecl(name="clock", mcp={"command": TIME_SERVER, "url": "http://x/mcp"})])
    assert e.value.field == "method.reinforcement.tools[0].mcp" and "exactly one" in str(e.value)
    with pytest.raises(SpecError) as e:
        build_tools([ToolDecl(name="clock", mcp={"comand": TIME_SERVER})])
    assert e.value.field == "method.reinforcement.tools[0].mcp.comand"
    with pytest.raises(ToolUnreachable, match="could not list its tools"):
        build_tools([ToolDecl(name="gone", mcp={"command": [str(tmp_path / "no-such-server")]})])


async def test_trace_id_reaches_the_server_and_a_crash_is_an_infra_failure():
    tools = build_tools([ToolDecl(name="echo", mcp={"command": ECHO_SERVER})])
    tools["crash"].server.backoff_s = 0.0
    try:
        first = await tools["echo_meta"].call(request("echo_meta", {"text": "hi"}, "trace_abc", "call_7"))
        assert first.output.startswith("hi|trace_id=trace_abc|call_id=call_7|")
        calls = await asyncio.gather(*(tools["echo_meta"].call(
            request("echo_meta", {"text": str(i)}, f"trace_{i}")) for i in range(5)))
        assert [c.output.split("|")[:2] for c in calls] == [[str(i), f"trace_id=trace_{i}"] for i in range(5)]
        with pytest.raises(ToolInfraFailure, match="after 4 attempts"):
            await tools["crash"].call(request("crash", {}))
        # a fresh process serves the next call
        again = await tools["echo_meta"].call(request("echo_meta", {"text": "back"}))
        assert again.output.startswith("back|") and again.output.split("pid=")[1] != first.output.split("pid=")[1]
    finally:
        await close_all(tools)


async def test_streamable_http_server_with_headers(tmp_path):
    port = free_port()
    proc = subprocess.Popen(ECHO_SERVER + ["--http", str(port)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "echo.log", "w"))
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        secret = "Bearer sk-mcp-secret-0123456789"
        tools = build_tools([ToolDecl(name="echo", mcp={"url": f"http://127.0.0.1:{port}/mcp",
                                                        "headers": {"Authorization": secret}})])
        tools["echo_meta"].server.backoff_s = 0.0
        try:
            out = await tools["echo_meta"].call(request("echo_meta", {"text": "web"}, "trace_http"))
            assert out.output.startswith(f"web|trace_id=trace_http|call_id=call_1|auth={secret}|")
            proc.kill()
            proc.wait()
            with pytest.raises(ToolInfraFailure) as e:
                await tools["echo_meta"].call(request("echo_meta", {"text": "gone"}))
            assert "sk-mcp-secret" not in str(e.value)
        finally:
            await close_all(tools)
    finally:
        proc.kill()
        proc.wait()


def time_grade(sample: dict, item: dict) -> float:
    """1 when the rollout got the time from the MCP server."""
    calls = sample["trajectory"]["tool_calls"]
    return float(any(c["name"] == "get_current_time" and not c["is_error"] and "datetime" in c["output"]
                     for c in calls))


def test_a_job_whose_tools_come_from_a_real_mcp_server(tmp_path, tiny_model_dir):
    from agentrft.models.chat import ChatRenderer
    from agentrft.models.loading import load_tokenizer
    from agentrft.spec import load_job
    from agentrft.spec.dataset import load_dataset
    from agentrft.train.loop import Trainer

    listed = build_tools([ToolDecl(name="clock", mcp={"command": TIME_SERVER, "tools": ["get_current_time"]})])
    schema = listed["get_current_time"].schema
    asyncio.run(close_all(listed))
    row = {"messages": [{"role": "user", "content": "What time is it in UTC?"}], "tools": [schema],
           "zone": "UTC"}
    for name in ("train.jsonl", "valid.jsonl"):
        (tmp_path / name).write_text(json.dumps(row) + "\n")

    # A model that asks the clock: the tiny model trained on this exact prompt.
    tok = load_tokenizer(str(tiny_model_dir))
    renderer = ChatRenderer(tok)
    loaded = load_dataset(str(tmp_path / "train.jsonl"))[0]
    prompt = renderer.prompt_ids(loaded.messages_as_dicts(), loaded.tools_as_dicts())
    call = '<tool_call>{"name": "get_current_time", "arguments": {"timezone": "UTC"}}</tool_call>'
    model = overfit(tiny_model_dir, tmp_path / "clock-caller",
                    [(prompt, tok.encode(call, add_special_tokens=False) + [renderer.stop_token_ids[0]])])

    (tmp_path / "job.yaml").write_text(f"""model: {model}
training_file: train.jsonl
validation_file: valid.jsonl
seed: 1
method:
  type: reinforcement
  reinforcement:
    grader: {{type: python, name: clock, callable: "tests.test_mcp_tools:time_grade"}}
    tools:
      - name: clock
        mcp: {{command: {json.dumps(TIME_SERVER)}, tools: [get_current_time]}}
    max_episode_steps: 1
    hyperparameters: {{batch_size: 1, base_group_size: 2, eval_interval: 1, eval_samples: 1,
                      max_new_tokens: 40, max_steps: 1, temperature: 0.2,
                      readiness_gate: false}}  # an overfit caller: its group may well be flat
""")
    trainer = Trainer(load_job(tmp_path / "job.yaml"), tmp_path / "run")
    metrics = asyncio.run(trainer.run_async())
    assert trainer.outcome == "succeeded" and [m["step"] for m in metrics] == [0, 1]
    assert metrics[1]["discarded_rollouts"] == 0

    rollouts = [json.loads(line) for line in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 1 + 2 + 1  # baseline eval, 2 training rollouts, final eval
    called = [r for r in rollouts if r["tool_calls"]]
    assert len(called) >= 3, [r["final_text"] for r in rollouts]
    for r in called:
        first = r["tool_calls"][0]
        assert first["name"] == "get_current_time" and json.loads(first["arguments"]) == {"timezone": "UTC"}
        assert not first["is_error"] and json.loads(first["output"])["timezone"] == "UTC"
        assert r["reward"] == 1.0 and r["trace_id"].startswith("trace_")
    assert len({r["trace_id"] for r in rollouts}) == len(rollouts)
