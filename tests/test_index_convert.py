"""`rulerag index convert`: a new FAISS type from the vectors an index already stores (no
re-embedding); documents, BM25 files and the encoder record carried over unchanged; lossy and
BM25-only sources, and outputs that would clobber the source, refused with the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import pytest
from typer.testing import CliRunner

from rulerag.cli import app
from rulerag.demo import DEMO_CORPUS
from rulerag.config import IndexSettings, Settings, load_settings
from rulerag.corpus import file_sha256
from rulerag.errors import ConfigError, IndexLoadError
from rulerag.retrieval.dense import DenseIndex
from rulerag.retrieval.index import BM25_DIR, DENSE, DOCS, MANIFEST, build_index, convert_index, load_index, read_manifest
from tests.fakes import HashEncoder
from tests.test_finetune_retriever import build_tiny_encoder

QUERIES = ["Which country is Alice Marlow a citizen of?", "Who founded the company?", "Where was Bruno born?",
           "army of Norland", "capital city located in"]


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """Tiny indexes: one OpenMP thread is faster on shared cores, and makes IVF training repeatable."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _settings(model: Path, **index) -> Settings:
    return load_settings(overrides={"embedding": {"model": str(model), "backend": "torch"}, "index": index})


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    """A tiny random-weight sentence-transformers model: a real encoder record with a fingerprint."""
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


@pytest.fixture(scope="module")
def flat(tmp_path_factory, encoder_dir) -> Path:
    """The demo corpus (350 documents) in a flat index, embedded with the tiny encoder."""
    out = tmp_path_factory.mktemp("src") / "flat"
    build_index(DEMO_CORPUS, out, _settings(encoder_dir), progress=False)
    return out


def _convert(src: Path, out: Path, encoder_dir: Path, **index):
    return convert_index(src, out, _settings(encoder_dir, **index), progress=False)


def _leftovers(out: Path) -> list[str]:
    """Temporary or displaced siblings of ``out`` (what an interrupted atomic write leaves)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _top(index_dir: Path, k: int = 5, **index) -> list[list[str]]:
    loaded = load_index(index_dir, index_settings=IndexSettings(gpu="never", **index))
    vectors = loaded.encoder(Settings(embedding={"backend": "torch"})).encode(QUERIES)
    return [[loaded.docs[h.pos].id for h in hits] for hits in loaded.dense.search(vectors, depth=k)]


def test_flat_to_hnsw_keeps_documents_bm25_encoder_and_top_k(flat, encoder_dir, tmp_path):
    out = tmp_path / "hnsw"
    manifest = _convert(flat, out, encoder_dir, faiss_type="hnsw", hnsw_m=16)
    source = read_manifest(flat)

    # HNSW searched widely on 350 documents is exact: the same top 5 as the flat source
    assert _top(out, hnsw_ef_search=512) == _top(flat)
    assert load_index(out).dense.params()["type"] == "hnsw" and load_index(out).dense.params()["hnsw_m"] == 16

    # documents and BM25 byte-identical, and the manifest's checksums are those of the written files
    reused = [DOCS] + [rel for rel in source.files if rel.startswith(f"{BM25_DIR}/")]
    assert len(reused) > 2
    for rel in reused:
        assert (out / rel).read_bytes() == (flat / rel).read_bytes(), rel
        assert manifest.files[rel] == source.files[rel] == file_sha256(out / rel)
    assert manifest.files[DENSE] == file_sha256(out / DENSE) != source.files[DENSE]
    assert sorted(manifest.files) == sorted(source.files)

    # same encoder record (fingerprint included), corpus and embedding settings; new index settings
    assert source.encoder and source.encoder.get("fingerprint")
    assert manifest.encoder == source.encoder
    assert (manifest.embedding_model, manifest.embedding_dim, manifest.num_docs) == (source.embedding_model, source.embedding_dim, 350)
    assert (manifest.corpus_path, manifest.corpus_sha256) == (source.corpus_path, source.corpus_sha256)
    assert manifest.settings["embedding"] == source.settings["embedding"]
    assert manifest.settings["index"]["faiss_type"] == "hnsw" and manifest.settings["index"]["hnsw_m"] == 16
    assert manifest.faiss_type == "hnsw" and set(manifest.timings) == {"read", "faiss", "writing"}
    assert manifest.converted_from == {"path": str(flat), "faiss_type": "flat", "built_at": source.built_at, "dense_sha256": source.files[DENSE]}
    assert read_manifest(out) == manifest and source.converted_from is None
    assert _leftovers(out) == []


@pytest.mark.parametrize("index", [{"faiss_type": "hnsw"}, {"faiss_type": "ivf", "ivf_nlist": 4},
                                   {"faiss_type": "ivfpq", "ivf_nlist": 4, "ivfpq_nbits": 6, "ivfpq_refine": 2}])
def test_round_trip_gives_back_the_identical_flat_index(flat, encoder_dir, tmp_path, index):
    """Every type but plain IVF-PQ stores the vectors exactly: back to flat is the source's file."""
    _convert(flat, tmp_path / "mid", encoder_dir, **index)
    back = _convert(tmp_path / "mid", tmp_path / "back", encoder_dir, faiss_type="flat")
    assert (tmp_path / "back" / DENSE).read_bytes() == (flat / DENSE).read_bytes()
    assert back.converted_from["faiss_type"] == index["faiss_type"] and back.encoder == read_manifest(flat).encoder


