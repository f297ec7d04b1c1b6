"""Growing and shrinking the served index over the API (server/index_api.py): documents added or
removed are found or gone at once, bad updates change nothing, updates need a key, and readers
during an update always get a whole index."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from rulerag.retrieval.index import load_index  # noqa: E402
from tests.test_server import KEY, make_app, small_index  # noqa: E402,F401

NEW = {"id": "news-1", "contents": "Zephyrine Okafor was born in Quillhaven.", "source": "wire"}
ASK = {"question": "Where was Zephyrine Okafor born?", "mode": "standard", "k": 3}


@pytest.fixture
def index(small_index, tmp_path):  # noqa: F811 - the fixture imported above
    path = tmp_path / "ix"
    shutil.copytree(small_index, path)
    return path


def test_added_documents_are_found_and_removed_ones_gone(index):
    auth = {"X-API-Key": KEY}
    with TestClient(make_app(index, keys={KEY})) as c:
        before = c.post("/v1/retrieve", json=ASK, headers=auth).json()["results"][0]["documents"]
        assert NEW["id"] not in [d["id"] for d in before]
        r = c.post("/v1/documents", json={"documents": [NEW]}, headers=auth)
        assert r.status_code == 200, r.text
        n = r.json()["num_docs"]
        assert r.json()["added"] == 1 and n == len(load_index(index).docs)
        top = c.post("/v1/retrieve", json=ASK, headers=auth).json()["results"][0]["documents"][0]
        assert top["id"] == "news-1" and top["metadata"]["source"] == "wire"
        # the same id again: refused with its name, nothing changes
        again = c.post("/v1/documents", json={"documents": [NEW]}, headers=auth)
        assert again.status_code == 422 and "'news-1'" in again.json()["error"]["message"]
        missing = c.post("/v1/documents/delete", json={"ids": ["news-1", "nope"]}, headers=auth)
        assert missing.status_code == 422 and "'nope'" in missing.json()["error"]["message"]
        assert len(load_index(index).docs) == n
        r = c.post("/v1/documents/delete", json={"ids": ["news-1"]}, headers=auth)
        assert r.status_code == 200 and r.json()["removed"] == 1 and r.json()["num_docs"] == n - 1
        after = c.post("/v1/retrieve", json=ASK, headers=auth).json()["results"][0]["documents"]
        assert "news-1" not in [d["id"] for d in after]


def test_updates_need_a_key(index):
    with TestClient(make_app(index)) as c:  # no keys: reading works, writing is off
        r = c.post("/v1/documents", json={"documents": [NEW]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "updates_need_api_key"
    with TestClient(make_app(index, keys={KEY})) as c:
        assert c.post("/v1/documents", json={"documents": [NEW]}).status_code == 401
        assert c.post("/v1/documents", json={"documents": []}, headers={"X-API-Key": KEY}).status_code == 422
    assert "news-1" not in {d.id for d in load_index(index).docs}


def test_readers_during_updates_see_a_whole_index(index):
    """Questions asked while documents are added and removed all succeed, each against the
    index before or after an update."""
    auth = {"X-API-Key": KEY}
    with TestClient(make_app(index, keys={KEY})) as c:
        def read(_):
            r = c.post("/v1/retrieve", json=ASK, headers=auth)
            assert r.status_code == 200, r.text
            return [d["id"] for d in r.json()["results"][0]["documents"]]

        def write(i):
            doc = {"id": f"news-{i}", "contents": f"Zephyrine Okafor was born in Quillhaven {i}."}
            assert c.post("/v1/documents", json={"documents": [doc]}, headers=auth).status_code == 200
            assert c.post("/v1/documents/delete", json={"ids": [doc["id"]]}, headers=auth).status_code == 200

        original = {d.id for d in load_index(index).docs}
        with ThreadPoolExecutor(4) as pool:
            writes = [pool.submit(write, i) for i in range(3)]
            reads = list(pool.map(read, range(40)))
            for w in writes:
                w.result()
        news = {f"news-{i}" for i in range(3)}
        assert all(len(ids) == 3 and set(ids) <= original | news for ids in reads)
    assert {d.id for d in load_index(index).docs} == original
