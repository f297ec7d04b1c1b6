"""Index directories: everything needed to serve, written atomically, validated on load.

Layout of ``indexes/NAME/``::

    manifest.json   what was built, how, from what (checksums of every file below)
    docs.jsonl      the document store (corpus lines, in index order)
    bm25/           bm25s sparse matrices and vocabulary
    dense.faiss     the FAISS index (inner product on unit vectors); absent in a BM25-only index

Example:
    >>> manifest = build_index("corpus.jsonl", "indexes/demo")     # doctest: +SKIP
    >>> index = load_index("indexes/demo")                          # doctest: +SKIP

:func:`convert_index` writes a copy of an index directory with another FAISS type, from the
vectors the source stores (no re-embedding).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import platform
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError
from tqdm.auto import tqdm

from rulerag.config import DEFAULT_EMBEDDING_MODEL, GpuPolicy, IndexSettings, Settings
from rulerag.corpus import Document, file_sha256, read_corpus
from rulerag.embedding import Encoder, describe_encoder, resolve_model_path
from rulerag.errors import ConfigError, IndexLoadError
from rulerag.io import atomic_dir
from rulerag.retrieval.bm25 import BM25Index, BM25Stats, bm25_from_entries, document_tokens, score_entries
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
    #: the embedding model as used: name, absolute path, fingerprint (SHA-256 over its files), whether
    #: rulerag fine-tuned it and its base model (see rulerag.embedding.describe_encoder);
    #: None for a BM25-only index and for indexes written before this field existed
    encoder: dict[str, Any] | None = None
    #: set by `rulerag index convert`: the source index (path, faiss_type, built_at, dense.faiss
    #: checksum) whose documents, BM25 files and vectors this index reuses; None for a built index
    converted_from: dict[str, Any] | None = None
    #: set by `rulerag index add` / `index remove` (rulerag.retrieval.update): one entry per update,
    #: oldest first (when, documents added and removed, the count after, timings)
    updates: list[dict[str, Any]] = []

    def summary(self) -> dict[str, Any]:
        keys = ("embedding_model", "embedding_dim", "faiss_type", "num_docs", "corpus_path", "corpus_sha256", "built_at", "build_seconds")
        out = {k: getattr(self, k) for k in keys}
        if self.encoder and self.encoder.get("path"):
            out["encoder"] = ", ".join(f"{k} {self.encoder[k]}" for k in ("path", "fingerprint", "finetuned", "base_model") if self.encoder.get(k) is not None)
        if self.converted_from:
            out["converted_from"] = f"{self.converted_from.get('path')} ({self.converted_from.get('faiss_type')})"
        if self.updates:
            last = self.updates[-1]
            out["updates"] = (f"{len(self.updates)}, the last at {last.get('at')}: +{last.get('added', 0)} "
                              f"-{last.get('removed', 0)} documents")
        return out


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
class StoredBM25:
    """A BM25 index's files as an earlier build wrote them; :func:`write_index` copies them
    unchanged (byte-identical), where a :class:`BM25Index` would be re-saved."""

    directory: Path
    names: list[str]  #: file names inside ``directory``

    def save(self, directory: Path) -> None:
        for name in self.names:
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.directory / name, directory / name)


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
        for a BM25-only index, used for rule matching only). A local model directory named by a
        relative path is found through the absolute path the manifest recorded, so the index works
        from any working directory."""
        emb = (settings or Settings()).embedding
        return Encoder(query_model(self.manifest) or emb.model, batch_size=emb.batch_size, device=emb.device, backend=emb.backend)


