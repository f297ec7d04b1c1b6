"""`rulerag serve --workers N`: N processes on one port, answering alike (a real server in a
subprocess, the packaged embedding model, the fixed generator)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from rulerag.demo import DEMO_CORPUS, DEMO_QUESTION, DEMO_RULES  # noqa: E402
from rulerag.retrieval.index import build_index  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "workers-test-key-0123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_timings(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "timings"}


def test_two_workers_answer_the_same_query_identically(tmp_path):
    index = tmp_path / "demo"
    build_index(DEMO_CORPUS, index, progress=False)
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RULERAG_GENERATION__BACKEND": "fixed", "RULERAG_API_KEYS": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "rulerag.cli", "serve", "--index", str(index), "--rules", str(DEMO_RULES),
                             "--port", str(port), "--workers", "2", "--log-level", "warning"],
                            env=env, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as http:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the workers did not get ready"
                time.sleep(0.5)
            answers: dict[str, list[dict]] = {}
            for _ in range(200):  # until both workers have answered a few times (each must be ready too)
                r = http.post("/v1/ask", json={"question": DEMO_QUESTION}, headers={"Connection": "close", "X-API-Key": KEY})  # a new connection: any worker
                if r.status_code == 503:  # the other worker still loading
                    time.sleep(0.2)
                    continue
                assert r.status_code == 200, r.text
                answers.setdefault(r.headers["x-rulerag-worker"], []).append(_without_timings(r.json()))
                if len(answers) == 2 and min(map(len, answers.values())) >= 3:
                    break
            assert len(answers) == 2, f"one worker answered everything: {list(answers)}"
            bodies = [b for per in answers.values() for b in per]
            assert all(b == bodies[0] for b in bodies) and bodies[0]["rules"] and bodies[0]["documents"]
            # a live index update would reach one worker only: refused, and the index is unchanged
            r = http.post("/v1/documents", json={"documents": [{"id": "new-1", "contents": "Alice Marlow moved to Dravport."}]},
                          headers={"X-API-Key": KEY})
            assert r.status_code == 409 and r.json()["error"]["code"] == "updates_need_one_worker", r.text
            r = http.post("/v1/retrieve", json={"question": DEMO_QUESTION}, headers={"X-API-Key": KEY})
            assert r.status_code == 200 and "new-1" not in {d["id"] for d in r.json()["results"][0]["documents"]}
            # the workers are forks of one parent that loaded the index (gunicorn's arbiter), not N fresh loads
            import psutil

            workers = {int(pid) for pid in answers}
            assert all(psutil.Process(pid).ppid() == proc.pid for pid in workers), (workers, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_workers_out_of_range_are_refused():
    from rulerag.errors import ConfigError
    from server.serve import serve

    for n in (0, 65):
        with pytest.raises(ConfigError, match="1 to 64"):
            serve("indexes/does-not-matter", workers=n)
