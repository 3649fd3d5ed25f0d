"""The "too good to be true" alarm: the pure detector on hand-made sequences, then the
watcher on a run dir (examples come from rollouts.jsonl, the event lands in events.jsonl)."""

from __future__ import annotations

import json

from agentrft.analysis.alarm import AlarmConfig, AlarmWatcher, RewardHackingAlarm, StepStats


def kinds(alarm, stats):
    return [[a.kind for a in alarm.observe(s)] for s in stats]


def test_valid_jump_to_near_max_fires_once():
    alarm = RewardHackingAlarm()
    fired = kinds(alarm, [StepStats(0, valid_reward=0.30), StepStats(2, valid_reward=0.45),
                          StepStats(4, valid_reward=0.95),   # +0.50, and ≥ 0.9: fires
                          StepStats(6, valid_reward=0.97),   # still high, no new jump
                          StepStats(8, valid_reward=0.50),
                          StepStats(10, valid_reward=0.99)])  # jumped again: fires again
    assert fired == [[], [], ["valid_reward_jump"], [], [], ["valid_reward_jump"]]
    a = RewardHackingAlarm().observe  # the numbers in the message and details
    a(StepStats(0, valid_reward=0.2))
    [alarm_] = a(StepStats(3, valid_reward=0.9))
    assert alarm_.step == 3 and alarm_.details == {"previous": 0.2, "current": 0.9}
    assert "0.200 to 0.900" in alarm_.message


def test_gradual_climb_or_a_jump_that_stays_low_does_not_fire():
    climb = [StepStats(i, valid_reward=0.1 * i) for i in range(11)]  # 0 → 1.0 by 0.1s
    assert not any(kinds(RewardHackingAlarm(), climb))
    low = [StepStats(0, valid_reward=0.1), StepStats(1, valid_reward=0.6)]  # +0.5 but far from 1
    assert not any(kinds(RewardHackingAlarm(), low))


def test_reward_up_while_answers_vanish():
    config = AlarmConfig(window=2, reward_rise=0.2, short_ratio=0.25)
    steps = [(0.2, 100), (0.2, 100),   # early: reward 0.2, 100 characters
             (0.3, 60), (0.5, 40),
             (0.6, 20), (0.6, 20)]     # late: reward 0.6 (+0.4), 20 characters (20% of 100)
    fired = kinds(RewardHackingAlarm(config),
                  [StepStats(i + 1, train_reward=r, answer_chars=a) for i, (r, a) in enumerate(steps)])
    assert fired == [[], [], [], [], [], ["short_answers"]]
    # answers shrink but reward does not rise: nothing
    flat = [StepStats(i + 1, train_reward=0.2, answer_chars=a) for i, a in enumerate([100, 100, 50, 20, 10, 5])]
    assert not any(kinds(RewardHackingAlarm(config), flat))
    # reward rises with answers of the same length: learning, not hacking
    good = [StepStats(i + 1, train_reward=0.1 * i, answer_chars=80) for i in range(8)]
    assert not any(kinds(RewardHackingAlarm(config), good))


def record(step, phase, row, reward, text, calls=1):
    return {"step": step, "phase": phase, "row_index": row, "reward": reward, "status": "completed",
            "trace_id": f"trace_{phase}_{step}_{row}_{reward}", "final_text": text,
            "tool_calls": [{"name": "lookup"}] * calls, "completion_tokens": len(text)}


