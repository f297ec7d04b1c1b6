"""The ONNX Runtime backend of the encoder (``embedding.backend``): same vectors as torch, the
auto choice and its fall-back, clear errors, and the export cache (atomic, re-exported once when
corrupt).

The fast tests use a tiny random-weight BERT (``build_tiny_encoder``: MiniLM's tokenizer, mean
pooling, normalisation) and a per-test cache directory (``$RULERAG_CACHE_DIR``; ``$RULERAG_ONNX_CACHE_DIR`` overrides it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rulerag.config import EmbeddingBackend, EmbeddingSettings, load_settings
from rulerag.embedding import Encoder, _OnnxEncoder, onnx_cache_dir
from rulerag.errors import ConfigError
from tests.test_finetune_retriever import build_tiny_encoder

MIXED = ["Which country is Alice Marlow a citizen of?", "born in", "", "Alice Marlow was born in Tarvik, a town in Norland, "
         "and later moved to Dravport where she worked as a teacher for many years.", "Norland", "word " * 80]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("onnx-enc") / "tiny")


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RULERAG_CACHE_DIR", str(root))
    monkeypatch.delenv("RULERAG_ONNX_CACHE_DIR", raising=False)  # conftest points it at a per-run directory
    return root


@pytest.fixture(scope="module")
def cls_pooling(tmp_path_factory, tiny) -> Path:
    """The tiny model with CLS pooling: a pipeline the ONNX backend does not reproduce."""
    out = tmp_path_factory.mktemp("onnx-cls") / "tiny-cls"
    shutil.copytree(tiny, out)
    config = out / "1_Pooling" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "pooling_mode": "cls"}))
    return out


def _fresh(model: Path, backend: str, **kw) -> Encoder:
    """An encoder whose backend decision is not shared with earlier tests (decisions are cached per
    loaded model, and ``_load`` shares loaded models)."""
    from rulerag.embedding import _load

    _load.cache_clear()
    return Encoder(str(model), backend=backend, pack=False, **kw)


def test_setting_defaults_to_auto_and_reads_the_environment(monkeypatch):
    assert EmbeddingSettings().backend is EmbeddingBackend.auto
    monkeypatch.setenv("RULERAG_EMBEDDING__BACKEND", "onnx")
    assert load_settings().embedding.backend is EmbeddingBackend.onnx
    with pytest.raises(ConfigError):
        Encoder(backend="tensorrt")


def test_onnx_vectors_equal_torch(tiny, cache):
    onnx, torch_ = _fresh(tiny, "onnx"), Encoder(str(tiny), backend="torch", pack=False)
    a, b = onnx.encode(MIXED), torch_.encode(MIXED)
    assert onnx.active_backend == "onnx" and torch_.active_backend == "torch"
    assert a.dtype == np.float32 and a.flags.c_contiguous and a.shape == b.shape == (len(MIXED), 32)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(onnx.encode(MIXED[:1]), b[:1], rtol=0, atol=1e-5)  # a single text
    empty = onnx.encode([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32
    # a large input: sorted by length within chunks, over several batches and chunks, order restored
    many = [MIXED[i % len(MIXED)] + f" {i}" * (i % 7) for i in range(70)]
    small_batches = Encoder(str(tiny), backend="onnx", batch_size=4)
    np.testing.assert_allclose(small_batches.encode(many, progress=True), torch_.encode(many), rtol=0, atol=1e-5)


def test_auto_picks_onnx_and_the_export_is_atomic(tiny, cache):
    enc = _fresh(tiny, "auto")
    assert enc.active_backend == "onnx"
    directory = onnx_cache_dir(tiny, str(tiny))
    assert directory.parent == cache / "onnx"
    files = sorted(p.name for p in directory.iterdir())
    assert files == sorted([_OnnxEncoder.MARKER, _OnnxEncoder.MODEL_FILE])  # no temporary file left
    marker = json.loads((directory / _OnnxEncoder.MARKER).read_text())
    assert marker["source"] == str(tiny.resolve()) and marker["inputs"][:2] == ["input_ids", "attention_mask"]
    # the cache survives: another process (a fresh load) reuses the file without exporting
    mtime = (directory / _OnnxEncoder.MODEL_FILE).stat().st_mtime_ns
    assert _fresh(tiny, "auto").active_backend == "onnx"
    assert (directory / _OnnxEncoder.MODEL_FILE).stat().st_mtime_ns == mtime


def test_concurrent_first_uses_export_once(tiny, cache, monkeypatch):
    """Two models loaded separately (as in two processes) start together: one export, both use it."""
    import threading

    from rulerag.embedding import _load

    exports = []
    real_export = _OnnxEncoder._export

    def counting_export(self):
        exports.append(self.path)
        real_export(self)

    monkeypatch.setattr(_OnnxEncoder, "_export", counting_export)
    _load.cache_clear()
    first = Encoder(str(tiny), backend="onnx")
    first.model  # noqa: B018 - load it now
    _load.cache_clear()
    second = Encoder(str(tiny), backend="onnx", device="cpu")  # another lru key: a second loaded model
    assert first.model is not second.model
    results = {}
    threads = [threading.Thread(target=lambda e=e, i=i: results.__setitem__(i, e.encode(MIXED))) for i, e in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(exports) == 1 and first.active_backend == second.active_backend == "onnx"
    np.testing.assert_array_equal(results[0], results[1])


def test_unsupported_pooling_errors_when_explicit_and_falls_back_under_auto(cls_pooling, cache):
    with pytest.raises(ConfigError, match=r"pooling is 'cls'; only mean pooling.*Fix: use embedding.backend=torch"):
        _fresh(cls_pooling, "onnx").encode(["born in"])
    auto = _fresh(cls_pooling, "auto")
    assert auto.active_backend == "torch"
    np.testing.assert_allclose(auto.encode(MIXED), Encoder(str(cls_pooling), backend="torch", pack=False).encode(MIXED), atol=1e-6)
    assert not (cache / "onnx").exists()  # nothing exported


def test_missing_onnxruntime_is_a_clear_error(tiny, cache, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ConfigError, match=r"onnxruntime is not installed. Fix: pip install onnxruntime onnx"):
        _fresh(tiny, "onnx").encode(["born in"])
    assert _fresh(tiny, "auto").active_backend == "torch"


def test_corrupt_cached_file_is_exported_again(tiny, cache):
    _fresh(tiny, "onnx").encode(["born in"])
    path = onnx_cache_dir(tiny, str(tiny)) / _OnnxEncoder.MODEL_FILE
    path.write_bytes(b"not an onnx file")
    enc = _fresh(tiny, "onnx")
    np.testing.assert_allclose(enc.encode(MIXED), Encoder(str(tiny), backend="torch", pack=False).encode(MIXED), rtol=0, atol=1e-5)
    assert path.stat().st_size > 1000
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([_OnnxEncoder.MARKER, _OnnxEncoder.MODEL_FILE])


def test_a_second_failure_is_a_clear_error(tiny, cache, monkeypatch):
    _fresh(tiny, "onnx").encode(["born in"])
    path = onnx_cache_dir(tiny, str(tiny)) / _OnnxEncoder.MODEL_FILE
    path.write_bytes(b"not an onnx file")
    exports = []

    def broken_export(self):  # the re-export writes a corrupt file again
        exports.append(self.path)
        self.path.write_bytes(b"still not an onnx file")

    monkeypatch.setattr(_OnnxEncoder, "_export", broken_export)
    with pytest.raises(ConfigError, match=r"is unusable, also freshly exported.*Fix: delete .* and retry, or use embedding.backend=torch"):
        _fresh(tiny, "onnx").encode(["born in"])
    assert exports == [path]  # exported again exactly once
    assert _fresh(tiny, "auto").active_backend == "torch"  # auto falls back


def test_encoder_fingerprint_does_not_depend_on_the_backend(tiny, tmp_path, cache):
    from rulerag.retrieval.index import build_index, load_index

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "contents": t}) + "\n" for i, t in enumerate(t for t in MIXED if t)))
    manifests = []
    for backend in ("torch", "onnx"):
        settings = load_settings(overrides={"embedding": {"model": str(tiny), "backend": backend}})
        manifests.append(build_index(corpus, tmp_path / backend, settings, progress=False).encoder)
        index = load_index(tmp_path / backend)
        assert index.encoder(settings).backend.value == backend
    assert manifests[0] == manifests[1]


@pytest.mark.integration
def test_packaged_minilm_onnx_matches_torch(cache):
    queries = ["Which country is Alice Marlow a citizen of?", "Afghanistan make optimistic comment whom on 2014-11-11? Consult",
               "What did Barack Obama express intent to meet with in 2014-03-05? consult make statement"]
    docs = [f"Time 2014-0{1 + i % 9}-1{i % 10} Government of Afghanistan Make optimistic comment on the North Atlantic Treaty "
            f"Organization number {i}." for i in range(20)]
    onnx, torch_ = Encoder(backend="onnx"), Encoder(backend="torch", pack=False)
    for texts in (queries, docs):
        a, b = onnx.encode(texts), torch_.encode(texts)
        assert a.shape == b.shape == (len(texts), 384)
        assert float(np.min(np.sum(a * b, axis=1))) > 0.99999
    assert onnx.active_backend == "onnx"


def test_onnx_cache_dir_override(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("RULERAG_CACHE_DIR", str(tmp_path / "general"))
    monkeypatch.setenv("RULERAG_ONNX_CACHE_DIR", str(tmp_path / "onnx-only"))
    assert onnx_cache_dir(tiny).parent == tmp_path / "onnx-only"
    monkeypatch.delenv("RULERAG_ONNX_CACHE_DIR")
    assert onnx_cache_dir(tiny).parent == tmp_path / "general" / "onnx"
