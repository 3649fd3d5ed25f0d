"""`agentrft server` as a user starts it: the dashboard at / with sign-in, and a SIGTERM that
stops the worker process too (uvicorn re-raises the signal it caught; without a handler of
ours that killed the server before it stopped its workers)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from tests.test_server_sdk import KEY, Server, free_port


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_server_serves_the_dashboard_and_sigterm_stops_its_worker(tmp_path):
    port = free_port()
    server = Server(tmp_path / "data", port)
    url = f"http://127.0.0.1:{port}"
    try:
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "plotly.min.js" in page.text
        assert httpx.get(url + "/dashboard/api/jobs").status_code == 401
        with httpx.Client(base_url=url) as browser:
            assert browser.post("/dashboard/login", data={"key": KEY}).status_code == 303
            assert browser.get("/dashboard/api/jobs").json()["data"] == []
        deadline = time.time() + 30
        while not (workers := children(server.proc.pid)) and time.time() < deadline:
            time.sleep(0.2)
        assert workers, "the server started no worker"
    finally:
        server.stop()
    assert server.proc.returncode is not None
    deadline = time.time() + 20
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(w) for w in workers), "the worker outlived the server"