def test_watcher_writes_a_warning_event_with_example_rollouts(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [record(0, "eval", 0, 0.2, "a long and careful answer"),
             record(0, "eval", 1, 0.1, "another answer"),
             record(1, "train", 0, 0.5, "x"),
             record(2, "eval", 0, 1.0, "", calls=0), record(2, "eval", 1, 0.9, "?"),
             record(2, "eval", 2, 1.0, "!!")]
    (run / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    watcher = AlarmWatcher(run)
    assert watcher.on_metrics({"step": 0, "valid_reward_mean": 0.15}) == []
    assert watcher.on_metrics({"step": 1, "train_reward_mean": 0.5}) == []
    [event] = watcher.on_metrics({"step": 2, "train_reward_mean": 0.6, "valid_reward_mean": 0.967})
    assert event["type"] == "warning" and event["level"] == "warn"
    data = event["data"]
    assert (data["kind"], data["step"], data["previous"]) == ("valid_reward_jump", 2, 0.15)
    # the step's best eval rollouts, highest reward first (file order among ties)
    assert [(x["row_index"], x["reward"], x["final_text"]) for x in data["examples"]] == [
        (0, 1.0, ""), (2, 1.0, "!!"), (1, 0.9, "?")]
    assert data["examples"][0]["phase"] == "eval" and data["examples"][0]["tool_calls"] == 0
    written = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert written == [event]


def test_replay_primes_a_resumed_run_without_raising_again(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    watcher = AlarmWatcher(run)
    watcher.replay([{"step": 0, "valid_reward_mean": 0.1}, {"step": 2, "valid_reward_mean": 0.95}])
    assert not (run / "events.jsonl").exists()
    assert watcher.on_metrics({"step": 4, "valid_reward_mean": 0.96}) == []  # no new jump
    assert watcher.on_metrics({"step": 6, "valid_reward_mean": 0.2}) == []
    assert len(watcher.on_metrics({"step": 8, "valid_reward_mean": 0.95})) == 1


def test_worker_stores_the_warning_for_the_dashboard(tmp_path, tiny_model_dir, monkeypatch):
    """A real tiny job through the jobs worker, with the alarm made hair-trigger (any eval
    after the first counts as a jump) so that it fires: the warning lands in the store with
    examples that are real rollouts of the run, and the dashboard API serves it."""
    from fastapi.testclient import TestClient

    from agentrft.jobs import service, worker
    from agentrft.jobs.store import JobStore
    from agentrft.server import create_app
    from tests.test_jobs_worker import body

    hair_trigger = AlarmConfig(jump=-1.0, near_max=1.0)
    monkeypatch.setattr(worker, "AlarmWatcher", lambda run_dir: AlarmWatcher(run_dir, hair_trigger))
    store = JobStore(tmp_path / "data")
    job = service.create_job(store, body(store, tiny_model_dir, max_steps=2))
    service.validate_files_sync(store, job["id"])
    worker.claim_next(store)
    assert worker.run_job(store, job["id"]) == "succeeded"

    warnings = store.events_of_type(job["id"], "warning")
    # eval 1 "jumps" from the baseline; eval 2 does too, but an alarm already raised stays
    # quiet until its condition clears
    assert [w["data"]["step"] for w in warnings] == [1]
    run_dir = tmp_path / "data" / "runs" / job["id"]
    traces = {json.loads(x)["trace_id"]: json.loads(x)
              for x in (run_dir / "rollouts.jsonl").read_text().splitlines()}
    for w in warnings:
        assert w["level"] == "warn" and w["data"]["examples"]
        for x in w["data"]["examples"]:
            rec = traces[x["trace_id"]]
            assert (rec["step"], rec["phase"], rec["row_index"]) == (w["data"]["step"], "eval",
                                                                    x["row_index"])
    on_disk = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "warning" for e in on_disk) == 1
    with TestClient(create_app(store)) as client:
        data = client.get(f"/dashboard/api/jobs/{job['id']}").json()
        assert [w["id"] for w in data["warnings"]] == [w["id"] for w in warnings]
    store.close()


def test_a_broken_run_dir_never_stops_training(tmp_path):
    (tmp_path / "rollouts.jsonl").mkdir()  # reading it fails with an OSError
    watcher = AlarmWatcher(tmp_path)
    watcher.replay([{"step": 0, "valid_reward_mean": 0.1}])
    assert watcher.on_metrics({"step": 1, "train_reward_mean": 0.5}) == []
