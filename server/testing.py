"""A uvicorn server in a background thread on an ephemeral loopback port (tests, load runs).

Example:
    >>> with ServerThread(create_app(...)) as url:              # doctest: +SKIP
    ...     httpx.get(f"{url}/healthz")
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class ServerThread:
    """Start ``app`` with uvicorn on ``127.0.0.1:<free port>`` in a daemon thread; the context
    value is the base URL. Waits up to ``ready_timeout`` seconds for ``/readyz`` (when
    ``wait_ready``), and stops the server on exit."""

    def __init__(self, app: Any, *, wait_ready: bool = True, ready_timeout: float = 120.0, log_level: str = "warning", **config: Any) -> None:
        self.app = app
        self.wait_ready = wait_ready
        self.ready_timeout = ready_timeout
        self.config = uvicorn.Config(app, log_level=log_level, lifespan="on", **config)
        self.server = uvicorn.Server(self.config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="uvicorn", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.ready_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the uvicorn server did not start")
            time.sleep(0.02)
        if self.wait_ready:
            try:
                self._wait_ready(deadline)
            except BaseException:
                self.stop()
                raise
        return self.url

    def _wait_ready(self, deadline: float) -> None:
        import httpx

        while True:
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=5, trust_env=False)
                if r.status_code == 200:
                    return
                if r.status_code == 503 and r.json().get("error", {}).get("code") == "load_failed":
                    raise RuntimeError(f"the server failed to load: {r.text}")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready after {self.ready_timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()