def query_model(manifest: Manifest) -> str | None:
    """The embedding model to query an index with: its ``embedding_model`` when that still names
    the packaged model or an existing directory, else the absolute path recorded at build time;
    ``None`` for a BM25-only index."""
    name = manifest.embedding_model
    if name is None:
        return None
    recorded = (manifest.encoder or {}).get("path")
    if name == DEFAULT_EMBEDDING_MODEL or name.endswith(f"/{DEFAULT_EMBEDDING_MODEL}") or Path(name).expanduser().is_dir():
        return name
    if recorded and Path(recorded).is_dir():
        return recorded
    return name


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def check_encoder(path: Path, manifest: Manifest) -> None:
    """Refuse an index whose embedding model changed since the build (fingerprint mismatch) or is
    now corrupt. A model that is simply not there is left to fail at first use (BM25 retrieval
    does not need it). Indexes without an encoder record (older ones, test stand-ins) pass."""
    record = manifest.encoder or {}
    if not record.get("fingerprint") or manifest.embedding_model is None:
        return
    from rulerag.checkpoint import fingerprint

    model = query_model(manifest)
    try:
        resolved = resolve_model_path(model)
    except ConfigError as exc:
        if not Path(model).expanduser().is_dir():
            return  # not there at all: the first query fails with resolve_model_path's message
        raise IndexLoadError(
            f"{path} was built with embedding model {model!r}, which can no longer be loaded: {exc}"
        ) from exc
    now = fingerprint(resolved)
    if now != record["fingerprint"]:
        raise IndexLoadError(
            f"{path} was built with embedding model {manifest.embedding_model!r} (fingerprint {record['fingerprint'][:12]}), but "
            f"{resolved} now has fingerprint {now[:12]}: the model changed, so its query vectors no longer match the index. "
            f"Fix: restore the model the index was built with, or rebuild the index with "
            f"`rulerag index build --overwrite --embedding-model {model}`"
        )


