"""The Ray index build (`rulerag index build --engine ray`) equals the local build.

The sharding logic (byte ranges, shard parsing, global BM25 statistics, error reporting) is tested
without Ray; the end-to-end builds need Ray Data and are skipped when it is not installed
(`pip install -e '.[ray]'`).
"""

from __future__ import annotations

import importlib.util
import random
import sys

import numpy as np
import orjson
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from rulerag.cli import app
from rulerag.demo import DEMO_CORPUS
from rulerag.corpus import Document, read_corpus, write_corpus
from rulerag.errors import ConfigError, CorpusFormatError
from rulerag.retrieval.bm25 import BM25Index, BM25Stats, bm25_from_entries, document_tokens, score_entries
from rulerag.retrieval.index import build_index, load_index
from rulerag.retrieval.ray_build import _check_shards, line_ranges, parse_shard, require_ray
from tests.fakes import HashEncoder

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (the Ray build tests need it): pip install -e '.[ray]'")

QUERIES = ["Which country is Alice Marlow a citizen of?", "Karsland Rail headquartered", "Norric speaks official language",
           "Jonas Brandt married", "who visited Dravport", "Alice Marlow serves in army"]


# ------------------------------------------------------------------ sharding, without Ray


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 50, 10_000])
def test_line_ranges_tile_the_file_at_line_starts(tmp_path, shards):
    rng = random.Random(shards)
    data = b"".join(b"x" * rng.randint(0, 40) + b"\n" for _ in range(300)) + b"no final newline"
    path = tmp_path / "c.jsonl"
    path.write_bytes(data)
    ranges = line_ranges(path, shards)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a_end == b_start for (_, a_end), (b_start, _) in zip(ranges, ranges[1:]))
    assert all(s < e for s, e in ranges)
    assert all(data[s - 1 : s] == b"\n" for s, _ in ranges[1:])  # every shard starts a line
    assert len(ranges) <= shards


def test_line_ranges_of_an_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    assert line_ranges(tmp_path / "e.jsonl", 4) == []


def _parse_all(path, shards):
    ranges = line_ranges(path, shards)
    parsed = [(start, parse_shard(str(path), start, end)) for start, end in ranges]
    offsets = _check_shards(path, [(start, p[0]) for start, p in parsed])
    return parsed, offsets


@pytest.mark.parametrize("shards", [1, 4, 13])
def test_shards_parse_to_the_local_documents_and_records(shards):
    docs = read_corpus(DEMO_CORPUS)
    parsed, offsets = _parse_all(DEMO_CORPUS, shards)
    records = [r for _, (_, recs, _, _) in parsed for r in recs]
    assert records == [orjson.dumps(d.to_dict()) for d in docs]  # the bytes docs.jsonl gets, in order
    assert [t for _, (_, _, texts, _) in parsed for t in texts] == [d.contents for d in docs]
    assert list(offsets.values()) == list(np.cumsum([0] + [len(p[0].ids) for _, p in parsed])[:-1])


BAD_CORPORA = {
    "bad json": [b'{"id": "a", "contents": "x"}', b"", b'{"id": "b", "contents": "y"', b'{"id": "c", "contents": "z"}'],
    "not an object": [b'{"id": "a", "contents": "x"}', b'["b", "y"]'],
    "empty contents": [b'{"id": "a", "contents": "x"}', b'{"id": "b", "contents": "  "}'],
    "bool id": [b'{"id": true, "contents": "x"}'],
    "duplicate id across shards": [b'{"id": "%d", "contents": "doc %d"}' % (i, i) for i in range(40)] + [b'{"id": "3", "contents": "again"}'],
    "duplicate before a bad line": [b'{"id": "a", "contents": "x"}'] * 2 + [b"not json"],
    "only blank lines": [b"", b"  "],
}


@pytest.mark.parametrize("name", list(BAD_CORPORA))
@pytest.mark.parametrize("shards", [1, 5])
def test_shard_errors_are_the_local_readers_errors(tmp_path, name, shards):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(BAD_CORPORA[name]) + b"\n")
    with pytest.raises(CorpusFormatError) as local:
        read_corpus(path)
    with pytest.raises(CorpusFormatError) as sharded:
        _parse_all(path, shards)
    assert str(sharded.value) == str(local.value)  # same file:line, message and fix


def _dense_matrix(index: BM25Index, terms: list[str]) -> sp.csc_matrix:
    s = index.model.scores
    m = sp.csc_matrix((s["data"], s["indices"], s["indptr"]), shape=(s["num_docs"], len(s["indptr"]) - 1))
    out = m[:, [index.model.vocab_dict[t] for t in terms]].tocsc()
    out.sort_indices()
    return out


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_sharded_bm25_with_global_statistics_equals_bm25s(shards):
    texts = [d.contents for d in read_corpus(DEMO_CORPUS)]
    reference = BM25Index.build(texts)  # bm25s' own indexer over the whole corpus
    tokens = [document_tokens(t) for t in texts]
    bounds = np.linspace(0, len(tokens), shards + 1).astype(int)
    stats = BM25Stats.merge(BM25Stats.from_tokens(tokens[a:b]) for a, b in zip(bounds, bounds[1:]))
    assert stats == BM25Stats.from_tokens(tokens)
    vocab = stats.vocabulary()
    idf = stats.idf(vocab)
    parts = [score_entries(tokens[a:b], vocab, idf, stats.avg_length, first_doc=int(a)) for a, b in zip(bounds, bounds[1:])]
    sharded = bm25_from_entries(parts, vocab, len(tokens))
    assert set(sharded.model.vocab_dict) == set(reference.model.vocab_dict)
    a, b = _dense_matrix(reference, sorted(vocab)), _dense_matrix(sharded, sorted(vocab))
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)  # bit-identical float32 scores
    for q in QUERIES:
        assert sharded.search([q], depth=20) == reference.search([q], depth=20)


