"""The HTTP API in process (FastAPI TestClient) over a store in a temp folder. No worker runs
here, so a job that passes validation stays `queued`."""

from __future__ import annotations

import copy
import json

import pytest
from fastapi.testclient import TestClient

from agentrft.server import create_app
from examples.lookup.task import make_rows

GRADER = {"type": "python", "name": "g", "callable": "examples.lookup.task:grade"}
TOOLS = [{"name": "lookup", "python": "examples.lookup.task:lookup"}]
ERROR_TYPES = {"invalid_request_error", "authentication_error", "not_found_error", "server_error"}


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def broken_at_line_3(rows: list[dict]) -> bytes:
    lines = jsonl(rows).decode().splitlines(keepends=True)
    lines[2] = '{"messages": [{"role": "user", "content": "hi"}\n'  # unclosed object
    return "".join(lines).encode()


def job_body(training_file: str, validation_file: str | None = None, **extra) -> dict:
    body = {"model": "bundled:smollm2-135m-instruct", "training_file": training_file,
            "method": {"type": "reinforcement",
                       "reinforcement": {"grader": copy.deepcopy(GRADER),
                                         "tools": copy.deepcopy(TOOLS),
                                         "hyperparameters": {"n_epochs": 1, "batch_size": 2}}}}
    if validation_file:
        body["validation_file"] = validation_file
    return {**body, **extra}


def assert_error(response, status: int, type_: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] in ERROR_TYPES
    if type_:
        assert err["type"] == type_
    assert "Traceback" not in response.text
    return err


@pytest.fixture
def client(store):
    with TestClient(create_app(store, validate_in_background=False)) as c:
        yield c


def upload(client, content: bytes, name: str = "train.jsonl", purpose: str = "fine-tune"):
    return client.post("/v1/files", files={"file": (name, content, "application/jsonl")},
                       data={"purpose": purpose})


@pytest.fixture
def files(client):
    train, valid = make_rows()
    t = upload(client, jsonl(train)).json()["id"]
    v = upload(client, jsonl(valid), "valid.jsonl").json()["id"]
    return t, v


@pytest.fixture
def queued_job(client, files):
    r = client.post("/v1/fine_tuning/jobs", json=job_body(*files))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "queued"
    return r.json()


# --- files -----------------------------------------------------------------------------------


def test_health_is_open(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_upload_and_get_file(client):
    content = jsonl(make_rows()[0])
    r = upload(client, content)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["object"] == "file" and f["id"].startswith("file-")
    assert f["bytes"] == len(content) and f["filename"] == "train.jsonl"
    assert f["purpose"] == "fine-tune"
    assert "_path" not in r.text and "/files/" not in r.text
    g = client.get(f"/v1/files/{f['id']}")
    assert g.status_code == 200 and g.json() == f
    assert_error(client.get("/v1/files/file-nope"), 404, "not_found_error")


def test_upload_rejects_other_purposes_and_missing_parts(client):
    err = assert_error(upload(client, b"{}\n", purpose="assistants"), 400)
    assert err["param"] == "purpose"
    err = assert_error(client.post("/v1/files", data={"purpose": "fine-tune"}), 400)
    assert err["param"] == "file"
    err = assert_error(client.post("/v1/files", files={"file": ("a.jsonl", b"{}")}), 400)
    assert err["param"] == "purpose"
    assert_error(client.post("/v1/files", json={"file": "x", "purpose": "fine-tune"}), 400)


def test_upload_over_the_cap_is_413(store):
    with TestClient(create_app(store, max_upload_bytes=1000)) as c:
        assert upload(c, b"x" * 1000).status_code == 200
        err = assert_error(upload(c, b"x" * 1001), 413)
        assert err["param"] == "file"
        # far over: refused from Content-Length, before the body is read
        assert_error(upload(c, b"x" * (2 * 2**20)), 413)


# --- jobs ------------------------------------------------------------------------------------


def test_create_job_validates_and_queues(client, files, queued_job):
    job = queued_job
    assert job["object"] == "fine_tuning.job" and job["id"].startswith("ftjob-")
    assert job["model"] == "bundled:smollm2-135m-instruct"
    assert (job["training_file"], job["validation_file"]) == files
    assert job["method"]["reinforcement"]["grader"] == GRADER
    assert job["hyperparameters"] == {"n_epochs": 1, "batch_size": 2}
    assert job["error"] is None
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}").json() == job
    assert_error(client.get("/v1/fine_tuning/jobs/ftjob-nope"), 404, "not_found_error")