def check_output(out: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse an existing ``out`` unless ``overwrite`` (checked before any work is done)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists. Fix: choose another --out or pass --overwrite")
    return out


def make_encoder(settings: Settings) -> Encoder:
    """The (lazy) document encoder of ``settings.embedding``."""
    emb = settings.embedding
    return Encoder(emb.model, batch_size=emb.batch_size, device=emb.device, backend=emb.backend)


def build_bm25(texts: list[str]) -> BM25Index:
    """The BM25 index of a whole corpus: one shard of the sharded build, so the local and the
    distributed build (:mod:`rulerag.retrieval.ray_build`) write identical files."""
    tokens = [document_tokens(t) for t in texts]
    stats = BM25Stats.from_tokens(tokens)
    vocab = stats.vocabulary()
    return bm25_from_entries([score_entries(tokens, vocab, stats.idf(vocab), stats.avg_length)], vocab, len(tokens))


def build_dense(vectors: np.ndarray, settings: Settings, *, progress: bool = False) -> DenseIndex:
    """The FAISS index of unit ``vectors``, built on CPU (GPU copies are made at load).
    ``progress``: a progress bar while vectors are added (see :meth:`DenseIndex.build`)."""
    no_gpu = settings.index.model_copy(update={"gpu": GpuPolicy.never})
    return DenseIndex.build(vectors, no_gpu, progress=progress)


def write_index(
    out: str | Path,
    *,
    records: Iterable[bytes],
    num_docs: int,
    bm25: BM25Index | StoredBM25,
    dense_index: DenseIndex | None,
    embedding_model: str | None,
    settings: Settings,
    corpus: Path,
    corpus_sha256: str,
    timings: dict[str, float],
    started: float,
    overwrite: bool = False,
    progress: bool = False,
    manifest_fields: dict[str, Any] | None = None,
) -> Manifest:
    """Write an index directory atomically (temporary sibling, then rename) and return its manifest.

    ``records``: the ``docs.jsonl`` lines (JSON bytes without the newline), in index order.
    ``started``: the ``time.perf_counter()`` at the start of the build (for ``build_seconds``);
    ``timings`` gets ``writing`` added. ``manifest_fields``: manifest fields to record instead of
    the computed ones (:func:`convert_index` keeps its source's ``encoder`` and ``settings``);
    ``files`` is always computed over what was written.

    Example:
        >>> m = write_index("indexes/x", records=[b'{"id":"1","contents":"a"}'], num_docs=1,   # doctest: +SKIP
        ...                 bm25=build_bm25(["a"]), dense_index=None, embedding_model=None, settings=Settings(),
        ...                 corpus=Path("c.jsonl"), corpus_sha256="...", timings={}, started=time.perf_counter())
    """
    out = Path(out)
    t = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        written = 0
        with open(tmp / DOCS, "wb") as fh:
            for line in tqdm(records, total=num_docs, desc="writing docs", unit="doc", disable=not progress, mininterval=1.0):
                fh.write(line + b"\n")
                written += 1
        if written != num_docs:
            raise RuntimeError(f"internal error: {written} document records for {num_docs} documents")
        bm25.save(tmp / BM25_DIR)
        if dense_index is not None:
            dense_index.save(tmp / DENSE)
        timings["writing"] = time.perf_counter() - t
        fields: dict[str, Any] = dict(
            format_version=FORMAT_VERSION,
            embedding_model=embedding_model if dense_index else None,
            embedding_dim=dense_index.dimension if dense_index else 0,
            faiss_type=settings.index.faiss_type.value,
            num_docs=num_docs,
            corpus_path=str(corpus),
            corpus_sha256=corpus_sha256,
            built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 3),
            timings={k: round(v, 3) for k, v in timings.items()},
            libraries=library_versions(),
            python=platform.python_version(),
            settings=settings.to_dict(),
        )
        fields.update(manifest_fields or {})
        if "encoder" not in fields:
            fields["encoder"] = describe_encoder(embedding_model) if dense_index is not None and embedding_model else None
        fields["files"] = _checksums(tmp)  # always over what was written
        manifest = Manifest(**fields)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return manifest


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

    ``dense=False`` builds a BM25-only index (no embedding: fast on large corpora). The steps
    (:func:`build_bm25`, :func:`build_dense`, :func:`write_index`) are shared with the distributed
    build, :func:`rulerag.retrieval.ray_build.build_index_ray`.

    Example:
        >>> manifest = build_index("rulerag/demo/corpus.jsonl", "indexes/demo", overwrite=True)  # doctest: +SKIP
        >>> manifest.num_docs                                                                      # doctest: +SKIP
        350
    """
    settings = settings or Settings()
    corpus, out = Path(corpus), check_output(out, overwrite=overwrite)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    docs = read_corpus(corpus)
    checksum = file_sha256(corpus)
    timings["read"] = time.perf_counter() - t0
    texts = [d.contents for d in docs]
    encoder = encoder or make_encoder(settings)

    dense_index = None
    if dense:
        t = time.perf_counter()
        getattr(encoder, "dimension", None)  # load the model outside the embedding timer
        timings["model_load"] = time.perf_counter() - t
        t = time.perf_counter()
        vectors = encoder.encode(texts, progress=progress)
        timings["embedding"] = time.perf_counter() - t
    t = time.perf_counter()
    bm25 = build_bm25(texts)
    timings["bm25"] = time.perf_counter() - t
    if dense:
        t = time.perf_counter()
        dense_index = build_dense(vectors, settings)
        timings["faiss"] = time.perf_counter() - t
    return write_index(
        out, records=(orjson.dumps(doc.to_dict()) for doc in docs), num_docs=len(docs), bm25=bm25, dense_index=dense_index,
        embedding_model=encoder.model_name, settings=settings, corpus=corpus, corpus_sha256=checksum, timings=timings,
        started=t0, overwrite=overwrite, progress=progress,
    )


def _check_convert_paths(src: Path, out: Path, target: str) -> None:
    """Refuse an ``out`` that is the source index, lies inside it or contains it (writing there
    would replace or delete the files being converted)."""
    s, o = src.resolve(), out.resolve()
    suggestion = src.parent / f"{src.name}-{target}"
    if o == s:
        raise ConfigError(
            f"--out {out} is the source index itself: converting in place would replace the files being read. "
            f"Fix: write to another directory, e.g. --out {suggestion}"
        )
    if s in o.parents or o in s.parents:
        raise ConfigError(
            f"--out {out} {'lies inside' if s in o.parents else 'contains'} the source index {src}. "
            f"Fix: write to a directory outside it, e.g. --out {suggestion}"
        )


def convert_index(
    src: str | Path,
    out: str | Path,
    settings: Settings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Manifest:
    """Write a copy of index directory ``src`` to ``out`` (atomically) with the FAISS index of
    ``settings.index`` (``faiss_type`` and its parameters), built from the vectors ``src`` stores:
    nothing is re-embedded.

    ``docs.jsonl`` and the BM25 files are copied byte for byte; the manifest keeps the source's
    corpus path and checksum, embedding model, encoder record (so its fingerprint check is the
    same) and settings other than ``index``, and notes the source in ``converted_from``. The
    vectors come back exactly from flat, HNSW, IVF and IVF-PQ-with-``ivfpq_refine`` indexes; an
    IVF-PQ index without re-ranking keeps only lossy codes and is refused (:class:`IndexLoadError`),
    as is a BM25-only index. ``out`` may not be ``src``, lie inside it or contain it.

    Example:
        >>> s = Settings(index=IndexSettings(faiss_type="hnsw", hnsw_m=16))                     # doctest: +SKIP
        >>> convert_index("indexes/demo", "indexes/demo-hnsw", s).faiss_type                     # doctest: +SKIP
        'hnsw'
    """
    settings = settings or Settings()
    src, out = Path(src), Path(out)
    target = settings.index.faiss_type.value
    _check_convert_paths(src, out, target)
    check_output(out, overwrite=overwrite)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    source = read_manifest(src)
    rebuild = f"`rulerag index build --corpus {source.corpus_path} --out {out} --faiss-type {target}`"
    if source.embedding_model is None:
        raise IndexLoadError(
            f"{src} is a BM25-only index (built with --no-dense): it has no vectors to convert. "
            f"Fix: build a dense index from the corpus with {rebuild}"
        )

    def lossy(kind: str) -> IndexLoadError:
        return IndexLoadError(
            f"{src} is {kind}: it stores only lossy compressed codes, not the vectors, so it cannot be converted "
            f"without re-embedding the corpus. Fix: rebuild from the corpus with {rebuild} (convert from flat, hnsw, "
            "ivf or ivfpq built with index.ivfpq_refine > 0: those keep the exact vectors)"
        )

    ivfpq_plain = "an IVF-PQ index without exact re-ranking (index.ivfpq_refine=0)"
    if source.faiss_type == "ivfpq" and not (source.settings.get("index") or {}).get("ivfpq_refine"):
        raise lossy(ivfpq_plain)  # known from the manifest: refuse before reading anything
    check_files(src, source, verify=True)  # docs.jsonl and BM25 are copied as they are: neither is parsed
    dense = load_dense(src, source, IndexSettings(gpu=GpuPolicy.never), mmap=True)
    vectors = dense.stored_vectors(progress=progress)
    if vectors is None:
        raise lossy(ivfpq_plain if dense.params()["type"] == "ivfpq" else f"a FAISS {type(dense.cpu_index).__name__} index")
    del dense
    timings["read"] = time.perf_counter() - t0
    t = time.perf_counter()
    new_dense = build_dense(vectors, settings, progress=progress)
    del vectors
    timings["faiss"] = time.perf_counter() - t

    def records() -> Iterable[bytes]:
        with open(src / DOCS, "rb") as fh:
            for line in fh:
                yield line[:-1] if line.endswith(b"\n") else line

    bm25_names = sorted(rel[len(BM25_DIR) + 1 :] for rel in source.files if rel.startswith(f"{BM25_DIR}/"))
    recorded = {**source.settings, "index": settings.index.model_dump(mode="json")}
    converted_from = {"path": str(src), "faiss_type": source.faiss_type, "built_at": source.built_at,
                      "dense_sha256": source.files.get(DENSE)}
    return write_index(
        out, records=records(), num_docs=source.num_docs, bm25=StoredBM25(src / BM25_DIR, bm25_names), dense_index=new_dense,
        embedding_model=source.embedding_model, settings=settings, corpus=Path(source.corpus_path),
        corpus_sha256=source.corpus_sha256, timings=timings, started=t0, overwrite=overwrite, progress=progress,
        manifest_fields={"encoder": source.encoder, "settings": recorded, "converted_from": converted_from},
    )


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


def check_files(path: Path, manifest: Manifest, *, verify: bool) -> None:
    """Refuse (:class:`IndexLoadError`) an index directory missing one of the manifest's files
    or, with ``verify``, one whose SHA-256 differs from the manifest's.

    Example::

        manifest = read_manifest("indexes/demo")
        check_files(Path("indexes/demo"), manifest, verify=True)
    """
    for rel, digest in manifest.files.items():
        fpath = path / rel
        if not fpath.is_file():
            raise IndexLoadError(f"{path} is missing {rel}. Fix: rebuild the index with `rulerag index build --overwrite`")
        if verify and file_sha256(fpath) != digest:
            raise IndexLoadError(f"{fpath} does not match its checksum in the manifest (corrupt or modified). Fix: rebuild the index with `rulerag index build --overwrite`")


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn any library's parse error while reading ``path``'s files into an :class:`IndexLoadError`."""
    try:
        yield
    except IndexLoadError:
        raise
    except Exception as exc:  # any library's parse error means the same thing to the user
        raise IndexLoadError(f"{path} could not be read ({type(exc).__name__}: {exc}). Fix: rebuild the index with `rulerag index build --overwrite`") from exc


