"""Index directories: everything needed to serve, written atomically, validated on load.

Layout of ``indexes/NAME/``::

    manifest.json   what was built, how, from what (checksums of every file below)
    docs.jsonl      the document store (corpus lines, in index order)
    bm25/           bm25s sparse matrices and vocabulary
    dense.faiss     the FAISS index (inner product on unit vectors); absent in a BM25-only index

Example:
    >>> manifest = build_index("corpus.jsonl", "indexes/demo")     # doctest: +SKIP
    >>> index = load_index("indexes/demo")                          # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from tqdm.auto import tqdm

from rulerag.config import GpuPolicy, IndexSettings, Settings
from rulerag.corpus import Document, file_sha256, read_corpus
from rulerag.embedding import Encoder
from rulerag.errors import IndexLoadError
from rulerag.io import atomic_dir
from rulerag.retrieval.bm25 import BM25Index
from rulerag.retrieval.dense import DenseIndex

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DOCS = "docs.jsonl"
BM25_DIR = "bm25"
DENSE = "dense.faiss"
_LIBRARIES = ("rulerag", "faiss-cpu", "faiss-gpu-cu12", "bm25s", "sentence-transformers", "transformers", "torch", "numpy")


class Manifest(BaseModel):
    """What an index directory holds; written last, read first."""

    format_version: int
    embedding_model: str | None  # None: BM25-only index
    embedding_dim: int
    faiss_type: str
    num_docs: int
    corpus_path: str
    corpus_sha256: str
    built_at: str
    build_seconds: float
    timings: dict[str, float]
    files: dict[str, str]  # relative path -> sha256
    libraries: dict[str, str]
    python: str
    settings: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        keys = ("embedding_model", "embedding_dim", "faiss_type", "num_docs", "corpus_path", "corpus_sha256", "built_at", "build_seconds")
        return {k: getattr(self, k) for k in keys}


def library_versions() -> dict[str, str]:
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


@dataclass
class Index:
    """A loaded index directory."""

    path: Path
    manifest: Manifest
    docs: list[Document]
    bm25: BM25Index
    dense: DenseIndex | None  # None for a BM25-only index (built with dense=False)

    def encoder(self, settings: Settings | None = None) -> Encoder:
        """An encoder for queries, using the model the index was built with (the configured one
        for a BM25-only index, used for rule matching only)."""
        emb = (settings or Settings()).embedding
        return Encoder(self.manifest.embedding_model or emb.model, batch_size=emb.batch_size, device=emb.device)


def build_index(
    corpus: str | Path,
    out: str | Path,
    settings: Settings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    encoder: Encoder | None = None,
    dense: bool = True,
) -> Manifest:
    """Build BM25 + FAISS indexes for a JSONL corpus into ``out`` (atomically).

    ``dense=False`` builds a BM25-only index (no embedding: fast on large corpora)."""
    settings = settings or Settings()
    corpus, out = Path(corpus), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists. Fix: choose another --out or pass --overwrite")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    docs = read_corpus(corpus)
    checksum = file_sha256(corpus)
    timings["read"] = time.perf_counter() - t0
    texts = [d.contents for d in docs]
    encoder = encoder or Encoder(settings.embedding.model, batch_size=settings.embedding.batch_size, device=settings.embedding.device)

    dense_index = None
    if dense:
        t = time.perf_counter()
        getattr(encoder, "dimension", None)  # load the model outside the embedding timer
        timings["model_load"] = time.perf_counter() - t
        t = time.perf_counter()
        vectors = encoder.encode(texts, progress=progress)
        timings["embedding"] = time.perf_counter() - t
    t = time.perf_counter()
    bm25 = BM25Index.build(texts, progress=False)
    timings["bm25"] = time.perf_counter() - t
    if dense:
        t = time.perf_counter()
        no_gpu = settings.index.model_copy(update={"gpu": GpuPolicy.never})  # build on CPU; GPU copies are made at load
        dense_index = DenseIndex.build(vectors, no_gpu)
        timings["faiss"] = time.perf_counter() - t

    t = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with open(tmp / DOCS, "wb") as fh:
            for doc in tqdm(docs, desc="writing docs", unit="doc", disable=not progress, mininterval=1.0):
                fh.write(orjson.dumps(doc.to_dict()) + b"\n")
        bm25.save(tmp / BM25_DIR)
        if dense_index is not None:
            dense_index.save(tmp / DENSE)
        timings["writing"] = time.perf_counter() - t
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            embedding_model=encoder.model_name if dense_index else None,
            embedding_dim=dense_index.dimension if dense_index else 0,
            faiss_type=settings.index.faiss_type.value,
            num_docs=len(docs),
            corpus_path=str(corpus),
            corpus_sha256=checksum,
            built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - t0, 3),
            timings={k: round(v, 3) for k, v in timings.items()},
            files=_checksums(tmp),
            libraries=library_versions(),
            python=platform.python_version(),
            settings=settings.to_dict(),
        )
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return manifest


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate ``path/manifest.json``."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise IndexLoadError(f"index directory {path} does not exist. Fix: build it with `rulerag index build --corpus FILE.jsonl --out {path}`")
    if not mpath.is_file():
        raise IndexLoadError(f"{path} has no {MANIFEST}: not an index directory, or its build did not finish. Fix: rebuild it with `rulerag index build`")
    try:
        manifest = Manifest.model_validate(json.loads(mpath.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise IndexLoadError(f"{mpath} is corrupt ({str(exc).splitlines()[0]}). Fix: rebuild the index with `rulerag index build --overwrite`") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise IndexLoadError(f"{path} has index format {manifest.format_version}, this rulerag reads {FORMAT_VERSION}. Fix: rebuild the index")
    return manifest


def load_index(
    path: str | Path,
    *,
    embedding_model: str | None = None,
    index_settings: IndexSettings | None = None,
    verify: bool = True,
    mmap: bool = False,
) -> Index:
    """Load an index directory, refusing a missing file, a corrupt file or a mismatched model.

    ``embedding_model``: when given, must equal the model the index was built with.
    ``verify``: check every file's SHA-256 against the manifest (cheap next to loading).
    """
    path = Path(path)
    manifest = read_manifest(path)
    if embedding_model is not None and manifest.embedding_model is not None and embedding_model != manifest.embedding_model:
        raise IndexLoadError(
            f"{path} was built with embedding model {manifest.embedding_model!r} but {embedding_model!r} was asked for. "
            f"Fix: drop the embedding.model setting to use the index's model, or rebuild the index with --embedding-model {embedding_model}"
        )
    for rel, digest in manifest.files.items():
        fpath = path / rel
        if not fpath.is_file():
            raise IndexLoadError(f"{path} is missing {rel}. Fix: rebuild the index with `rulerag index build --overwrite`")
        if verify and file_sha256(fpath) != digest:
            raise IndexLoadError(f"{fpath} does not match its checksum in the manifest (corrupt or modified). Fix: rebuild the index with `rulerag index build --overwrite`")
    try:
        docs = [Document(d.pop("id"), d.pop("contents"), d) for d in map(orjson.loads, (path / DOCS).read_bytes().splitlines())]
        bm25 = BM25Index.load(path / BM25_DIR, len(docs), mmap=mmap)
        dense = DenseIndex.load(path / DENSE, index_settings, mmap=mmap) if manifest.embedding_model else None
    except IndexLoadError:
        raise
    except Exception as exc:  # any library's parse error means the same thing to the user
        raise IndexLoadError(f"{path} could not be read ({type(exc).__name__}: {exc}). Fix: rebuild the index with `rulerag index build --overwrite`") from exc
    if len(docs) != manifest.num_docs or (dense is not None and dense.size != manifest.num_docs):
        raise IndexLoadError(f"{path}: manifest says {manifest.num_docs} documents, store has {len(docs)}, FAISS has {dense.size if dense else 0}. Fix: rebuild the index")
    if dense is not None and dense.dimension != manifest.embedding_dim:
        raise IndexLoadError(f"{path}: FAISS dimension {dense.dimension} differs from the manifest's {manifest.embedding_dim}. Fix: rebuild the index")
    return Index(path, manifest, docs, bm25, dense)
