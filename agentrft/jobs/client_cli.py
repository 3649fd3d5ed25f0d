"""`agentrft jobs ...`: a thin client of the jobs API (any agentrft server, or OpenAI's shape).

    agentrft jobs create JOB.yaml     uploads the job's dataset files, then creates the job
    agentrft jobs list | get ID | events ID [--follow] | checkpoints ID | pause ID | resume ID | cancel ID

The server is `--base-url` (or AGENTRFT_BASE_URL, default http://127.0.0.1:8000/v1); the
key is `--api-key` (or AGENTRFT_API_KEY).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx

from agentrft.errors import AgentRFTError
from agentrft.jobs.store import TERMINAL


class ApiError(AgentRFTError):
    """The server answered with an error."""


class Client:
    def __init__(self, base_url: str, api_key: str | None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=60)

    def call(self, method: str, path: str, **kwargs):
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ApiError(f"cannot reach {self.http.base_url}: {e}") from None
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                message = err["message"] + (f" (param: {err['param']})" if err.get("param") else "")
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise ApiError(f"{response.status_code}: {message}")
        return response.json()

    def upload(self, path: str) -> str:
        with open(path, "rb") as f:
            return self.call("POST", "/files", files={"file": (Path(path).name, f)},
                             data={"purpose": "fine-tune"})["id"]


def _print(obj) -> None:
    print(json.dumps(obj, indent=2))


def cmd_create(client: Client, args) -> None:
    from agentrft.spec import load_job

    job = load_job(args.job)  # validates locally first: errors name file, line and field
    body = json.loads(job.model_dump_json(exclude_none=True))
    body["training_file"] = client.upload(job.training_file)
    if job.validation_file:
        body["validation_file"] = client.upload(job.validation_file)
    _print(client.call("POST", "/fine_tuning/jobs", json=body))


def cmd_events(client: Client, args) -> None:
    path = f"/fine_tuning/jobs/{args.id}/events"
    if not args.follow:
        _print(client.call("GET", path, params={"limit": args.limit}))
        return
    seen: set[str] = set()
    while True:  # newest first from the API; print oldest first, once each
        events = client.call("GET", path, params={"limit": 100})["data"]
        for e in reversed(events):
            if e["id"] not in seen:
                seen.add(e["id"])
                stamp = time.strftime("%H:%M:%S", time.localtime(e["created_at"]))
                print(f"{stamp} {e['level']:5} {e['message']}", flush=True)
        status = client.call("GET", f"/fine_tuning/jobs/{args.id}")["status"]
        if status in TERMINAL or status == "paused":
            print(f"job {args.id}: {status}")
            return
        time.sleep(args.interval)


def add_parser(sub) -> None:
    jobs = sub.add_parser("jobs", help="create and watch jobs on an agentrft server")
    jobs.add_argument("--base-url", default=os.environ.get("AGENTRFT_BASE_URL",
                                                           "http://127.0.0.1:8000/v1"))
    jobs.add_argument("--api-key", default=os.environ.get("AGENTRFT_API_KEY"))
    js = jobs.add_subparsers(dest="jobs_command", required=True)
    c = js.add_parser("create", help="upload a job file's datasets and create the job")
    c.add_argument("job")
    c.set_defaults(jobs_fn=cmd_create)
    ls = js.add_parser("list")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(jobs_fn=lambda cl, a: _print(cl.call("GET", "/fine_tuning/jobs",
                                                         params={"limit": a.limit})))
    for name in ("get", "checkpoints", "pause", "resume", "cancel"):
        p = js.add_parser(name)
        p.add_argument("id")
        p.set_defaults(jobs_fn=_simple(name))
    e = js.add_parser("events")
    e.add_argument("id")
    e.add_argument("--follow", action="store_true", help="print new events until the job stops")
    e.add_argument("--limit", type=int, default=20)
    e.add_argument("--interval", type=float, default=2.0)
    e.set_defaults(jobs_fn=cmd_events)
    jobs.set_defaults(fn=run)


def _simple(name: str):
    def handler(client: Client, args) -> None:
        base = f"/fine_tuning/jobs/{args.id}"
        if name == "get":
            _print(client.call("GET", base))
        elif name == "checkpoints":
            _print(client.call("GET", f"{base}/checkpoints"))
        else:
            _print(client.call("POST", f"{base}/{name}"))
    return handler


def run(args) -> int:
    args.jobs_fn(Client(args.base_url, args.api_key), args)
    return 0

