"""Indexes that grow and shrink (rulerag.retrieval.update, `rulerag index add` / `remove`):
equal to a fresh build on the same documents, refused bad updates that change nothing, and a
kill at any moment that leaves the old index loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from rulerag.config import IndexSettings, Settings
from rulerag.corpus import Document, read_corpus
from rulerag.demo import DEMO_CORPUS
from rulerag.errors import ConfigError, IndexLoadError
from rulerag.retrieval.index import MANIFEST, build_index, load_index
from rulerag.retrieval.update import update_index
from tests.fakes import HashEncoder

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["Which country is Alice Marlow a citizen of?", "Where was Bruno Keller born?", "Tarvik located in",
           "Karsland Steel founded by", "language spoken in Norland", "Dravport"]


def write_corpus(path: Path, docs: list[Document]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d.to_dict()) + b"\n" for d in docs))
    return path


def top10(path: Path, scores: bool = False) -> tuple[list[list], list[list]]:
    """Top-10 document ids (or scores) per query by BM25 and by the dense index."""
    index = load_index(path)
    ids = [d.id for d in index.docs]
    pick = (lambda h: round(h.score, 5)) if scores else (lambda h: ids[h.pos])
    bm25 = [[pick(h) for h in hits] for hits in index.bm25.search(QUERIES, 10)]
    dense = [[pick(h) for h in hits] for hits in index.dense.search(HashEncoder().encode(QUERIES), 10)]
    return bm25, dense


def assert_same_retrieval(a: Path, b: Path, faiss_type: str) -> None:
    """BM25 and flat FAISS: the same top 10; HNSW (approximate, its graph depends on the order of
    insertion): the same BM25 top 10 and nearly the same dense one."""
    (bm25_a, dense_a), (bm25_b, dense_b) = top10(a), top10(b)
    assert bm25_a == bm25_b
    if faiss_type == "flat":
        assert dense_a == dense_b
    else:  # the hashing encoder makes many exact ties, so compare what was found by its scores
        found_a, found_b = top10(a, scores=True)[1], top10(b, scores=True)[1]
        close = sum(abs(x - y) < 1e-4 for xs, ys in zip(found_a, found_b) for x, y in zip(xs, ys)) / (10 * len(QUERIES))
        assert close >= 0.9, (close, found_a, found_b)


def build(corpus: Path, out: Path, faiss_type: str = "flat") -> Path:
    build_index(corpus, out, Settings(index=IndexSettings(faiss_type=faiss_type)), encoder=HashEncoder(), progress=False)
    return out


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return read_corpus(DEMO_CORPUS)


@pytest.mark.parametrize("faiss_type", ["flat", "hnsw"])
def test_add_then_remove_equals_a_fresh_build(docs, tmp_path, faiss_type):
    base, extra = docs[:300], docs[300:]
    grown = build(write_corpus(tmp_path / "base.jsonl", base), tmp_path / "grown", faiss_type)
    encoder = HashEncoder()
    manifest = update_index(grown, add=extra, encoder=encoder)
    assert encoder.calls == [[d.contents for d in extra]]  # only the new documents are embedded
    fresh = build(write_corpus(tmp_path / "all.jsonl", base + extra), tmp_path / "fresh", faiss_type)
    assert manifest.num_docs == len(docs) and manifest.faiss_type == faiss_type
    assert (fresh / "docs.jsonl").read_bytes() == (grown / "docs.jsonl").read_bytes()
    assert_same_retrieval(grown, fresh, faiss_type)
    assert manifest.updates[-1]["added"] == len(extra) and "embedding" in manifest.updates[-1]["timings"]

    gone = {d.id for d in docs[10:60]}
    update_index(grown, remove=gone)
    kept = [d for d in docs if d.id not in gone]
    fresh2 = build(write_corpus(tmp_path / "kept.jsonl", kept), tmp_path / "fresh2", faiss_type)
    assert [d.id for d in load_index(grown).docs] == [d.id for d in kept]
    assert_same_retrieval(grown, fresh2, faiss_type)
    assert [u["removed"] for u in load_index(grown).manifest.updates] == [0, 50]


def test_bad_updates_are_refused_and_change_nothing(docs, tmp_path):
    path = build(write_corpus(tmp_path / "base.jsonl", docs[:20]), tmp_path / "ix")
    before = (path / MANIFEST).read_bytes()
    cases = [
        ({"add": [docs[3]]}, "already in"),                                       # an id the index holds
        ({"add": [docs[30], Document(docs[30].id, "again")]}, "more than once"),  # an id given twice
        ({"remove": {"no-such-id", docs[0].id}}, "'no-such-id'"),                 # an id it does not hold
        ({"remove": {d.id for d in docs[:20]}}, "no documents"),                  # everything
        ({}, "nothing to add or remove"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            update_index(path, encoder=HashEncoder(), **kwargs)
    assert (path / MANIFEST).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ix.update.lock", "base.jsonl", "ix"]  # no leftovers


def test_lossy_ivfpq_cannot_remove_but_can_add(docs, tmp_path):
    settings = Settings(index=IndexSettings(faiss_type="ivfpq", ivf_nlist=4, ivfpq_m=8, ivfpq_nbits=4, ivfpq_refine=0))
    path = tmp_path / "ix"
    build_index(write_corpus(tmp_path / "c.jsonl", docs[:300]), path, settings, encoder=HashEncoder(), progress=False)
    with pytest.raises(IndexLoadError, match="--ivfpq-refine"):
        update_index(path, remove={docs[0].id})
    assert update_index(path, add=docs[300:], encoder=HashEncoder()).num_docs == len(docs)
    assert load_index(path).dense.size == len(docs)


KILLED = """
import sys
from rulerag.corpus import read_corpus
from rulerag.retrieval.update import update_index
from tests.fakes import HashEncoder
print("start", flush=True)
update_index(sys.argv[1], add=read_corpus(sys.argv[2]), encoder=HashEncoder())
"""


def test_a_kill_mid_update_leaves_the_old_index_whole(docs, tmp_path):
    """SIGKILL the updating process at different moments: the index always loads (checksums
    verified) and holds either the old or the new documents, never a mix."""
    many = [Document(f"x{i}-{d.id}", f"{d.contents} copy {i}") for i in range(60) for d in docs]  # 21,000 documents
    path = build(write_corpus(tmp_path / "base.jsonl", many[:20_000]), tmp_path / "ix")
    new = write_corpus(tmp_path / "new.jsonl", many[20_000:])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    added = {d.id for d in many[20_000:]}
    seen = set()
    for delay in (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0):
        proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path), str(new)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"start"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        index = load_index(path)  # verify=True: every checksum
        n = len(index.docs)
        assert n in (20_000, 21_000) and index.dense.size == n
        assert ({d.id for d in index.docs[20_000:]} == added) if n == 21_000 else not added & {d.id for d in index.docs}
        seen.add(n)
        if n == 21_000:  # finished before the kill: back to the old documents for the next round
            update_index(path, remove=added)
    assert 20_000 in seen, "never killed mid-update"


def test_cli_add_and_remove(docs, tmp_path, monkeypatch):
    import rulerag.retrieval.update as update
    from rulerag.cli import app

    path = build(write_corpus(tmp_path / "base.jsonl", docs[:20]), tmp_path / "ix")
    write_corpus(tmp_path / "new.jsonl", docs[20:25])
    runner = CliRunner()
    original = update.update_index
    monkeypatch.setattr(update, "update_index", lambda *a, **k: original(*a, **{**k, "encoder": HashEncoder()}))
    r = runner.invoke(app, ["index", "add", "--index", str(path), "--corpus", str(tmp_path / "new.jsonl"), "-q"])
    assert r.exit_code == 0, r.output
    assert "+5 -0 documents, 25 now" in r.output
    (tmp_path / "ids.txt").write_text(f"# old ones\n{docs[0].id}\n\n{docs[1].id}\n", encoding="utf-8")
    r = runner.invoke(app, ["index", "remove", "--index", str(path), "--ids", str(tmp_path / "ids.txt")])
    assert r.exit_code == 0 and "+0 -2 documents, 23 now" in r.output, r.output
    r = runner.invoke(app, ["index", "remove", "--index", str(path), "--ids", str(tmp_path / "ids.txt")])
    assert isinstance(r.exception, ConfigError) and "not in" in str(r.exception) and docs[0].id in str(r.exception)
    r = runner.invoke(app, ["index", "remove", "--index", str(path), "--ids", str(tmp_path / "none.txt")])
    assert isinstance(r.exception, ConfigError) and "no such file" in str(r.exception)
    assert len(load_index(path).docs) == 23
