"""Compute threads of the web API: the default, and FAISS's per-thread OpenMP setting reaching the
threads that search (it is not inherited from the thread that loaded the index)."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from rulerag.demo import DEMO_CORPUS, DEMO_RULES  # noqa: E402
from rulerag.config import load_settings  # noqa: E402
from rulerag.errors import ConfigError  # noqa: E402
from rulerag.retrieval.dense import DenseIndex  # noqa: E402
from rulerag.retrieval.index import build_index  # noqa: E402
from server.app import create_app  # noqa: E402
from server.config import ServerSettings, load_server_settings  # noqa: E402
from tests.fakes import HashEncoder  # noqa: E402


def _threads_in_new_thread(fn) -> int:
    seen: list[int] = []

    def run() -> None:
        fn()
        seen.append(faiss.omp_get_max_threads())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return seen[0]


def test_dense_search_applies_its_thread_count_in_the_searching_thread():
    vecs = np.eye(8, dtype=np.float32)
    index = DenseIndex.build(vecs)
    default = _threads_in_new_thread(lambda: None)  # what a fresh thread gets
    assert _threads_in_new_thread(lambda: index.search(vecs[:2], 1)) == default  # no setting: untouched
    index.search_threads = 1
    assert _threads_in_new_thread(lambda: index.search(vecs[:2], 1)) == 1
    assert [h[0].pos for h in index.search(vecs[:3], 1)] == [0, 1, 2]


def test_compute_threads_default_and_validation(monkeypatch):
    monkeypatch.delenv("RULERAG_SERVER__COMPUTE_THREADS", raising=False)
    assert ServerSettings().compute_threads == 1
    assert load_server_settings({"compute_threads": 0}).compute_threads == 0  # 0: the libraries' defaults
    monkeypatch.setenv("RULERAG_SERVER__COMPUTE_THREADS", "2")
    assert ServerSettings().compute_threads == 2
    with pytest.raises(ConfigError, match="compute_threads"):
        load_server_settings({"compute_threads": -1})


def test_server_gives_its_thread_count_to_the_dense_index(tmp_path: Path):
    out = tmp_path / "demo-hash"
    build_index(DEMO_CORPUS, out, progress=False, encoder=HashEncoder())
    settings = load_settings(overrides={"generation": {"backend": "fixed"}})
    app = create_app(out, DEMO_RULES, settings, api_keys=set(), encoder=HashEncoder(),
                     server_settings={"load_in_background": False, "compute_threads": 1})
    with TestClient(app) as client:
        r = client.post("/v1/retrieve", json={"question": "Which country is Alice Marlow a citizen of?", "mode": "rulerag", "k": 3})
        assert r.status_code == 200, r.text
        assert len(r.json()["results"][0]["documents"]) == 3
        assert app.state.engine.rag.index.dense.search_threads == 1
    app = create_app(out, DEMO_RULES, settings, api_keys=set(), encoder=HashEncoder(),
                     server_settings={"load_in_background": False, "compute_threads": 0})
    with TestClient(app):
        assert app.state.engine.rag.index.dense.search_threads is None  # 0: FAISS keeps its default