def test_conversion_equals_a_build_from_the_corpus(flat, encoder_dir, tmp_path):
    settings = _settings(encoder_dir, faiss_type="ivf", ivf_nlist=4)
    build_index(DEMO_CORPUS, tmp_path / "built", settings, progress=False)
    convert_index(flat, tmp_path / "converted", settings, progress=False)
    assert (tmp_path / "converted" / DENSE).read_bytes() == (tmp_path / "built" / DENSE).read_bytes()


def test_lossy_ivfpq_source_is_refused(flat, encoder_dir, tmp_path):
    ivfpq = tmp_path / "ivfpq"
    _convert(flat, ivfpq, encoder_dir, faiss_type="ivfpq", ivf_nlist=4, ivfpq_nbits=6)
    message = (r"is an IVF-PQ index without exact re-ranking \(index.ivfpq_refine=0\): it stores only lossy compressed codes.*"
               r"Fix: rebuild from the corpus with `rulerag index build --corpus .*corpus.jsonl --out .*back --faiss-type flat`")
    with pytest.raises(IndexLoadError, match=message):
        _convert(ivfpq, tmp_path / "back", encoder_dir, faiss_type="flat")
    assert not (tmp_path / "back").exists() and _leftovers(tmp_path / "back") == []

    # a manifest that claims re-ranking does not fool it: the FAISS file itself is checked
    manifest = json.loads((ivfpq / MANIFEST).read_text())
    manifest["settings"]["index"]["ivfpq_refine"] = 2
    (ivfpq / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match=message):
        _convert(ivfpq, tmp_path / "back", encoder_dir, faiss_type="flat")
    assert not (tmp_path / "back").exists() and _leftovers(tmp_path / "back") == []


def test_bm25_only_source_is_refused(tmp_path):
    build_index(DEMO_CORPUS, tmp_path / "bm25", progress=False, encoder=HashEncoder(), dense=False)
    with pytest.raises(IndexLoadError, match=r"is a BM25-only index \(built with --no-dense\): it has no vectors to convert\. "
                                             r"Fix: build a dense index from the corpus with `rulerag index build --corpus .* --faiss-type hnsw`"):
        convert_index(tmp_path / "bm25", tmp_path / "out", Settings(index={"faiss_type": "hnsw"}), progress=False)
    assert not (tmp_path / "out").exists()


def test_out_may_not_be_the_source_or_nest_with_it(flat, encoder_dir, tmp_path):
    before = {rel: file_sha256(flat / rel) for rel in read_manifest(flat).files}
    with pytest.raises(ConfigError, match=r"is the source index itself.*Fix: write to another directory, e.g. --out .*flat-hnsw"):
        _convert(flat, flat, encoder_dir, faiss_type="hnsw")
    with pytest.raises(ConfigError, match=r"is the source index itself"):
        convert_index(flat, flat / ".." / flat.name, _settings(encoder_dir), overwrite=True, progress=False)
    with pytest.raises(ConfigError, match=r"lies inside the source index"):
        _convert(flat, flat / "hnsw", encoder_dir, faiss_type="hnsw")
    with pytest.raises(ConfigError, match=r"contains the source index"):  # --overwrite would have deleted the source
        convert_index(flat, flat.parent, _settings(encoder_dir, faiss_type="hnsw"), overwrite=True, progress=False)
    assert {rel: file_sha256(flat / rel) for rel in read_manifest(flat).files} == before
    assert not (flat / "hnsw").exists() and _leftovers(flat) == []


