"""The run report on a fixed, hand-made pair of evals: 4 rows, 2 samples per row (plus one
discarded rollout), every expected number worked out by hand below."""

from __future__ import annotations

import json

import pytest

from agentrft.analysis import (QUADRANTS, compare, eval_steps, format_summary_table, load_eval,
                               quadrant, write_report)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert('x')</script>"


def rollout(row, reward, tools, tokens, latency, text="", status="completed"):
    return {"row_index": row, "reward": reward, "status": status, "trace_id": f"trace_{row}",
            "tool_calls": [{"turn": t, "call_id": f"call_{t}", "name": name, "arguments": "{}",
                            "output": "ok", "is_error": False, "latency_s": latency}
                           for t, name in enumerate(tools)],
            "completion_tokens": tokens, "turns": len(tools) + 1, "final_text": text,
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": f"Q{row}: what is <b>revenue</b>?"}]}


# row: (reward, tool names, completion tokens)
BASELINE = [
    rollout(0, 0.0, ["search", "search", "search"], 30, 0.5),  # search→search twice
    rollout(0, 0.5, ["search", "cat"], 20, 0.5),
    rollout(1, 1.0, ["search"], 10, 0.5),
    rollout(1, 1.0, [], 10, 0.5),
    rollout(2, 0.0, ["cat", "cat"], 40, 0.5),  # cat→cat once
    rollout(2, 0.0, ["search"], 20, 0.5),
    rollout(3, 0.5, ["search"], 10, 0.5),
    rollout(3, 0.5, ["search"], 10, 0.5, text="baseline row 3"),
]
FINAL = [
    rollout(0, 1.0, ["search", "cat"], 20, 0.25, text="42"),
    rollout(0, 0.5, ["search"], 10, 0.25),
    rollout(1, 1.0, ["search", "search"], 30, 0.25),  # search→search once
    rollout(1, 0.0, ["search", "search", "search"], 40, 0.25),  # twice
    rollout(2, 0.0, ["cat"], 10, 0.25, text=SCRIPT),
    rollout(2, 0.0, [], 10, 0.25),
    rollout(3, 1.0, ["search"], 10, 0.25),
    rollout(3, 0.5, ["search"], 10, 0.25),
    rollout(3, None, ["search"], 5, 0.25, status="discarded"),  # counts for calls, not reward
]


def write_eval(path, records, wall_s, step=0):
    path.mkdir()
    path.joinpath("rollouts.jsonl").write_text(
        "".join(json.dumps({"step": step, "phase": "eval", **r}) + "\n" for r in records))
    path.joinpath("summary.json").write_text(json.dumps({"model": path.name, "wall_s": wall_s}))
    return path


@pytest.fixture
def evals(tmp_path):
    return (write_eval(tmp_path / "baseline", BASELINE, 12.5),
            write_eval(tmp_path / "final", FINAL, 10.0))


@pytest.fixture
def run_dir(tmp_path):
    """A training run dir holding the same evals at steps 0 and 2, and a train step between."""
    path = tmp_path / "run"
    path.mkdir()
    lines = [{"step": 0, "phase": "eval", **r} for r in BASELINE]
    lines += [{"step": 1, "phase": "train", **r} for r in FINAL[:2]]
    lines += [{"step": 2, "phase": "eval", **r} for r in FINAL]
    path.joinpath("rollouts.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines) + '{"torn line')
    metrics = [{"step": 0, "valid_reward_mean": 0.4375, "timing.eval": 3.0},
               {"step": 1, "train_reward_mean": 0.25, "timing.full_iteration": 5.0},
               {"step": 2, "train_reward_mean": 0.75, "valid_reward_mean": 0.5,
                "timing.eval": 4.0, "timing.full_iteration": 7.0}]
    path.joinpath("metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return path


def test_load_eval_groups_rows(evals):
    base = load_eval(evals[0])
    assert list(base.rows) == [0, 1, 2, 3]
    row0 = base.rows[0]
    assert row0.rewards == [0.0, 0.5]
    assert (row0.mean, row0.best, row0.std) == (0.25, 0.5, 0.25)
    assert row0.tool_calls_mean == 2.5
    assert row0.tool_calls_by_tool() == {"cat": 0.5, "search": 2.0}
    assert row0.completion_tokens_mean == 25.0
    assert row0.latency_mean == 0.5
    assert base.wall_s == 12.5 and base.model == "baseline"
    final_row3 = load_eval(evals[1]).rows[3]
    assert final_row3.n == 2 and final_row3.mean == 0.75  # the discarded one has no reward
    assert final_row3.tool_calls_mean == 1.0  # ... but its call counts


def test_compare_by_hand(evals):
    c = compare(load_eval(evals[0]), load_eval(evals[1]))
    # row: Δreward = final mean − baseline mean; Δcalls = final − baseline calls per rollout
    # 0: 0.75 − 0.25 = +0.5,   1.5 − 2.5 = −1  -> better_fewer
    # 1: 0.5  − 1.0  = −0.5,   2.5 − 0.5 = +2  -> worse_more
    # 2: 0.0  − 0.0  =  0,     0.5 − 1.5 = −1  -> unchanged (reward ties win over calls)
    # 3: 0.75 − 0.5  = +0.25,  1.0 − 1.0 =  0  -> better_fewer (same calls count as fewer)
    assert [(d.row_index, d.d_reward, d.d_calls, d.quadrant) for d in c.rows] == [
        (0, 0.5, -1.0, "better_fewer"), (1, -0.5, 2.0, "worse_more"),
        (2, 0.0, -1.0, "unchanged"), (3, 0.25, 0.0, "better_fewer")]
    assert c.quadrants == {"better_fewer": 2, "better_more": 0, "worse_fewer": 0,
                           "worse_more": 1, "unchanged": 1}
    assert c.unmatched_rows == () and c.tools == ("cat", "search")

    b, f = c.baseline_stats, c.final_stats
    # baseline: row means 0.25, 1, 0, 0.5; bests 0.5, 1, 0, 0.5; stds 0.25, 0, 0, 0
    assert (b["mean_reward"], b["best_of_n_reward"], b["mean_row_std"]) == (0.4375, 0.5, 0.0625)
    assert b["zero_variance_share"] == 0.75
    # 8 rollouts, 11 calls: search 8, cat 3
    assert (b["rollouts"], b["tool_calls_per_rollout"]) == (8, 11 / 8)
    assert (b["tool_calls_per_rollout.search"], b["tool_calls_per_rollout.cat"]) == (1.0, 0.375)
    assert b["completion_tokens_mean"] == 150 / 8 and b["tool_latency_mean"] == 0.5
    assert (b["repeat_bigrams"], b["repeat_bigrams.search"], b["repeat_bigrams.cat"]) == (3, 2, 1)
    # final: row means 0.75, 0.5, 0, 0.75; bests 1, 1, 0, 1; stds 0.25, 0.5, 0, 0.25
    assert (f["mean_reward"], f["best_of_n_reward"], f["mean_row_std"]) == (0.5, 0.75, 0.25)
    assert f["zero_variance_share"] == 0.25
    # 9 rollouts (one discarded), 12 calls: search 10, cat 2
    assert (f["rollouts"], f["discarded_rollouts"], f["scored_rollouts"]) == (9, 1, 8)
    assert f["tool_calls_per_rollout"] == 12 / 9
    assert (f["tool_calls_per_rollout.search"], f["tool_calls_per_rollout.cat"]) == (10 / 9, 2 / 9)
    assert f["completion_tokens_mean"] == 145 / 9 and f["tool_latency_mean"] == 0.25
    assert (f["repeat_bigrams"], f["repeat_bigrams.search"], f["repeat_bigrams.cat"]) == (3, 3, 0)

    top = c.top_examples(k=1)
    assert [d.row_index for d in top["better_fewer"]] == [0]  # |0.5| beats |0.25|
    assert [d.row_index for d in c.top_examples(k=5)["better_fewer"]] == [0, 3]
    assert top["better_more"] == [] and [d.row_index for d in top["unchanged"]] == [2]


def test_quadrant_zero_handling():
    assert quadrant(0.0, 5.0) == "unchanged"
    assert quadrant(1e-12, -1.0) == "unchanged"  # float noise is a tie
    assert quadrant(0.1, 0.0) == "better_fewer"
    assert quadrant(-0.1, 0.0) == "worse_fewer"
    assert quadrant(0.1, 0.5) == "better_more"
    assert quadrant(-0.1, 0.5) == "worse_more"
    assert set(QUADRANTS) == {"better_fewer", "better_more", "worse_fewer", "worse_more",
                              "unchanged"}


def test_write_report(evals, run_dir, tmp_path):
    out = tmp_path / "report"
    summary = write_report(out, *evals, run_dir=run_dir, title="demo <run>",
                           wall_times={"total": 30.0})
    names = ["variance.png", "reward_curves.png", "tool_calls.png", "delta_scatter.png"]
    assert summary["files"] == names + ["report.html", "summary.json"]
    for name in names:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC

    page = (out / "report.html").read_text()
    assert SCRIPT not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<b>revenue</b>" not in page and "&lt;b&gt;revenue&lt;/b&gt;" in page
    assert "demo &lt;run&gt;" in page
    for name in names:
        assert f'src="{name}"' in page

    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["baseline"]["mean_reward"] == 0.4375
    assert summary["final"]["best_of_n_reward"] == 0.75
    assert summary["delta"]["mean_reward"] == 0.0625
    assert summary["quadrants"]["better_fewer"] == 2
    assert summary["wall_s"] == {"baseline_eval": 12.5, "final_eval": 10.0, "training": 12.0,
                                 "total": 30.0}
    assert summary["training"]["valid_reward_mean"] == {"0": 0.4375, "2": 0.5}
    example = summary["top_examples"]["better_fewer"][0]
    assert (example["row_index"], example["final_answer"], example["final_answer_reward"]) == (
        0, "42", 1.0)
    assert example["final_answer_tools"] == ["search", "cat"]
    assert "search → cat" in page

    table = format_summary_table(summary)
    assert "mean_reward" in table and "+0.062" in table and "better+same-or-fewer 2" in table

    again = write_report(tmp_path / "again", *evals, run_dir=run_dir, title="demo <run>",
                         wall_times={"total": 30.0})
    for name in names:  # deterministic files
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert again["quadrants"] == summary["quadrants"]


def test_run_dir_eval_steps(run_dir, tmp_path):
    assert eval_steps(run_dir) == [0, 2]
    with pytest.raises(ValueError, match="pass step="):
        load_eval(run_dir)
    base, final = load_eval(run_dir, step=0), load_eval(run_dir, step=2)
    assert (base.wall_s, final.wall_s) == (3.0, 4.0)  # timing.eval of that step
    assert compare(base, final).quadrants["worse_more"] == 1
    with pytest.raises(ValueError, match="no eval rollouts at step 1"):
        load_eval(run_dir, step=1)  # step 1 holds only train rollouts

    # no eval dirs given: the run's first and last eval steps; no reward curves without run_dir
    summary = write_report(tmp_path / "r", None, None, run_dir=run_dir)
    assert (summary["baseline"]["step"], summary["final"]["step"]) == (0, 2)
    assert summary["final"]["mean_reward"] == 0.5
    only_evals = write_report(tmp_path / "r2", base, final)
    assert "reward_curves.png" not in only_evals["files"]
    assert not (tmp_path / "r2" / "reward_curves.png").exists()
