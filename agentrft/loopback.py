"""An ASGI app served by uvicorn in a background thread on 127.0.0.1: the tool servers of the
examples, tests and benches run this way inside the process that calls them.

    with LoopbackServer(app, health_path="/health") as server:
        httpx.post(server.url("search"), json=...)

The port (0: any free one) is bound before uvicorn starts, so no other process can take it in
between, and `start()` returns once `health_path` answers (any status code will do).
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn


class LoopbackServer:
    def __init__(self, app, *, port: int = 0, health_path: str = "/health",
                 name: str = "loopback-server", start_timeout_s: float = 10.0,
                 lifespan: str = "off"):
        self.app, self.port, self.health_path, self.lifespan = app, port, health_path, lifespan
        self.name, self.start_timeout_s = name, start_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> LoopbackServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan=self.lifespan,
                                                     timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"{self.name}:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and self._thread.is_alive():
            try:
                httpx.get(self.url(self.health_path), timeout=0.5, trust_env=False)
                return self
            except httpx.TransportError:
                time.sleep(0.01)
        self.stop()
        sock.close()
        raise RuntimeError(f"{self.name} did not start within {self.start_timeout_s:g} s")

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=3)
        if self._thread.is_alive():  # a handler still running: stop waiting for it
            self._server.force_exit = True
            self._thread.join(timeout=3)
        self._server = self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
