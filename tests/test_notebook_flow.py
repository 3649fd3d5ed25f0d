"""Issue 19's first Done-when: OpenAI's Agent RFT notebook flow, unchanged but for `base_url`,
through the official `openai` SDK with ONE client against a real `agentrft server` subprocess.

    files.create ×2 ─► fine_tuning.jobs.create (tools, grader, response_format,
    max_episode_steps as plain `method` fields: no extra_body) ─► events, checkpoints
    ─► Responses tool loop for the base model and the job's ft: model: function_call items run
       against a real loopback tool server, function_call_output items sent back
    ─► embeddings.create ─► POST fine_tuning/alpha/tool/run ─► graders.run with trace_id,
       a python grader without name

The model is the tiny random Llama: its tool calls come from sampling under the strict tool's
grammar (`tool_choice: required`), its final answer under `text.format`'s schema, so the loop
is deterministic in shape whatever the random weights write.
"""

from __future__ import annotations

import json
import shutil

import httpx
import jsonschema
import pytest
from openai import OpenAI

from agentrft.sandbox.process import bwrap_problem
from tests.serving_fixtures import free_port
from tests.system_parts import require_system
from tests.test_server_sdk import KEY, Server, wait_for
from tests.tool_server import LoopbackToolServer

ROOMS = {"ada": "Room 12", "bob": "Room 7"}
PARAMETERS = {"type": "object", "properties": {"key": {"enum": sorted(ROOMS)}},
              "required": ["key"], "additionalProperties": False}
ANSWER = {"type": "object", "properties": {"room": {"type": "string", "maxLength": 8}},
          "required": ["room"], "additionalProperties": False}
TEXT_FORMAT = {"type": "json_schema", "name": "answer", "schema": ANSWER, "strict": True}
RESPONSE_FORMAT = {"type": "json_schema",
                   "json_schema": {"name": "answer", "schema": ANSWER, "strict": True}}
SOURCE = "def grade(sample, item):\n    return 1.0 if item['room'] in sample['output_text'] else 0.25\n"


def _row(name: str) -> dict:
    return {"messages": [{"role": "user", "content": f"Which room is {name.title()} in?"}],
            "tools": [{"type": "function", "function": {
                "name": "lookup", "description": "The room of a person.",
                "parameters": PARAMETERS, "strict": True}}],
            "room": ROOMS[name]}


def run_tool(tool_server, call) -> str:
    """The notebook's executor: POST the call to the tool's endpoint, return its output."""
    r = httpx.post(tool_server.url(f"/{call.name}"), timeout=30, json={
        "type": "function_call", "id": call.id, "call_id": call.call_id, "name": call.name,
        "arguments": call.arguments, "trace_id": "trace_notebook", "item": {}})
    return r.json()["output"] if r.is_success else f"Error {r.status_code}: {r.text}"


def responses_loop(client: OpenAI, model: str, tool_server) -> list:
    """Two turns: a forced call (executed, its output sent back), then the answer."""
    tools = [{"type": "function", "name": "lookup", "description": "The room of a person.",
              "parameters": PARAMETERS, "strict": True}]
    items: list = [{"role": "user", "content": "Which room is Ada in?"}]
    turns = []
    for choice in ("required", "none"):
        r = client.responses.create(
            model=model, input=items, tools=tools, tool_choice=choice, parallel_tool_calls=True,
            reasoning={"effort": "low"}, store=False, include=["reasoning.encrypted_content"],
            text={"format": TEXT_FORMAT}, max_output_tokens=48, temperature=0)
        turns.append(r)
        calls = [o for o in r.output if o.type == "function_call"]
        items += r.output
        items += [{"type": "function_call_output", "call_id": c.call_id,
                   "output": run_tool(tool_server, c)} for c in calls]
    return turns


