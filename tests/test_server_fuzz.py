"""Fuzz: malformed requests to every route get a 4xx in OpenAI's error shape, never a 5xx.

About 400 generated requests over five tests: random methods and paths with bad ids, bad
query parameters, malformed and mutated JSON bodies (bad bytes, NaN, wrong types, unknown
keys, missing keys, unknown file ids, bodies over the cap), malformed uploads, and random
API keys. A request that is malformed by construction must get a 4xx; a random request that
happens to be valid (GET /v1/models) may succeed, but nothing may answer 5xx.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agentrft.jobs.store import JobStore
from agentrft.server import create_app
from tests.test_server_api import ERROR_TYPES, job_body, jsonl
from examples.lookup.task import make_rows

MAX_BODY = 64 * 1024
MAX_UPLOAD = 32 * 1024


def fuzz(examples: int):
    """FUZZ_SCALE=20 for a longer hunt than CI's."""
    return settings(max_examples=examples * int(os.environ.get("FUZZ_SCALE", "1")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ROUTES = {  # (method, path template): does it read a JSON body
    ("POST", "/v1/files"): False, ("GET", "/v1/files/{id}"): False,
    ("POST", "/v1/fine_tuning/jobs"): True, ("GET", "/v1/fine_tuning/jobs"): False,
    ("GET", "/v1/fine_tuning/jobs/{id}"): False,
    ("POST", "/v1/fine_tuning/jobs/{id}/cancel"): False,
    ("POST", "/v1/fine_tuning/jobs/{id}/pause"): False,
    ("POST", "/v1/fine_tuning/jobs/{id}/resume"): False,
    ("GET", "/v1/fine_tuning/jobs/{id}/events"): False,
    ("GET", "/v1/fine_tuning/jobs/{id}/checkpoints"): False,
    ("POST", "/v1/fine_tuning/alpha/graders/run"): True,
    ("POST", "/v1/fine_tuning/alpha/graders/validate"): True,
    ("GET", "/v1/models"): False, ("GET", "/v1/models/{id}"): False,
}
JSON_ROUTES = [path for (method, path), reads in ROUTES.items() if reads]
TEMPLATES = sorted({path for _, path in ROUTES})
JUNK_PATHS = ["/v1", "/v1/", "/v1/fine_tuning", "/v1/fine_tuning/jobs/", "/v1/files/a/b",
              "/v1/fine_tuning/jobs/x/y/z", "/v1/fine_tuning/alpha/graders", "/v2/files",
              "/v1//files", "/v1/fine_tuning/jobs/%2e%2e/events"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=10)
bad_ids = st.one_of(st.sampled_from(["", "%2E", "%2E%2E", "%00", "%2F", "x" * 5000, "ftjob-",
                                     "file-", "ftjob-nope", "' OR 1=1 --", "%FF%FE", "null"]),
                    st.text(min_size=1, max_size=40).map(lambda s: quote(s, safe="")))
BAD_LIMITS = ["-1", "0", "101", "abc", "", "1.5", "1e3", "99999999999999999999", "NaN",
              "true", "--5", "[]", "%00"]


class Seeded:
    """One app for the module, with a real file and a real job so some ids hit."""

    def __init__(self, store: JobStore, client: TestClient):
        self.store, self.client = store, client
        train, _ = make_rows()
        self.file_id = store.add_file("train.jsonl", "fine-tune", jsonl(train))["id"]
        r = client.post("/v1/fine_tuning/jobs", json=job_body(self.file_id))
        assert r.status_code == 200, r.text
        self.job_id = r.json()["id"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    store = JobStore(tmp_path_factory.mktemp("fuzz") / "data")
    with TestClient(create_app(store, validate_in_background=False, max_body_bytes=MAX_BODY,
                               max_upload_bytes=MAX_UPLOAD)) as client:
        yield Seeded(store, client)
    store.close()


def check(response, *, must_fail: bool) -> None:
    status = response.status_code
    event(f"status {status}")  # shown by pytest --hypothesis-show-statistics
    assert status < 500, response.text
    if must_fail:
        assert 400 <= status < 500, (status, response.text)
    if status < 400 or response.request.method == "HEAD":
        return
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] in ERROR_TYPES
    assert err["param"] is None or isinstance(err["param"], str)
    assert err["code"] is None or isinstance(err["code"], str)
    assert "Traceback" not in response.text and "_path" not in response.text


# --- random methods, paths and ids -----------------------------------------------------------


@fuzz(100)
@given(method=st.sampled_from(METHODS), template=st.sampled_from(TEMPLATES + JUNK_PATHS),
       id_=st.one_of(bad_ids, st.sampled_from(["real-file", "real-job"])),
       body=st.none() | st.binary(max_size=64))
def test_random_method_and_path(app, method, template, id_, body):
    real = {"real-file": app.file_id, "real-job": app.job_id}.get(id_)
    path = template.replace("{id}", real or id_)
    response = app.client.request(method, path, content=body)
    valid_route = (method in ("GET", "HEAD") and ("GET", template) in ROUTES) or \
        (method, template) in ROUTES
    bogus = "{id}" in template and not real
    posts_junk = method == "POST" and template in JSON_ROUTES + ["/v1/files"]
    check(response, must_fail=not valid_route or bogus or posts_junk)


# --- query parameters ------------------------------------------------------------------------


LIST_PATHS = ["/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/{job}/events",
              "/v1/fine_tuning/jobs/{job}/checkpoints"]


@fuzz(60)
@given(path=st.sampled_from(LIST_PATHS), limit=st.sampled_from(BAD_LIMITS),
       after=st.none() | st.text(max_size=30),
       extra=st.dictionaries(st.sampled_from(["metadata[a]", "metadata[]", "metadata", "foo",
                                              "after", "limit"]), st.text(max_size=10),
                             max_size=3))
def test_bad_query_params(app, path, limit, after, extra):
    params = {**extra, "limit": limit}
    if after is not None:
        params["after"] = after
    response = app.client.get(path.replace("{job}", app.job_id), params=params)
    check(response, must_fail=True)
    assert response.json()["error"]["param"] == "limit"


# --- JSON bodies -----------------------------------------------------------------------------


TYPED_LEVELS = [(), ("method",), ("method", "reinforcement"),
                ("method", "reinforcement", "hyperparameters"),
                ("method", "reinforcement", "tools", 0)]
REQUIRED = [("model",), ("training_file",), ("method",), ("method", "type"),
            ("method", "reinforcement"), ("method", "reinforcement", "grader"),
            ("method", "reinforcement", "tools", 0, "name")]
REPLACEABLE = REQUIRED + [("seed",), ("suffix",), ("metadata",), ("validation_file",),
                          ("method", "reinforcement", "tools"),
                          ("method", "reinforcement", "max_episode_steps"),
                          ("method", "reinforcement", "hyperparameters"),
                          ("method", "reinforcement", "hyperparameters", "n_epochs"),
                          ("method", "reinforcement", "hyperparameters", "batch_size"),
                          *[("method", "reinforcement", "hyperparameters", k)
                            for k in ("learning_rate_multiplier", "compute_multiplier")]]


def at(body, path):
    for part in path:
        body = body[part]
    return body


@st.composite
def mutated_job(draw, file_id: str):
    """A valid create body with one thing wrong: (body bytes, must it fail)."""
    body = job_body(file_id)
    kind = draw(st.sampled_from(["drop", "unknown", "replace", "file", "nan"]))
    if kind == "drop":
        *parent, key = draw(st.sampled_from(REQUIRED))
        del at(body, parent)[key]
    elif kind == "unknown":
        level = draw(st.sampled_from(TYPED_LEVELS))
        # top-level `hyperparameters` is OpenAI's legacy place for them: not ours
        keys = ["modle", "extra", "n_epoch", "__proto__", ""]
        keys += ["hyperparameters"] if level == () else []
        at(body, level)[draw(st.sampled_from(keys))] = draw(junk)
    elif kind == "replace":
        *parent, key = draw(st.sampled_from(REPLACEABLE))
        at(body, parent)[key] = draw(junk)
        return json.dumps(body).encode(), False  # a replacement may happen to be valid
    elif kind == "file":
        key = draw(st.sampled_from(["training_file", "validation_file"]))
        body[key] = draw(st.sampled_from(["file-nope", "", "ftjob-x"]) | st.text(max_size=20))
    else:
        constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        text = json.dumps(body).replace('"batch_size": 2', f'"batch_size": {constant}')
        return text.encode(), True
    return json.dumps(body).encode(), True


def grader_body():
    grader = st.fixed_dictionaries({"type": junk | st.sampled_from(["python", "string_check",
                                                                    "multi", "nope"])},
                                   optional={"name": junk, "callable": junk, "input": junk,
                                             "reference": junk, "operation": junk,
                                             "graders": junk})
    return st.fixed_dictionaries({"grader": grader | junk},
                                 optional={"model_sample": junk, "item": junk, "extra": junk})


@st.composite
def bad_json_request(draw, file_id: str):
    """(path, body bytes, content type, must fail)."""
    path = draw(st.sampled_from(JSON_ROUTES))
    content_type = "application/json"
    kind = draw(st.sampled_from(["bytes", "junk", "mutated", "grader", "huge", "deep",
                                 "content_type", "surrogate"]))
    must_fail = True
    if kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "junk":
        body = json.dumps(draw(junk)).encode()
    elif kind == "mutated":
        path = "/v1/fine_tuning/jobs"
        body, must_fail = draw(mutated_job(file_id))
    elif kind == "grader":
        path = draw(st.sampled_from(JSON_ROUTES[1:]))
        body = json.dumps(draw(grader_body())).encode()
        must_fail = False  # a generated grader may be valid and grade
    elif kind == "huge":
        body = b'{"x": "' + b"a" * draw(st.integers(MAX_BODY, 2 * MAX_BODY)) + b'"}'
    elif kind == "deep":
        n = draw(st.integers(500, 50_000))
        body = b'{"grader": ' * n + b"1" + b"}" * n
    elif kind == "content_type":
        body = (json.dumps(job_body(file_id)).encode() if path.endswith("jobs")
                else b'{"grader": {}}')
        content_type = draw(st.sampled_from(["text/plain", "", "application/x-www-form-urlencoded",
                                             "multipart/form-data", "application/xml"]))
    else:
        body = b'{"grader": {"type": "string_check", "name": "\\udc80"}, "model_sample": "x"}'
    return path, body, content_type, must_fail


@fuzz(150)
@given(data=st.data())
def test_malformed_json_bodies(app, data):
    path, body, content_type, must_fail = data.draw(bad_json_request(app.file_id))
    headers = {"content-type": content_type} if content_type else {}
    response = app.client.post(path, content=body, headers=headers)
    check(response, must_fail=must_fail)
    if response.status_code == 200 and path.endswith("/jobs"):  # created: its files are real
        assert response.json()["training_file"] == app.file_id


# --- uploads ---------------------------------------------------------------------------------


@st.composite
def bad_upload(draw):
    kind = draw(st.sampled_from(["purpose", "no_file", "file_as_text", "too_big", "raw",
                                 "no_purpose"]))
    content = draw(st.binary(max_size=100))
    if kind == "purpose":
        purpose = draw(st.text(max_size=20).filter(lambda p: p != "fine-tune"))
        return {"files": {"file": ("a.jsonl", content)}, "data": {"purpose": purpose}}
    if kind == "no_file":
        return {"data": {"purpose": "fine-tune"}}
    if kind == "no_purpose":
        return {"files": {"file": (draw(st.text(max_size=20)), content)}}
    if kind == "file_as_text":
        return {"data": {"purpose": "fine-tune", "file": draw(st.text(max_size=20))}}
    if kind == "too_big":
        size = draw(st.integers(MAX_UPLOAD + 1, MAX_UPLOAD + 2 * 2**20))
        return {"files": {"file": ("a.jsonl", b"x" * size)}, "data": {"purpose": "fine-tune"}}
    return {"content": content, "headers": {"content-type": draw(st.sampled_from(
        ["multipart/form-data", "multipart/form-data; boundary=xyz", "application/json",
         "multipart/form-data; boundary="]))}}


@fuzz(60)
@given(request=bad_upload())
def test_malformed_uploads(app, request):
    check(app.client.post("/v1/files", **request), must_fail=True)


# --- API keys --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_client(tmp_path_factory):
    store = JobStore(tmp_path_factory.mktemp("auth"))
    with TestClient(create_app(store, api_keys=["sk-test"])) as client:
        yield client
    store.close()


@fuzz(40)
@given(header=st.none()
       | st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").strip())
       | st.sampled_from([b"Bearer", b"Bearer ", b"bearer sk-tes", b"Basic sk-test",
                          b"Bearer sk-test2", b"Bearer  sk-test x"]),
       template=st.sampled_from(TEMPLATES + ["/v1/nope"]))
def test_bad_api_keys(auth_client, header, template):
    headers = {} if header is None else {"authorization": header}
    method = next(m for m, p in ROUTES if p == template) if template != "/v1/nope" else "GET"
    response = auth_client.request(method, template.replace("{id}", "x"), headers=headers)
    check(response, must_fail=True)
    assert response.status_code == 401