def test_create_job_in_the_background(store, files):
    # the background task runs before TestClient returns; the response was sent before it
    with TestClient(create_app(store)) as c:
        r = c.post("/v1/fine_tuning/jobs", json=job_body(*files))
        assert r.status_code == 200 and r.json()["status"] == "validating_files"
        assert c.get(f"/v1/fine_tuning/jobs/{r.json()['id']}").json()["status"] == "queued"


def test_jobs_left_validating_are_validated_at_startup(store, files):
    job = store.create_job(job_body(files[0]))  # as if the server stopped mid-validation
    assert job["status"] == "validating_files"
    with TestClient(create_app(store, validate_in_background=False)) as c:
        assert c.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] == "queued"


def test_broken_line_fails_only_that_job(client, files):
    """Acceptance 4: a dataset with a bad line 3 fails its job naming the file's line; a
    good job submitted around it is unaffected."""
    train, _ = make_rows()
    bad_file = upload(client, broken_at_line_3(train), "bad.jsonl").json()["id"]
    before = client.post("/v1/fine_tuning/jobs", json=job_body(files[0])).json()
    bad = client.post("/v1/fine_tuning/jobs", json=job_body(bad_file)).json()
    after = client.post("/v1/fine_tuning/jobs", json=job_body(*files)).json()
    assert bad["status"] == "failed"
    assert ":3" in bad["error"]["param"] and bad_file in bad["error"]["param"]
    assert f"{bad_file}:3:" in bad["error"]["message"]
    assert "/files/" not in json.dumps(bad)  # the store's local path never leaves
    assert before["status"] == after["status"] == "queued"
    events = client.get(f"/v1/fine_tuning/jobs/{bad['id']}/events").json()["data"]
    assert events[0]["level"] == "error" and f"{bad_file}:3:" in events[0]["message"]
    assert "/files/" not in json.dumps(events)


def test_create_job_errors(client, files):
    train, valid = files
    err = assert_error(client.post("/v1/fine_tuning/jobs", json=job_body("file-nope")), 400)
    assert err["param"] == "training_file" and err["type"] == "invalid_request_error"
    err = assert_error(client.post("/v1/fine_tuning/jobs", json=job_body(train, "file-nope")), 400)
    assert err["param"] == "validation_file"
    body = job_body(train)
    body["method"]["reinforcement"]["hyperparameters"]["n_epoch"] = 2  # typo
    err = assert_error(client.post("/v1/fine_tuning/jobs", json=body), 400)
    assert err["param"] == "method.reinforcement.hyperparameters.n_epoch"
    assert "n_epoch" in err["message"]
    err = assert_error(client.post("/v1/fine_tuning/jobs", json={**job_body(train), "seed": "x"}),
                       400)
    assert err["param"] == "seed"
    err = assert_error(client.post("/v1/fine_tuning/jobs", json={**job_body(train), "seed": 2**70}),
                       400)
    assert err["param"] == "seed"
    err = assert_error(client.post("/v1/fine_tuning/jobs", content=b'{"model": ',
                                   headers={"content-type": "application/json"}), 400)
    assert err["code"] == "invalid_json"
    nan = json.dumps(job_body(train)).replace('"batch_size": 2', '"batch_size": NaN')
    assert_error(client.post("/v1/fine_tuning/jobs", content=nan.encode(),
                             headers={"content-type": "application/json"}), 400)
    assert_error(client.post("/v1/fine_tuning/jobs", json=[1, 2]), 400)
    assert_error(client.post("/v1/fine_tuning/jobs"), 400)
    body = job_body(train)
    body["method"]["reinforcement"]["response_format"] = {
        "type": "json_schema", "json_schema": {"name": "answer"}}  # no schema
    err = assert_error(client.post("/v1/fine_tuning/jobs", json=body), 400)
    assert err["param"] == "method.reinforcement.response_format"
    assert "needs a schema" in err["message"]
    assert client.get("/v1/fine_tuning/jobs").json()["data"] == []  # nothing was created


