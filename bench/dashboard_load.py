"""How responsive the dashboard is for a long job: 500 steps and 50,000 rollouts recorded.

Synthesises a finished job (tests/dashboard_fixtures.py: 500 train steps × 8 rows × 12
rollouts, plus 21 evals × 20 rows × 5 samples = 50,100 rollouts, ~3 KB each), serves it with
`agentrft.server.create_app` under uvicorn in a separate process on loopback, and times:

- the job page's data (`GET /dashboard/api/jobs/{id}`): the first request, which builds the
  rollout index (one pass over rollouts.jsonl), then warm requests (what each poll costs);
- the trace viewer's requests: steps, rows of a step, one row's rollouts (the trace), and
  one rollout by trace_id, at random steps and rows;
- with Debian's chromium present (or --browser), the whole page in a headless browser:
  from navigation to every chart drawn, and from navigation to a trace shown.

Baseline to compare against: reading the run the naive way, `json.loads` of every line of
rollouts.jsonl, which a trace request without the index would pay each time.

    .venv/bin/python bench/dashboard_load.py                  # 500 steps, 50,100 rollouts
    .venv/bin/python bench/dashboard_load.py --steps 100 --no-browser

Measured 2026-11-22 on the 2-core dev machine while others ran tests (load average 6-7):
job page data 2.7 s on the first request (index build; baseline json.loads of every line
1.4 s), 0.73 s after a server restart (index cache), 24 ms warm (428 KiB); a trace 4.0 ms,
by trace_id 3.2 ms; server RSS 58 → 128 MB; in chromium, the job page with all 11 charts
1.3 s (4.6 s with a fresh server and browser), a trace 0.44 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from agentrft.jobs.store import JobStore  # noqa: E402
from tests.dashboard_fixtures import (chromium_available, headless_chromium,  # noqa: E402
                                      synthesize_job)

SERVER = """
import sys, uvicorn
from agentrft.jobs.store import JobStore
from agentrft.server import create_app
uvicorn.run(create_app(JobStore(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/health", trust_env=False)
            return proc, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                stop(proc)
                raise
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def timed(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    r = client.get(path)
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return elapsed, r


def ms(x: float) -> str:
    return f"{1000 * x:8.1f} ms"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--group", type=int, default=12)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=20, help="warm requests per figure")
    ap.add_argument("--browser", dest="browser", action="store_true", default=None)
    ap.add_argument("--no-browser", dest="browser", action="store_false")
    args = ap.parse_args()
    browser = chromium_available() if args.browser is None else args.browser
    rng = random.Random(0)

    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        data = Path(tmp)
        store = JobStore(data)
        t0 = time.perf_counter()
        job_id, run_dir = synthesize_job(store, steps=args.steps, rows=args.rows, group=args.group,
                                         eval_every=args.eval_every, eval_rows=20, eval_samples=5)
        store.close()
        size = (run_dir / "rollouts.jsonl").stat().st_size
        lines = sum(1 for _ in (run_dir / "rollouts.jsonl").open("rb"))
        print(f"synthesised {args.steps} steps, {lines:,} rollouts, rollouts.jsonl "
              f"{size / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        with (run_dir / "rollouts.jsonl").open("rb") as f:
            for line in f:
                json.loads(line)
        naive = time.perf_counter() - t0

        proc, url = start_server(data)
        try:
            with httpx.Client(base_url=url, timeout=120, trust_env=False) as client:
                api = f"/dashboard/api/jobs/{job_id}"
                results: list[tuple[str, str]] = []
                static = sum(timed(client, p)[0] for p in
                             ("/", "/dashboard/static/app.js", "/dashboard/static/plotly.min.js"))
                results.append(("page + app.js + plotly.min.js (4.8 MB)", ms(static)))
                rss_before = rss_mb(proc.pid)
                cold, r = timed(client, api)
                body = r.json()
                assert len(body["metrics"]) == args.steps + 1
                results.append(("job page data, first request (builds the index)", ms(cold)))
                warm = [timed(client, api)[0] for _ in range(args.repeat)]
                results.append((f"job page data, warm (median of {args.repeat}; "
                                f"{len(r.content) / 1024:.0f} KiB)", ms(statistics.median(warm))))
                results.append(("jobs list", ms(statistics.median(
                    [timed(client, "/dashboard/api/jobs")[0] for _ in range(args.repeat)]))))
                steps_t, r = timed(client, f"{api}/steps")
                steps = r.json()["data"]
                results.append((f"trace picker: steps ({len(steps)} entries)", ms(steps_t)))
                row_t, trace_t, id_t = [], [], []
                for _ in range(args.repeat):
                    s = rng.choice(steps)
                    t, r = timed(client, f"{api}/rows?step={s['step']}&phase={s['phase']}")
                    row_t.append(t)
                    row = rng.choice(r.json()["data"])["row_index"]
                    t, r = timed(client, f"{api}/trace?step={s['step']}&phase={s['phase']}&row={row}")
                    trace_t.append(t)
                    trace_id = r.json()["rollouts"][0]["trace_id"]
                    id_t.append(timed(client, f"{api}/trace?trace_id={trace_id}")[0])
                results.append(("trace picker: rows of a step (median)", ms(statistics.median(row_t))))
                results.append(("trace open: one row's rollouts (median)", ms(statistics.median(trace_t))))
                results.append(("trace open: by trace_id (median)", ms(statistics.median(id_t))))
                results.append(("baseline: json.loads of every rollout line", ms(naive)))
                results.append(("server RSS before / after indexing",
                                f"{rss_before:.0f} / {rss_mb(proc.pid):.0f} MB"))

        finally:
            stop(proc)

        # a restarted server: the index comes from its cache in the data dir
        proc, url = start_server(data)
        try:
            with httpx.Client(base_url=url, timeout=120, trust_env=False) as client:
                restart, _ = timed(client, f"/dashboard/api/jobs/{job_id}")
            results.append(("job page data, first request after a restart (index cache)",
                            ms(restart)))
        finally:
            stop(proc)

        if browser:  # a fresh server (index from the cache) and a fresh browser
            proc, url = start_server(data)
            charts = ("const c=[...document.querySelectorAll('.chart')];"
                      "return c.length>=11 && c.every(d=>d.data);")
            page_t, open_t = [], []
            try:
                with headless_chromium() as driver:
                    for _ in range(4):
                        driver.get("about:blank")
                        t0 = time.perf_counter()
                        driver.get(f"{url}/#/jobs/{job_id}")
                        _wait(driver, charts)
                        page_t.append(time.perf_counter() - t0)
                        s = rng.choice([s for s in steps if s["phase"] == "train"])
                        driver.get("about:blank")
                        t0 = time.perf_counter()
                        driver.get(f"{url}/#/jobs/{job_id}/traces?step={s['step']}&phase=train")
                        _wait(driver, "return document.body.dataset.traceLoaded === '1'")
                        open_t.append(time.perf_counter() - t0)
            finally:
                stop(proc)
            results.append(("browser: job page to all 11 charts drawn, fresh server and browser",
                            ms(page_t[0])))
            results.append(("browser: job page to all 11 charts drawn (median of 3 more)",
                            ms(statistics.median(page_t[1:]))))
            results.append(("browser: trace viewer to a row's trace shown (median of 4)",
                            ms(statistics.median(open_t))))

    width = max(len(k) for k, _ in results)
    for k, v in results:
        print(f"{k:<{width}}  {v}")


def _wait(driver, script: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise TimeoutError(script)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
