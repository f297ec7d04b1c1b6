"""benchmarks/index_scale.py --vectors-from-index: the embed step fills its chunks with the vectors
a flat index of the same corpus stores (exactly), and refuses an index whose vectors are not the
corpus's (other documents, a lossy type, another model, no dense part) with the fix.

Uses the packaged embedding model (the embed step calibrates and encodes the queries with it)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from rulerag.demo import DEMO_CORPUS, DEMO_RULES
from rulerag.config import load_settings
from rulerag.retrieval.index import build_index, convert_index, load_index, read_manifest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "index_scale.py"
N_DOCS = 30
QUESTIONS = [
    {"id": "q1", "question": "Which country is Alice Marlow a citizen of?", "relation": "citizen_of"},
    {"id": "q2", "question": "Where is Karsland Rail headquartered?"},
]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("index_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench(root: Path, lines: list[bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    (root / "questions.jsonl").write_bytes(b"".join(orjson.dumps(q) + b"\n" for q in QUESTIONS))
    shutil.copy(DEMO_RULES, root / "rules.jsonl")
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """The first demo documents as a benchmark directory, with their flat index in ``index/``."""
    root = _bench(tmp_path_factory.mktemp("scale") / "bench", DEMO_CORPUS.read_bytes().splitlines()[:N_DOCS])
    build_index(root / "corpus.jsonl", root / "index", progress=False)
    return root


def _embed(scale, monkeypatch, capsys, bench: Path, work: Path, n: int, index: Path | None) -> dict:
    argv = ["index_scale.py", "_embed", "--bench", str(bench), "--work", str(work), "--n", str(n), "--chunk-docs", "10",
            "--questions", "2", "--calibrate-docs", "4", "--batch-size", "8"]
    monkeypatch.setattr(sys, "argv", argv + (["--vectors-from-index", str(index)] if index else []))
    scale.main()
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_embed_copies_the_flat_index_vectors(scale, bench, tmp_path, monkeypatch, capsys):
    index_dir = bench / "index"
    stored = load_index(index_dir).dense.stored_vectors()
    manifest = read_manifest(index_dir)
    source = f"index:{index_dir.resolve()}"
    work = tmp_path / "work"
    chunks = work / "emb" / "all-MiniLM-L6-v2"

    first = _embed(scale, monkeypatch, capsys, bench, work, 10, None)  # one chunk encoded here: kept below
    assert first["embedded_now"] == 10 and first["sources"] == {"encoded": 10}
    out = _embed(scale, monkeypatch, capsys, bench, work, 25, index_dir)
    assert (out["embedded_now"], out["copied_now"]) == (0, 15)
    assert out["sources"] == {"encoded": 10, source: 15}
    assert json.loads((chunks / "chunk-000000000-10.json").read_text())["source"] == "encoded"
    for start, size in ((10, 10), (20, 5)):  # the last chunk is a partial one
        stem = chunks / f"chunk-{start:09d}-{size}"
        assert np.array_equal(np.load(stem.with_suffix(".npy")), stored[start : start + size])
        meta = json.loads(stem.with_suffix(".json").read_text())
        assert meta["source"] == source and meta["cpu_seconds"] is None
        assert meta["seconds"] == pytest.approx(manifest.timings["embedding"] * size / manifest.num_docs)
    assert np.array_equal(np.load(work / "vectors-25.npy")[10:], stored[10:25])
    assert out["chunks_cpu_s"] is None and out["calibration"]["docs"] == 4  # calibration still encodes

    again = _embed(scale, monkeypatch, capsys, bench, work, 25, index_dir)  # everything cached: nothing copied
    assert (again["embedded_now"], again["copied_now"], again["sources"]) == (0, 0, out["sources"])


def test_embed_compares_texts_when_the_corpus_file_differs(scale, bench, tmp_path, monkeypatch, capsys):
    """The same documents in another file (extra field): the checksum differs, the texts match."""
    lines = [orjson.dumps({**orjson.loads(line), "extra": 1}) for line in (bench / "corpus.jsonl").read_bytes().splitlines()]
    other = _bench(tmp_path / "other", lines)
    out = _embed(scale, monkeypatch, capsys, other, tmp_path / "work", 12, bench / "index")
    assert out["copied_now"] == 12
    stored = load_index(bench / "index").dense.stored_vectors()
    assert np.array_equal(np.load(tmp_path / "work" / "vectors-12.npy"), stored[:12])


def _changed_text(bench: Path, tmp: Path) -> tuple[Path, Path]:
    lines = (bench / "corpus.jsonl").read_bytes().splitlines()
    doc = orjson.loads(lines[7])
    lines[7] = orjson.dumps({**doc, "contents": doc["contents"] + " Changed."})
    return _bench(tmp / "changed", lines), bench / "index"


def _hnsw(bench: Path, tmp: Path) -> tuple[Path, Path]:
    convert_index(bench / "index", tmp / "hnsw", load_settings(overrides={"index": {"faiss_type": "hnsw"}}), progress=False)
    return bench, tmp / "hnsw"


def _other_model(bench: Path, tmp: Path) -> tuple[Path, Path]:
    shutil.copytree(bench / "index", tmp / "other-model")
    manifest = json.loads((tmp / "other-model" / "manifest.json").read_text())
    (tmp / "other-model" / "manifest.json").write_text(json.dumps({**manifest, "embedding_model": "other-model"}))
    return bench, tmp / "other-model"


def _bm25_only(bench: Path, tmp: Path) -> tuple[Path, Path]:
    build_index(bench / "corpus.jsonl", tmp / "bm25", progress=False, dense=False)
    return bench, tmp / "bm25"


def _corrupt_dense(bench: Path, tmp: Path) -> tuple[Path, Path]:
    shutil.copytree(bench / "index", tmp / "corrupt")
    dense = tmp / "corrupt" / "dense.faiss"
    dense.write_bytes(dense.read_bytes()[: dense.stat().st_size // 2])  # a partial copy
    return bench, tmp / "corrupt"


@pytest.mark.parametrize(("make", "expected"), [
    (_changed_text, ["documents are not the corpus's", "document 7", "line 8"]),
    (_hnsw, ["a hnsw index", "only a flat index", "rulerag index convert"]),
    (_other_model, ["'other-model'", "'all-MiniLM-L6-v2'"]),
    (_bm25_only, ["BM25-only"]),
    (_corrupt_dense, ["dense.faiss does not match its checksum", "rebuild the index"]),
])
def test_embed_refuses_vectors_that_are_not_the_corpus(scale, bench, tmp_path, monkeypatch, capsys, make, expected):
    corpus_dir, index_dir = make(bench, tmp_path)
    with pytest.raises(SystemExit) as exc:
        _embed(scale, monkeypatch, capsys, corpus_dir, tmp_path / "work", 20, index_dir)
    message = str(exc.value.code)
    assert all(part in message for part in [f"--vectors-from-index {index_dir}", "Fix:", *expected]), message
    assert not list((tmp_path / "work" / "emb").rglob("*.npy"))  # nothing written


def test_help_describes_the_option(scale, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["index_scale.py", "--help"])
    with pytest.raises(SystemExit):
        scale.main()
    assert "--vectors-from-index DIR" in capsys.readouterr().out