def test_a_crash_in_validation_fails_the_job(client, files):
    """Validation that raises something unexpected must not leave the job in
    validating_files forever. (A grader `type` that is a list crashes build_grader today.)"""
    body = job_body(files[0])
    body["method"]["reinforcement"]["grader"] = {"type": ["python"]}
    r = client.post("/v1/fine_tuning/jobs", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed" and r.json()["error"]["message"]
    assert client.get("/v1/fine_tuning/jobs", params={"limit": 1}).json()["data"][0]["status"] \
        == "failed"


def test_tool_secrets_never_leave(client, files):
    train, _ = make_rows()
    bad_file = upload(client, broken_at_line_3(train)).json()["id"]  # fails before any call
    body = job_body(bad_file)
    body["method"]["reinforcement"]["tools"] = [
        {"name": "lookup", "server_url": "http://127.0.0.1:9/lookup",
         "headers": {"Authorization": "Bearer sk-very-secret"}}]
    r = client.post("/v1/fine_tuning/jobs", json=body)
    assert r.status_code == 200 and "sk-very-secret" not in r.text
    assert "sk-very-secret" not in client.get("/v1/fine_tuning/jobs").text


def test_list_jobs_pages_and_filters(client, files):
    ids = [client.post("/v1/fine_tuning/jobs",
                       json=job_body(files[0], metadata={"run": str(i % 2)})).json()["id"]
           for i in range(5)]
    r = client.get("/v1/fine_tuning/jobs", params={"limit": 2}).json()
    assert r["object"] == "list" and r["has_more"] is True
    assert [j["id"] for j in r["data"]] == ids[::-1][:2]  # newest first
    r2 = client.get("/v1/fine_tuning/jobs", params={"limit": 10, "after": ids[3]}).json()
    assert [j["id"] for j in r2["data"]] == ids[2::-1] and r2["has_more"] is False
    odd = client.get("/v1/fine_tuning/jobs", params={"metadata[run]": "1"}).json()
    assert [j["id"] for j in odd["data"]] == [ids[3], ids[1]]
    for bad in ("0", "101", "-1", "abc", "1.5"):
        err = assert_error(client.get("/v1/fine_tuning/jobs", params={"limit": bad}), 400)
        assert err["param"] == "limit"


def test_pause_resume_cancel(client, queued_job):
    base = f"/v1/fine_tuning/jobs/{queued_job['id']}"
    assert client.post(f"{base}/pause").json()["status"] == "paused"
    assert_error(client.post(f"{base}/pause"), 400)  # a paused job cannot be paused
    assert client.post(f"{base}/resume").json()["status"] == "queued"
    err = assert_error(client.post(f"{base}/resume"), 400)
    assert err["code"] == "invalid_job_state"
    cancelled = client.post(f"{base}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    assert_error(client.post(f"{base}/cancel"), 400)
    assert_error(client.post(f"{base}/resume"), 400)
    for action in ("cancel", "pause", "resume"):
        assert_error(client.post(f"/v1/fine_tuning/jobs/ftjob-nope/{action}"), 404)
    messages = [e["message"] for e in client.get(f"{base}/events").json()["data"]]
    assert messages[0] == "job cancelled"
    assert_error(client.get(f"{base}/cancel"), 405)


def test_events_pages(client, store, queued_job):
    job_id = queued_job["id"]
    for i in range(4):
        store.add_event(job_id, f"step {i}", type="metrics", data={"step": i, "reward": 0.5},
                        step=i)
    store.add_event(job_id, "nan metric", type="metrics", data={"x": float("nan")}, step=9)
    page1 = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 2}).json()
    assert page1["object"] == "list" and page1["has_more"] is True
    assert page1["data"][0]["data"] == {"x": None}  # not-finite numbers are sent as null
    assert page1["data"][1]["message"] == "step 3"
    assert page1["data"][1]["object"] == "fine_tuning.job.event"
    page2 = client.get(f"/v1/fine_tuning/jobs/{job_id}/events",
                       params={"limit": 10, "after": page1["data"][-1]["id"]}).json()
    assert [e["message"] for e in page2["data"]] == ["step 2", "step 1", "step 0",
                                                       "files validated; job queued"]
    assert page2["has_more"] is False
    assert_error(client.get("/v1/fine_tuning/jobs/ftjob-nope/events"), 404)
    assert_error(client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 0}), 400)