@pytest.mark.slow  # ~2 min on the shared 2-core CPU: a server, a job, two models' loops
def test_the_agent_rft_notebook_runs_against_one_base_url(tmp_path, tiny_model_dir):
    data = tmp_path / "notebook"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(_row(n)) + "\n" for n in ("ada", "bob")))
    (data / "valid.jsonl").write_text(json.dumps(_row("bob")) + "\n")
    with LoopbackToolServer(lookup=ROOMS) as tool_server:
        server = Server(tmp_path / "data", free_port(), "--embedding-model",
                        "text-embedding-3-small=all-minilm-l6-v2")
        try:
            client = OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY,
                            max_retries=0, timeout=120)
            files = [client.files.create(file=open(data / n, "rb"), purpose="fine-tune").id
                     for n in ("train.jsonl", "valid.jsonl")]
            job = client.fine_tuning.jobs.create(
                model=str(tiny_model_dir), training_file=files[0], validation_file=files[1],
                seed=1, suffix="notebook",
                method={"type": "reinforcement", "reinforcement": {  # plain fields, as typed dicts
                    "grader": {"type": "string_check", "name": "room",
                               "input": "{{sample.output_json.room}}",
                               "reference": "{{item.room}}", "operation": "eq"},
                    "tools": [{"name": "lookup", "server_url": tool_server.url("/lookup")}],
                    "response_format": RESPONSE_FORMAT,
                    "max_episode_steps": 2,
                    # the tiny random model never matches a room: every group is flat, and
                    # the readiness gate would (rightly) stop the job before its one step
                    "hyperparameters": {"n_epochs": 1, "batch_size": 2, "eval_interval": 1,
                                        "max_new_tokens": 24, "max_steps": 1,
                                        "readiness_gate": False}}})
            done = wait_for(client, job.id, ("succeeded", "failed"), timeout=300)
            assert done.status == "succeeded", done.error
            events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
            metrics = [e.data for e in events if e.type == "metrics"]
            assert metrics and all("train_reward_mean" in m or "valid_reward_mean" in m
                                   for m in metrics)
            (ckpt,) = client.fine_tuning.jobs.checkpoints.list(job.id).data
            assert ckpt.step_number == 1

            for model in (str(tiny_model_dir), done.fine_tuned_model):
                first, last = responses_loop(client, model, tool_server)
                calls = [o for o in first.output if o.type == "function_call"]
                assert calls and all(json.loads(c.arguments)["key"] in ROOMS for c in calls)
                assert last.status == "completed"
                jsonschema.validate(json.loads(last.output_text), ANSWER)
                assert last.text.format.type == "json_schema"
            sent = tool_server.requests_for("/lookup")
            assert sent and all(r.json["trace_id"] == "trace_notebook" for r in sent[-2:])

            emb = client.embeddings.create(model="text-embedding-3-small",
                                           input=["room 12", "room 7"])
            assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384

            ran = client.post("/fine_tuning/alpha/tool/run", cast_to=object, body={
                "type": "function_call", "name": "lookup", "server_url": tool_server.url("/lookup"),
                "headers": {}, "arguments": json.dumps({"key": "bob"}), "item": {"room": "Room 7"},
                "trace_id": "trace_toolrun", "id": "fc_1", "call_id": "call_1"})
            assert ran["output"] == "Room 7"
            assert tool_server.requests_for("/lookup")[-1].json["trace_id"] == "trace_toolrun"

            graded = client.fine_tuning.alpha.graders.run(
                grader={"type": "string_check", "name": "eq", "input": "{{sample.output_text}}",
                        "reference": "{{item.room}}", "operation": "eq"},
                model_sample="Room 7", item={"room": "Room 7"},
                extra_body={"trace_id": "trace_grade"})
            assert graded.reward == 1.0
            require_system("bubblewrap", bwrap_problem(shutil.which("bwrap")))
            python = client.fine_tuning.alpha.graders.run(
                grader={"type": "python", "source": SOURCE}, model_sample="In Room 7.",
                item={"room": "Room 7"}, extra_body={"trace_id": "trace_grade"})
            assert python.reward == 1.0
        finally:
            server.stop()