def test_existing_out_needs_overwrite_and_failures_leave_nothing(flat, encoder_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists. Fix: choose another --out or pass --overwrite"):
        _convert(flat, out, encoder_dir, faiss_type="hnsw")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and _leftovers(out) == []

    def broken_save(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(DenseIndex, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert_index(flat, tmp_path / "new", _settings(encoder_dir, faiss_type="hnsw"), progress=False)
    with pytest.raises(OSError, match="disk full"):
        convert_index(flat, out, _settings(encoder_dir, faiss_type="hnsw"), overwrite=True, progress=False)
    assert not (tmp_path / "new").exists() and _leftovers(tmp_path / "new") == []
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and _leftovers(out) == []
    monkeypatch.undo()

    manifest = convert_index(flat, out, _settings(encoder_dir, faiss_type="hnsw"), overwrite=True, progress=False)
    assert manifest.faiss_type == "hnsw" and not (out / "keep.txt").exists() and _leftovers(out) == []
    load_index(out)  # checksums and encoder fingerprint verified


def test_corrupt_source_is_refused_and_documents_are_never_parsed(flat, encoder_dir, tmp_path, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(flat, src)
    with open(src / DOCS, "ab") as fh:
        fh.write(b"\n")
    with pytest.raises(IndexLoadError, match=r"docs.jsonl does not match its checksum .* Fix: rebuild"):
        _convert(src, tmp_path / "out", encoder_dir, faiss_type="hnsw")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path / "out") == []

    import rulerag.retrieval.index as index_module

    def no_parsing(*args, **kwargs):
        raise AssertionError("convert parsed the documents or loaded BM25")

    monkeypatch.setattr(index_module.orjson, "loads", no_parsing)
    monkeypatch.setattr(index_module.BM25Index, "load", no_parsing)
    manifest = _convert(flat, tmp_path / "out", encoder_dir, faiss_type="hnsw")
    monkeypatch.undo()
    assert manifest.num_docs == read_manifest(flat).num_docs
    assert len(load_index(tmp_path / "out").docs) == manifest.num_docs


def test_cli_convert(flat, tmp_path):
    out = tmp_path / "ivf"
    res = CliRunner().invoke(app, ["index", "convert", "--index", str(flat), "--out", str(out), "--faiss-type", "ivf", "--ivf-nlist", "4", "-q"])
    assert res.exit_code == 0, res.output
    assert f"converted {flat} (flat) -> {out}: 350 documents, ivf," in " ".join(res.output.split())
    manifest = read_manifest(out)
    assert manifest.faiss_type == "ivf" and manifest.settings["index"]["ivf_nlist"] == 4
    assert load_index(out).dense.params()["nlist"] == 4

    info = CliRunner().invoke(app, ["index", "info", str(out), "--json"])
    assert json.loads(info.stdout)["converted_from"]["faiss_type"] == "flat"

    again = CliRunner().invoke(app, ["index", "convert", "--index", str(flat), "--out", str(out), "-q"])
    assert isinstance(again.exception, FileExistsError)
    same = CliRunner().invoke(app, ["index", "convert", "--index", str(flat), "--out", str(flat), "--faiss-type", "hnsw"])
    assert isinstance(same.exception, ConfigError) and "is the source index itself" in str(same.exception)

    shutil.rmtree(out)
    help_text = CliRunner().invoke(app, ["index", "convert", "--help"]).output
    assert "without re-embedding" in help_text and "--hnsw-m" in help_text and "--ivfpq-refine" in help_text


def test_cli_build_shares_the_faiss_options(encoder_dir, tmp_path):
    out = tmp_path / "hnsw"
    res = CliRunner().invoke(app, ["index", "build", "--corpus", str(DEMO_CORPUS), "--out", str(out), "--embedding-model", str(encoder_dir),
                                   "--faiss-type", "hnsw", "--hnsw-m", "8", "-q"], env={"RULERAG_EMBEDDING__BACKEND": "torch"})
    assert res.exit_code == 0, res.output
    assert read_manifest(out).settings["index"]["hnsw_m"] == 8 and load_index(out).dense.params()["hnsw_m"] == 8