def test_checkpoints_pages(client, store, queued_job, tmp_path):
    job_id = queued_job["id"]
    assert client.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints").json() == {
        "object": "list", "data": [], "has_more": False, "first_id": None, "last_id": None}
    for step in (1, 2, 3):
        store.add_checkpoint(job_id, step, {"train_reward": step / 10},
                             str(tmp_path / f"secret-ckpt-{step}"),
                             f"ft:x::{job_id}:ckpt-step-{step}")
    r = client.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints", params={"limit": 2})
    page1 = r.json()
    assert [c["step_number"] for c in page1["data"]] == [3, 2] and page1["has_more"] is True
    assert page1["data"][0]["object"] == "fine_tuning.job.checkpoint"
    assert page1["data"][0]["metrics"] == {"train_reward": 0.3}
    assert page1["last_id"] == page1["data"][-1]["id"]
    assert "secret-ckpt" not in r.text
    page2 = client.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints",
                       params={"after": page1["last_id"]}).json()
    assert [c["step_number"] for c in page2["data"]] == [1] and page2["has_more"] is False
    assert_error(client.get("/v1/fine_tuning/jobs/ftjob-nope/checkpoints"), 404)


# --- graders ---------------------------------------------------------------------------------


def test_graders_run(client):
    item = {"name": "Alice", "room": "123"}
    r = client.post("/v1/fine_tuning/alpha/graders/run",
                    json={"grader": GRADER, "model_sample": "Alice is in room 123.", "item": item})
    assert r.status_code == 200, r.text
    assert r.json()["reward"] == 0.5  # answered, but never called the tool
    assert r.json()["metadata"]["name"] == "g"
    sample = {"output_text": "room 123", "trajectory": {
        "messages": [], "status": "completed",
        "tool_calls": [{"name": "lookup", "arguments": '{"name": "alice"}', "is_error": False}]}}
    r = client.post("/v1/fine_tuning/alpha/graders/run",
                    json={"grader": GRADER, "model_sample": sample, "item": item})
    assert r.json()["reward"] == 1.0
    check = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
             "reference": "yes", "operation": "eq"}
    r = client.post("/v1/fine_tuning/alpha/graders/run",
                    json={"grader": check, "model_sample": "yes"})
    assert r.json()["reward"] == 1.0


def test_graders_run_errors(client):
    url = "/v1/fine_tuning/alpha/graders/run"
    err = assert_error(client.post(url, json={"grader": {"type": "nope"}, "model_sample": "x"}),
                       400)
    assert err["param"] == "grader.type"
    err = assert_error(client.post(url, json={"grader": {"type": ["x"]}, "model_sample": "x"}), 400)
    assert err["param"] == "grader.type"
    err = assert_error(client.post(url, json={"grader": GRADER, "model_sample": "x", "extra": 1}),
                       400)
    assert err["param"] == "extra"
    err = assert_error(client.post(url, json={"grader": GRADER, "model_sample": 3}), 400)
    assert err["param"].startswith("model_sample")
    err = assert_error(client.post(url, json={"grader": GRADER}), 400)
    assert err["param"] == "model_sample"
    err = assert_error(client.post(url, json={"grader": {**GRADER, "callable": "nope:nope"},
                                              "model_sample": "x"}), 400)
    assert err["param"] == "grader.callable"


