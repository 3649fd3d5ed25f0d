"""The dashboard in a real headless browser (Debian's chromium through its chromedriver,
driven by Selenium), against a real server on loopback, for a real finished tiny job.

The job: the lookup task trained by the jobs worker on a tiny Llama that was first fitted
(a few seconds) to answer with a `lookup` tool call and then a short answer, so its traces
hold real tool calls made through the real rollout loop. Screenshots go to
test-artifacts/dashboard/.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentrft.analysis import compare, load_eval
from agentrft.jobs import service
from agentrft.jobs.store import JobStore
from agentrft.jobs.worker import claim_next, run_job
from agentrft.server import create_app
from examples.lookup import task
from tests.dashboard_fixtures import chromium_available, headless_chromium, serving, synthesize_job
from tests.system_parts import needs_system

pytestmark = needs_system("Debian's chromium and chromium-driver",
                          None if chromium_available() else "not installed")

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "dashboard"
KEY = "sk-browser"
CALL = '<tool_call>{"name": "lookup", "arguments": {"name": "Alice"}}</tool_call>'
ANSWER = "Alice is in room 123."
WAIT_S = 20


@pytest.fixture(scope="module")
def tool_calling_model_dir(tmp_path_factory, tokenizer):
    """A tiny Llama fitted to write CALL as its first turn and ANSWER after the tool result
    (loss on those tokens only, logits only where there is loss: a few seconds on CPU)."""
    import torch

    from agentrft.models.chat import ChatRenderer
    from tests.tiny_model import tiny_llama

    renderer = ChatRenderer(tokenizer)
    end = renderer.close_turn_ids([])
    enc = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    sequences = []
    for row in task.make_rows()[0][:6]:
        prompt = renderer.prompt_ids(row["messages"], row["tools"])
        first = enc(CALL) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
        result = renderer.tool_results_ids([{"role": "tool", "content": "Alice: room 123"}])
        second = enc(ANSWER) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
        ids = prompt + first + end + result + second
        targets = set(range(len(prompt), len(prompt) + len(first)))
        start = len(ids) - len(second)
        targets |= set(range(start, len(ids)))
        sequences.append((ids, sorted(targets)))

    torch.manual_seed(0)
    model = tiny_llama(seed=0, vocab_size=len(tokenizer), hidden_size=32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ops this small only lose to thread hand-offs on a busy CPU
    try:
        for _ in range(60):
            opt.zero_grad()
            loss = 0.0
            for ids, targets in sequences:
                hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]  # (T, H)
                pos = torch.tensor(targets)
                logits = model.lm_head(hidden[pos - 1])  # predict token t from position t-1
                loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(ids)[pos])
            (loss / len(sequences)).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    path = tmp_path_factory.mktemp("tool-calling-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tool_calling_model_dir):
    """A store holding one real job trained to `succeeded` by the worker, and one synthetic
    job carrying a reward-hacking warning."""
    store = JobStore(tmp_path_factory.mktemp("data"))
    train_rows, valid_rows = task.make_rows()
    t = store.add_file("train.jsonl", "fine-tune", jsonl(train_rows[:4]))
    v = store.add_file("valid.jsonl", "fine-tune", jsonl(valid_rows[:2]))
    body = {"model": str(tool_calling_model_dir), "training_file": t["id"],
            "validation_file": v["id"], "seed": 1, "suffix": "browser",
            "method": {"type": "reinforcement", "reinforcement": {
                "grader": {"type": "python", "name": "g",
                           "callable": "tests.test_train_tiny:length_grade"},
                "tools": [{"name": "lookup", "python": "examples.lookup.task:lookup"}],
                "max_episode_steps": 2,
                "hyperparameters": {"n_epochs": 2, "batch_size": 2, "eval_interval": 1,
                                    "eval_samples": 2, "max_new_tokens": 40, "max_steps": 3,
                                    "temperature": 0.7,
                                    # a dashboard fixture, not a learning test: train even if
                                    # the first step's groups happen to be flat
                                    "readiness_gate": False}}}}
    job = service.create_job(store, body)
    service.validate_files_sync(store, job["id"])
    assert claim_next(store) == job["id"]
    assert run_job(store, job["id"]) == "succeeded"
    synthetic_id, _ = synthesize_job(store, steps=6, rows=2, group=2, eval_every=3)
    yield store, job["id"], synthetic_id
    store.close()


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait_for(driver, script: str, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(
            lambda d: d.execute_script(script))
    except Exception as e:
        shot(driver, f"failed-{what}")
        raise AssertionError(f"waiting for {what}: {type(e).__name__} {e}; browser log: "
                             f"{driver.get_log('browser')}") from None


CHART_POINTS = """
const charts = [...document.querySelectorAll('.chart')];
if (charts.length < 12 || charts.some(c => !c.data)) return null;
return charts.map(c => [c.id, c.data.map(t => [t.meta, t.x.length])]);
"""


def expected_points(metrics: list[dict], key: str, train_steps: int,
                    quadrants: dict[str, int] | None = None) -> int:
    if key.startswith("@tool_calls"):  # the distribution, all tools or one
        return train_steps
    if key.startswith("quadrant:"):  # the before/after scatter: a point per row
        return quadrants[key.split(":", 1)[1]]
    if key.startswith("~"):  # one metric against another: steps with both
        _, x, y = key.split("~")
        return sum(expected_points([m], x, 0) and expected_points([m], y, 0) for m in metrics)
    return sum(isinstance(m.get(key), (int, float)) and math.isfinite(m[key]) for m in metrics)


def test_dashboard_end_to_end(finished):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    store, job_id, synthetic_id = finished
    run_dir = Path(store.job_row(job_id)["run_dir"])
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rollouts = [json.loads(x) for x in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2, 3]
    with_calls = [r for r in rollouts if r["tool_calls"]]
    assert with_calls, "the fitted model made no tool calls"

    with serving(create_app(store, api_keys=[KEY])) as url, headless_chromium() as driver:
        # sign in through the page's form
        driver.get(url + "/")
        wait_for(driver, "return !!document.querySelector('form.login input[name=key]')", "login form")
        shot(driver, "00-login")
        driver.find_element(By.CSS_SELECTOR, "form.login input[name=key]").send_keys(KEY)
        driver.find_element(By.CSS_SELECTOR, "form.login button").click()

        # jobs
        wait_for(driver, f"return !!document.querySelector('tr[data-job=\"{job_id}\"]')", "jobs table")
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')
        assert "succeeded" in row.text and "3/3" in row.text
        shot(driver, "01-jobs")

        # the job page: every chart drawn, with one point per step that has the metric
        driver.get(f"{url}/#/jobs/{job_id}")
        charts = wait_for(driver, CHART_POINTS, "charts")
        shot(driver, "02-job")
        train_steps = sum(1 for m in metrics if "train_reward_mean" in m)
        assert train_steps == 3
        comparison = compare(load_eval(run_dir, 0), load_eval(run_dir, 3))  # first vs last eval
        by_chart = {cid: dict(traces) for cid, traces in charts}
        for cid, traces in by_chart.items():
            assert traces, f"{cid} has no data"
            for key, n in traces.items():
                assert n == expected_points(metrics, key, train_steps, comparison.quadrants), (cid, key, n)
        assert sum(by_chart["chart-delta"].values()) == len(comparison.rows) == 2
        table = {tr.get_attribute("data-key"): [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                 for tr in driver.find_elements(By.CSS_SELECTOR, "#compare-table tr[data-key]")}
        b, f = comparison.baseline_stats, comparison.final_stats
        for key in ("mean_reward", "tool_calls_per_rollout.lookup", "completion_tokens_mean"):
            shown = [float(x) for x in table[key][1:3]]
            assert shown == pytest.approx([b[key], f[key]], abs=1e-3), key
        assert by_chart["chart-reward"]["train_reward_mean"] == 3
        assert by_chart["chart-reward"]["valid_reward_mean"] == 4  # baseline + 3 evals
        assert by_chart["chart-tool-calls"]["@tool_calls"] == 3
        assert by_chart["chart-tool-calls"]["@tool_calls.lookup"] == 3
        assert by_chart["chart-tool-calls"]["tool_calls_per_rollout.lookup"] == 3
        assert by_chart["chart-timing"]["timing.full_iteration"] == 3
        assert by_chart["chart-reward-vs-calls"]["~tool_calls_per_rollout~train_reward_mean"] == 3
        assert by_chart["chart-reward-vs-reasoning"]["~reasoning_tokens_mean~train_reward_mean"] == 3
        assert set(by_chart) == {"chart-delta", "chart-reward", "chart-reward-vs-calls",
                                 "chart-reward-vs-reasoning", "chart-tokens", "chart-tool-calls",
                                 "chart-tokens-per-call", "chart-latency", "chart-errors",
                                 "chart-discarded", "chart-zero-variance", "chart-timing"}
        ckpt_rows = driver.find_elements(By.CSS_SELECTOR, "#checkpoints tr")
        assert len(ckpt_rows) - 1 == len(store.checkpoint_rows(job_id))
        events = driver.find_element(By.ID, "events").text
        assert "The job has successfully completed" in events

        # a point of the before/after scatter opens that row's traces, after beside before
        point = driver.find_element(By.CSS_SELECTOR, "#chart-delta .scatterlayer path.point")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
        # Plotly's drag layer lies over the points and turns a click there into plotly_click
        ActionChains(driver).move_to_element(point).pause(0.3).click().perform()
        wait_for(driver, "return document.body.dataset.traceLoaded === '1'", "clicked row")
        assert [s.get_attribute("data-step") for s in
                driver.find_elements(By.CSS_SELECTOR, "#sides .side")] == ["3", "0"]

        # a trace with tool calls: name, arguments, output, latency
        r = with_calls[0]
        driver.get(f"{url}/#/jobs/{job_id}/traces?step={r['step']}&phase={r['phase']}"
                   f"&row={r['row_index']}")
        wait_for(driver, "return document.body.dataset.traceLoaded === '1'", "trace")
        card = driver.find_element(By.CSS_SELECTOR, f'.rollout[data-trace="{r["trace_id"]}"]')
        calls = card.find_elements(By.CSS_SELECTOR, "tr.toolcall")
        assert len(calls) == len(r["tool_calls"])
        first = r["tool_calls"][0]
        cells = calls[0].find_elements(By.TAG_NAME, "td")
        assert cells[1].text == first["name"] == "lookup"
        assert cells[2].text == first["arguments"] and first["output"][:20] in cells[3].text
        assert cells[4].text.endswith(" s")
        assert card.find_element(By.CSS_SELECTOR, "pre.final").text == r["final_text"].strip()
        shot(driver, "03-trace")

        # baseline and the last checkpoint's eval side by side, same row
        driver.get(f"{url}/#/jobs/{job_id}/traces?step=3&phase=eval&row=0&cmp=0")
        wait_for(driver, "return document.body.dataset.traceLoaded === '1'", "side by side")
        sides = driver.find_elements(By.CSS_SELECTOR, "#sides .side")
        assert [s.get_attribute("data-step") for s in sides] == ["3", "0"]
        for side in sides:  # 2 eval samples of row 0 on each side
            assert len(side.find_elements(By.CSS_SELECTOR, ".rollout")) == 2
        shot(driver, "04-side-by-side")

        # the reward-hacking banner, and its example opens the trace
        driver.get(f"{url}/#/jobs/{synthetic_id}")
        wait_for(driver, "return !!document.querySelector('.banner a')", "banner")
        banner = driver.find_element(By.CSS_SELECTOR, ".banner")
        assert "Too good to be true" in banner.text and '"<b>42</b>"' in banner.text
        shot(driver, "05-banner")
        banner.find_element(By.TAG_NAME, "a").click()
        wait_for(driver, "return document.body.dataset.traceLoaded === '1'", "example trace")
        assert driver.find_elements(By.CSS_SELECTOR, '.rollout[data-trace="trace_eval_6_0_0"]')


def test_job_page_follows_a_running_job(tmp_path):
    """Charts grow as steps land, without reloading; the page stops polling once the job ends."""
    from tests.dashboard_fixtures import synthesize_run

    store = JobStore(tmp_path / "data")
    job = store.create_job({"model": "m", "training_file": "f", "method": {}})
    store.set_status(job["id"], "queued")
    store.set_status(job["id"], "running")
    run_dir = Path(store.job_row(job["id"])["run_dir"])
    metrics = synthesize_run(tmp_path / "full", steps=8, rows=2, group=3, eval_every=4)
    lines = (tmp_path / "full" / "rollouts.jsonl").read_text().splitlines(keepends=True)
    run_dir.mkdir(parents=True)

    def land(upto: int) -> None:
        """Steps up to `upto` recorded, as the trainer and worker write them."""
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics[:upto + 1]))
        (run_dir / "rollouts.jsonl").write_text("".join(x for x in lines if json.loads(x)["step"] <= upto))
        for m in metrics[:upto + 1]:
            store.add_event(job["id"], f"Step {m['step']}/8", type="metrics", step=m["step"],
                            data={**m, "total_steps": 8})

    land(3)
    train_points = ("return (document.getElementById('chart-reward')?.data || [])"
                    ".filter(t => t.meta === 'train_reward_mean').map(t => t.x.length)[0] || 0")
    with serving(create_app(store)) as url, headless_chromium() as driver:
        driver.get(f"{url}/#/jobs/{job['id']}")
        assert wait_for(driver, f"const n = (() => {{ {train_points} }})(); return n === 3 && n",
                        "3 train steps") == 3
        land(6)
        wait_for(driver, f"return (() => {{ {train_points} }})() === 6", "6 train steps")
        box = driver.execute_script("return document.getElementById('chart-tool-calls').data[0].x.length")
        assert box == 6
        land(8)
        store.set_status(job["id"], "succeeded")
        wait_for(driver, "return document.getElementById('job-status').textContent === 'succeeded'",
                 "status")
        assert driver.execute_script(f"return (() => {{ {train_points} }})()") == 8
        shot(driver, "06-followed-running-job")
    store.close()
