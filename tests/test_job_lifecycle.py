"""One transition table, enforced by the store: every move it lacks raises a typed error, and
the API answers such requests with a 4xx that says why, never a 500."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentrft.errors import AgentRFTError, InvalidTransition, JobStateError
from agentrft.jobs import service
from agentrft.jobs.store import STATUSES, TERMINAL, TRANSITIONS, JobStore
from tests.test_server_api import assert_error, client, files, queued_job  # noqa: F401 - fixtures


def path_to(status: str) -> list[str]:
    """The shortest walk through TRANSITIONS from a new job's status to `status`."""
    seen = {"validating_files": ["validating_files"]}
    todo = deque(["validating_files"])
    while todo:
        here = todo.popleft()
        for nxt in TRANSITIONS[here]:
            if nxt not in seen:
                seen[nxt] = seen[here] + [nxt]
                todo.append(nxt)
    return seen[status]


def job_in(store: JobStore, status: str) -> str:
    job_id = store.create_job({"model": "m", "training_file": "f", "method": {}})["id"]
    for step in path_to(status)[1:]:
        assert store.set_status(job_id, step)
    assert store.job_row(job_id)["status"] == status
    return job_id


def test_the_table_covers_every_status_and_every_status_is_reachable():
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(set(nexts) <= set(STATUSES) for nexts in TRANSITIONS.values())
    assert all(TRANSITIONS[s] == () for s in TERMINAL)  # finished is finished
    assert all(path_to(s)[-1] == s for s in STATUSES)
    assert "paused" not in TRANSITIONS["validating_files"]  # a paused job has been validated


@pytest.mark.parametrize("current", STATUSES)
def test_every_move_is_allowed_or_raises(store, current):
    for new in STATUSES:
        job_id = job_in(store, current)
        if new in TRANSITIONS[current]:
            assert store.set_status(job_id, new)
            assert store.job_row(job_id)["status"] == new
            assert (store.job_row(job_id)["finished_at"] is not None) == (new in TERMINAL)
        else:
            with pytest.raises(InvalidTransition) as e:
                store.set_status(job_id, new)
            assert isinstance(e.value, JobStateError) and isinstance(e.value, AgentRFTError)
            assert f"is {current}; it cannot become {new}" in str(e.value)
            assert store.job_row(job_id)["status"] == current  # nothing changed


def test_expect_is_a_compare_and_set_not_an_error(store):
    job_id = job_in(store, "queued")
    service.request(store, job_id, "cancel")
    # the validation stage finishing after a cancel: loses the race quietly
    assert store.set_status(job_id, "running", expect=("queued",)) is False
    assert store.job_row(job_id)["status"] == "cancelled"
    with pytest.raises(ValueError, match="unknown job status"):
        store.set_status(job_id, "done")


def test_a_compare_and_set_is_not_fooled_by_another_threads_write(store):
    """The API serves requests on a thread pool. Each cancel below succeeds, while other
    threads keep running UPDATEs that change no row: with one connection shared by every
    thread, `rowcount` read their zero and a cancel that had landed answered 400."""
    job_ids = [job_in(store, "validating_files") for _ in range(100)]
    stop = threading.Event()

    def idle_writes() -> None:
        while not stop.is_set():
            store.update_job("no-such-job", requested="pause")

    writers = [threading.Thread(target=idle_writes) for _ in range(3)]
    for w in writers:
        w.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            moved = list(pool.map(
                lambda j: store.set_status(j, "cancelled", expect=("validating_files",)),
                job_ids))
    finally:
        stop.set()
        for w in writers:
            w.join()
    assert moved == [True] * len(job_ids)


# --- service requests and the API -----------------------------------------------------------

@pytest.mark.parametrize("status, action, words", [
    ("succeeded", "resume", "is succeeded; only paused jobs can be resumed"),
    ("running", "resume", "is running; only paused jobs can be resumed"),
    ("queued", "resume", "is queued; only paused jobs can be resumed"),
    ("failed", "pause", "is failed; only running, queued or validating jobs can be paused"),
    ("paused", "pause", "is paused; only running, queued or validating jobs can be paused"),
    ("cancelled", "cancel", "is cancelled; it has finished and cannot be cancelled"),
    ("succeeded", "cancel", "is succeeded; it has finished"),
])
def test_requests_the_status_does_not_allow_are_400s_that_say_why(client, store, status, action,
                                                                  words):
    job_id = job_in(store, status)
    err = assert_error(client.post(f"/v1/fine_tuning/jobs/{job_id}/{action}"), 400,
                       "invalid_request_error")
    assert err["code"] == "invalid_job_state"
    assert f"job {job_id} {words}" in err["message"]
    assert store.job_row(job_id)["status"] == status


def test_allowed_requests_follow_the_table(client, store):
    running = job_in(store, "running")
    r = client.post(f"/v1/fine_tuning/jobs/{running}/pause")
    assert r.status_code == 200 and r.json()["status"] == "running"  # the worker pauses it
    assert store.job_row(running)["requested"] == "pause"
    paused = job_in(store, "paused")
    store.update_job(paused, error={"code": "TrainingPaused", "message": "m", "param": None})
    resumed = client.post(f"/v1/fine_tuning/jobs/{paused}/resume").json()
    assert resumed["status"] == "queued" and resumed["error"] is None
    assert client.post(f"/v1/fine_tuning/jobs/{paused}/cancel").json()["status"] == "cancelled"


def test_a_pause_asked_during_validation_takes_effect_when_the_files_pass(store, tiny_model_dir):
    """A client that creates a job and pauses it at once (before the files are checked) gets a
    paused job, not a 400 that depends on how fast validation was."""
    from tests.test_jobs_worker import body

    job_id = service.create_job(store, body(store, tiny_model_dir, max_steps=1))["id"]
    assert service.request(store, job_id, "pause")["status"] == "validating_files"
    assert store.job_row(job_id)["requested"] == "pause"
    service.validate_files_sync(store, job_id)
    row = store.job_row(job_id)
    assert (row["status"], row["requested"]) == ("paused", None)
    assert service.request(store, job_id, "resume")["status"] == "queued"


def test_an_invalid_transition_inside_the_server_is_a_400_not_a_500(client, store, monkeypatch):
    """Were a request to slip past the service's own check, the store's error still maps."""
    job_id = job_in(store, "succeeded")
    monkeypatch.setattr(service, "can_move", lambda current, new: True)
    err = assert_error(client.post(f"/v1/fine_tuning/jobs/{job_id}/resume"), 400)
    assert err["code"] == "invalid_job_state"
    assert "is succeeded; it cannot become queued" in err["message"]


# --- the worker: a pause is one mechanism ------------------------------------------------------

def test_a_run_that_pauses_itself_is_paused_with_its_reason_and_resume_clears_it(store,
                                                                                 tiny_model_dir):
    from agentrft.jobs.worker import claim_next, run_job
    from tests.test_jobs_worker import body

    spec = body(store, tiny_model_dir, max_steps=1)
    spec["method"]["reinforcement"]["grader"]["callable"] = "tests.grader_fixtures:buggy"
    job_id = service.create_job(store, spec)["id"]
    service.validate_files_sync(store, job_id)
    assert claim_next(store) == job_id
    assert run_job(store, job_id) == "paused"
    paused = store.get_job(job_id)
    assert paused["error"]["code"] == "TrainingPaused"
    assert "rollouts discarded" in paused["error"]["message"]
    assert f"POST /v1/fine_tuning/jobs/{job_id}/resume" in paused["error"]["message"]
    resumed = service.request(store, job_id, "resume")
    assert resumed["status"] == "queued" and resumed["error"] is None