def test_require_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"\.\[ray\]"):
        require_ray()


def test_local_engine_refuses_ray_options(tmp_path):
    res = CliRunner().invoke(app, ["index", "build", "--corpus", str(DEMO_CORPUS), "--out", str(tmp_path / "i"), "--num-cpus", "2"])
    assert res.exit_code != 0
    assert "--engine ray" in str(res.exception)
    assert not (tmp_path / "i").exists()


# ------------------------------------------------------------------ end to end, on Ray


@pytest.fixture(scope="module")
def ray_session():
    if not HAS_RAY:
        pytest.skip("Ray is not installed: pip install -e '.[ray]'")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def builds(ray_session, tmp_path_factory):
    from rulerag.retrieval.ray_build import build_index_ray

    root = tmp_path_factory.mktemp("ray-build")
    local = build_index(DEMO_CORPUS, root / "local", encoder=HashEncoder(), progress=False)
    distributed = build_index_ray(DEMO_CORPUS, root / "ray", encoder=HashEncoder(), progress=False, shards=5, workers=2)
    return root, local, distributed


@needs_ray
def test_ray_build_writes_the_local_index(builds):
    root, local, distributed = builds
    assert distributed.files == local.files  # docs.jsonl, every BM25 file and the FAISS file: same bytes
    assert set(distributed.model_dump()) == set(local.model_dump())  # same manifest schema
    for key in ("format_version", "embedding_model", "embedding_dim", "faiss_type", "num_docs", "corpus_sha256", "settings"):
        assert getattr(distributed, key) == getattr(local, key)
    assert {"read", "embedding", "bm25", "faiss", "writing"} <= set(distributed.timings)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary directory left behind


@needs_ray
def test_ray_index_loads_and_searches_like_the_local_one(builds):
    root, _, _ = builds
    a, b = load_index(root / "local"), load_index(root / "ray")
    assert [d.to_dict() for d in a.docs] == [d.to_dict() for d in b.docs]
    for q in QUERIES:
        assert a.bm25.search([q], depth=10) == b.bm25.search([q], depth=10)  # same documents, same scores
    va, vb = (x.dense.cpu_index.reconstruct_n(0, x.dense.size) for x in (a, b))
    np.testing.assert_allclose(va, vb, atol=1e-6)


@needs_ray
@pytest.mark.integration
@pytest.mark.slow
def test_ray_build_with_the_packaged_encoder_matches_within_float_tolerance(ray_session, tmp_path):
    from rulerag.retrieval.ray_build import build_index_ray

    local = build_index(DEMO_CORPUS, tmp_path / "local", progress=False)
    distributed = build_index_ray(DEMO_CORPUS, tmp_path / "ray", progress=False, shards=3, workers=2)
    assert distributed.embedding_model == local.embedding_model == "all-MiniLM-L6-v2"
    same = {k for k in local.files if k != "dense.faiss"}
    assert {k: distributed.files[k] for k in same} == {k: local.files[k] for k in same}
    a, b = load_index(tmp_path / "local"), load_index(tmp_path / "ray")
    va, vb = (x.dense.cpu_index.reconstruct_n(0, x.dense.size) for x in (a, b))
    np.testing.assert_allclose(va, vb, atol=1e-5)  # other batch compositions: float noise only
    queries = a.encoder().encode(QUERIES)
    for ha, hb in zip(a.dense.search(queries, 5), b.dense.search(queries, 5)):
        assert [h.pos for h in ha] == [h.pos for h in hb]


@needs_ray
def test_ray_build_reports_corpus_errors_like_the_local_build(ray_session, tmp_path):
    from rulerag.retrieval.ray_build import build_index_ray

    docs = [Document(f"d{i}", f"fact number {i}.") for i in range(60)] + [Document("d7", "a duplicate id")]
    path = tmp_path / "dup.jsonl"
    write_corpus(docs[:-1], path)
    with open(path, "ab") as fh:
        fh.write(orjson.dumps(docs[-1].to_dict()) + b"\n")
    with pytest.raises(CorpusFormatError) as local:
        build_index(path, tmp_path / "local", encoder=HashEncoder(), progress=False)
    with pytest.raises(CorpusFormatError) as distributed:
        build_index_ray(path, tmp_path / "ray", encoder=HashEncoder(), progress=False, shards=4)
    assert str(distributed.value) == str(local.value)
    assert ":61" in str(distributed.value)
    assert not (tmp_path / "ray").exists()


@needs_ray
def test_cli_ray_engine_bm25_only_equals_local(ray_session, tmp_path):
    runner = CliRunner()
    common = ["index", "build", "--corpus", str(DEMO_CORPUS), "--no-dense", "--quiet"]
    assert runner.invoke(app, [*common, "--out", str(tmp_path / "local")]).exit_code == 0
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "ray"), "--engine", "ray", "--ray-workers", "2"])
    assert res.exit_code == 0, res.output
    a, b = load_index(tmp_path / "local"), load_index(tmp_path / "ray")
    assert a.manifest.files == b.manifest.files and b.dense is None
    assert "bm25_shards" in b.manifest.timings