def test_graders_validate(client):
    url = "/v1/fine_tuning/alpha/graders/validate"
    assert client.post(url, json={"grader": GRADER}).json() == {"grader": GRADER}
    err = assert_error(client.post(url, json={"grader": {**GRADER, "refrence": "x"}}), 400)
    assert err["param"] == "grader.refrence"
    assert_error(client.post(url, json={"grader": "python"}), 400)
    assert_error(client.post(url, json={}), 400)


# --- models, auth, errors --------------------------------------------------------------------


def test_models(client, store, queued_job):
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["bundled:smollm2-135m-instruct", "all-minilm-l6-v2"]  # chat, embeddings
    store.set_status(queued_job["id"], "running")
    store.set_status(queued_job["id"], "succeeded", fine_tuned_model="ft:m::x")
    data = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["bundled:smollm2-135m-instruct", "all-minilm-l6-v2",
                                       "ft:m::x"]
    assert client.get("/v1/models/ft:m::x").json()["object"] == "model"
    assert_error(client.get("/v1/models/nope"), 404)


def test_auth(store):
    with TestClient(create_app(store, api_keys=["sk-one", "sk-two"])) as c:
        assert c.get("/health").status_code == 200
        err = assert_error(c.get("/v1/fine_tuning/jobs"), 401, "authentication_error")
        assert err["code"] == "invalid_api_key"
        assert_error(c.get("/v1/fine_tuning/jobs", headers={"Authorization": "Bearer sk-x"}), 401)
        assert_error(c.get("/v1/fine_tuning/jobs", headers={"Authorization": "sk-one"}), 401)
        assert_error(c.get("/v1/nope", headers={"Authorization": "Bearer ü".encode()}), 401)
        assert_error(upload(c, b"{}\n"), 401)
        for key in ("sk-one", "sk-two"):
            r = c.get("/v1/fine_tuning/jobs", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
        r = c.get("/v1/nope", headers={"Authorization": "bearer sk-one"})
        assert_error(r, 404)


def test_http_errors_keep_the_shape(client):
    assert_error(client.get("/v1/nope"), 404, "not_found_error")
    assert_error(client.get("/v1/fine_tuning/jobs/"), 404)  # no slash redirects
    assert_error(client.delete("/v1/fine_tuning/jobs"), 405)
    assert_error(client.post("/v1/fine_tuning/jobs", content=b"\xff\xfe",
                             headers={"content-type": "application/json"}), 400)
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_error(client.post("/v1/fine_tuning/alpha/graders/validate", content=deep,
                             headers={"content-type": "application/json"}), 400)
    surrogate = b'{"grader": {"type": "\\ud800"}}'
    assert_error(client.post("/v1/fine_tuning/alpha/graders/validate", content=surrogate,
                             headers={"content-type": "application/json"}), 400)


def test_body_cap(store):
    with TestClient(create_app(store, validate_in_background=False)) as c:
        big = {"grader": {"type": "string_check", "pad": "x" * (10 * 2**20)}}
        err = assert_error(c.post("/v1/fine_tuning/alpha/graders/validate", json=big), 413)
        assert err["code"] == "request_too_large"

    def chunks():
        yield b'{"grader": {"x": "'
        for _ in range(20):
            yield b"y" * 1000
        yield b'"}}'

    with TestClient(create_app(store, max_body_bytes=5000)) as c:  # no Content-Length: counted
        r = c.post("/v1/fine_tuning/alpha/graders/validate", content=chunks(),
                   headers={"content-type": "application/json"})
        assert_error(r, 413)


def test_unexpected_errors_are_500_without_details(store, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(store, "get_file", boom)
    with TestClient(create_app(store)) as c:
        r = c.get("/v1/files/file-x")
    assert assert_error(r, 500, "server_error")["code"] == "internal_error"
    assert "secret internals" not in r.text
    assert "secret internals" in caplog.text  # logged, with its traceback