def load_dense(path: Path, manifest: Manifest, index_settings: IndexSettings | None, *, mmap: bool) -> DenseIndex:
    """The FAISS index of ``path`` (whose files :func:`check_files` passed), refused
    (:class:`IndexLoadError`) when it cannot be parsed or its size or dimension disagrees with
    the manifest. Loads nothing else: no documents, no BM25.

    Example::

        dense = load_dense(path, manifest, IndexSettings(gpu="never"), mmap=True)
        vectors = dense.stored_vectors()
    """
    with _readable(path):
        dense = DenseIndex.load(path / DENSE, index_settings, mmap=mmap)
    if dense.size != manifest.num_docs:
        raise IndexLoadError(f"{path}: manifest says {manifest.num_docs} documents, FAISS has {dense.size}. Fix: rebuild the index")
    if dense.dimension != manifest.embedding_dim:
        raise IndexLoadError(f"{path}: FAISS dimension {dense.dimension} differs from the manifest's {manifest.embedding_dim}. Fix: rebuild the index")
    return dense


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
    ``verify``: check every file's SHA-256 against the manifest (cheap next to loading), and the
    embedding model's fingerprint against the one recorded at build time (:func:`check_encoder`).
    """
    path = Path(path)
    mmap = mmap or bool(index_settings is not None and index_settings.mmap)  # index.mmap: map FAISS and BM25 files
    manifest = read_manifest(path)
    if embedding_model is not None and manifest.embedding_model is not None and not _same_model(embedding_model, manifest.embedding_model):
        raise IndexLoadError(
            f"{path} was built with embedding model {manifest.embedding_model!r} but {embedding_model!r} was asked for. "
            f"Fix: drop the embedding.model setting to use the index's model, or rebuild the index with --embedding-model {embedding_model}"
        )
    check_files(path, manifest, verify=verify)
    with _readable(path):
        docs = [Document(d.pop("id"), d.pop("contents"), d) for d in map(orjson.loads, (path / DOCS).read_bytes().splitlines())]
        bm25 = BM25Index.load(path / BM25_DIR, len(docs), mmap=mmap)
    if len(docs) != manifest.num_docs:
        raise IndexLoadError(f"{path}: manifest says {manifest.num_docs} documents, store has {len(docs)}. Fix: rebuild the index")
    dense = load_dense(path, manifest, index_settings, mmap=mmap) if manifest.embedding_model else None
    if verify:
        check_encoder(path, manifest)
    return Index(path, manifest, docs, bm25, dense)
