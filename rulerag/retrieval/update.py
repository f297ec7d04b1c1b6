"""Indexes that grow and shrink: add documents to an index directory, or remove them, in place.

    from rulerag.retrieval.update import update_index
    update_index("indexes/mine", add=read_corpus("new.jsonl"))          # embeds only the new documents
    update_index("indexes/mine", remove={"d17", "d18"})

What changes, and how:

* **documents**: the store keeps its lines byte for byte; added documents are appended in the
  order given, removed ones dropped;
* **dense (FAISS)**: only the added documents are embedded, with the index's own model (its
  fingerprint is checked first), and ``add``-ed to the loaded FAISS index; removal drops the rows
  from a flat index (``remove_ids``, which keeps the order) and rebuilds other types from the
  vectors they store (an IVF-PQ index without exact re-ranking keeps only lossy codes and is
  refused: rebuild it from the corpus);
* **BM25** is rebuilt over the new document set: its scores depend on every document (IDF, mean
  length), and rebuilding is a small part of an update (``benchmarks/index_update.py`` measures it);
* the **manifest** gets new checksums and counts and an entry in ``updates`` (what, when, how many).

So retrieval after an update equals a fresh build on the same documents. The update is written
to a temporary sibling directory and swapped in atomically (:func:`rulerag.io.atomic_dir`): a kill
at any point leaves the old index whole and loadable, and a reader that loaded it keeps working.
Concurrent updates of one index are serialised by a lock file next to it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import numpy as np
import orjson

from rulerag.config import GpuPolicy, IndexSettings, Settings
from rulerag.corpus import Document
from rulerag.embedding import Encoder
from rulerag.errors import ConfigError, IndexLoadError
from rulerag.io import file_lock
from rulerag.retrieval.dense import DenseIndex
from rulerag.retrieval.index import (
    DOCS, Manifest, build_bm25, build_dense, check_encoder, check_files, load_dense, query_model, read_manifest, write_index,
)

_SHOW = 10  # ids named in an error message


def _listed(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOW])
    return shown + (f" and {len(ids) - _SHOW} more" if len(ids) > _SHOW else "")


def _stored(path: Path) -> tuple[list[bytes], list[str], list[str]]:
    """The store's lines (without newlines), their ids and their texts."""
    lines = (path / DOCS).read_bytes().splitlines()
    objs = [orjson.loads(line) for line in lines]
    return lines, [str(o["id"]) for o in objs], [str(o["contents"]) for o in objs]


def update_index(
    path: str | Path,
    *,
    add: Sequence[Document] = (),
    remove: Collection[str] = (),
    settings: Settings | None = None,
    encoder: Encoder | None = None,
    progress: bool = False,
) -> Manifest:
    """Add documents to the index directory ``path`` and/or remove documents by id; returns the
    new manifest. Refused before anything is written (:class:`ConfigError`): an added id already
    in the index or given twice, an id to remove that is not there, an update that would leave no
    documents, an update that changes nothing. ``encoder``: embeds the added documents (default:
    the index's own model, as queries use it).

    Example:
        >>> update_index("indexes/mine", add=[Document("d9", "Ada Quill lives in Veldt.")])   # doctest: +SKIP
        >>> update_index("indexes/mine", remove={"d9"}).num_docs                              # doctest: +SKIP
        4
    """
    path = Path(path)
    settings = settings or Settings()
    t0 = time.perf_counter()
    with file_lock(path.parent / f".{path.name}.update.lock"):
        source = read_manifest(path)
        check_files(path, source, verify=True)
        timings: dict[str, float] = {}
        lines, ids, texts = _stored(path)
        present = set(ids)
        given = Counter(d.id for d in add)
        twice = sorted(i for i, n in given.items() if n > 1)
        if twice:
            raise ConfigError(f"{len(twice)} id(s) appear more than once among the documents to add: {_listed(twice)}. "
                              "Fix: give every document its own id")
        clash = sorted(set(given) & present)
        if clash:
            raise ConfigError(f"{len(clash)} document id(s) to add are already in {path}: {_listed(clash)}. "
                              f"Fix: give them new ids, or remove the old ones first (`rulerag index remove --index {path} --ids FILE`)")
        gone = set(remove)
        missing = sorted(gone - present)
        if missing:
            raise ConfigError(f"{len(missing)} id(s) to remove are not in {path}: {_listed(missing)}. Fix: remove only ids the index holds "
                              "(`rulerag index info` counts them; docs.jsonl lists them)")
        if not add and not gone:
            raise ConfigError("nothing to add or remove. Fix: pass documents to add (--corpus) or ids to remove (--ids)")
        keep = [i for i, doc_id in enumerate(ids) if doc_id not in gone]
        if not keep and not add:
            raise ConfigError(f"removing {len(gone)} id(s) would leave {path} with no documents. Fix: keep at least one, or delete the directory")
        timings["read"] = time.perf_counter() - t0

        index_settings = IndexSettings(**{**(source.settings.get("index") or {}), "gpu": GpuPolicy.never})
        dense = None
        if source.embedding_model is not None:
            t = time.perf_counter()
            check_encoder(path, source)
            dense = load_dense(path, source, index_settings, mmap=False)
            if gone:
                dense = _without(dense, [i for i, doc_id in enumerate(ids) if doc_id in gone], index_settings, path, progress)
            timings["faiss_read"] = time.perf_counter() - t
            if add:
                emb = settings.embedding
                encoder = encoder or Encoder(query_model(source) or emb.model, batch_size=emb.batch_size, device=emb.device,
                                             backend=emb.backend)
                t = time.perf_counter()
                getattr(encoder, "dimension", None)  # load the model outside the embedding timer
                timings["model_load"] = time.perf_counter() - t
                t = time.perf_counter()
                vectors = encoder.encode([d.contents for d in add], progress=progress)
                timings["embedding"] = time.perf_counter() - t
                if vectors.shape[1] != dense.dimension:
                    raise ConfigError(f"the encoder gives {vectors.shape[1]}-dimensional vectors but {path} holds {dense.dimension}. "
                                      f"Fix: add with the model the index was built with ({source.embedding_model})")
                t = time.perf_counter()
                dense.cpu_index.add(np.ascontiguousarray(vectors, dtype=np.float32))
                timings["faiss_add"] = time.perf_counter() - t

        t = time.perf_counter()
        new_texts = [texts[i] for i in keep] + [d.contents for d in add]
        bm25 = build_bm25(new_texts)
        timings["bm25"] = time.perf_counter() - t

        def records() -> Iterator[bytes]:
            for i in keep:
                yield lines[i]
            for d in add:
                yield orjson.dumps(d.to_dict())

        # the manifest keeps the build's record (time, timings, settings, encoder); the update is
        # logged in `updates`, its timings filled in by write_index (which adds `writing`)
        entry = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "added": len(add), "removed": len(gone),
                 "num_docs": len(new_texts), "timings": timings}
        fields = {"encoder": source.encoder, "settings": source.settings, "converted_from": source.converted_from,
                  "built_at": source.built_at, "build_seconds": source.build_seconds, "timings": source.timings,
                  "updates": [*source.updates, entry]}
        return write_index(
            path, records=records(), num_docs=len(new_texts), bm25=bm25, dense_index=dense, embedding_model=source.embedding_model,
            settings=settings.model_copy(update={"index": index_settings}), corpus=Path(source.corpus_path), corpus_sha256=source.corpus_sha256, timings=timings, started=t0,
            overwrite=True, manifest_fields=fields,
        )


def _without(dense: DenseIndex, rows: list[int], index_settings: IndexSettings, path: Path, progress: bool) -> DenseIndex:
    """``dense`` without the vectors at positions ``rows``, the others in their order."""
    import faiss

    index = dense.cpu_index
    if type(index) in (faiss.IndexFlatIP, faiss.IndexFlatL2, faiss.IndexFlat):
        index.remove_ids(faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64)))  # flat: the rest shift down, in order
        return dense
    vectors = dense.stored_vectors(progress=progress)
    if vectors is None:
        raise IndexLoadError(f"{path} keeps only lossy compressed codes (an IVF-PQ index without exact re-ranking), so documents cannot be "
                             "removed from it without re-embedding. Fix: rebuild the index from the corpus without those documents "
                             "(`rulerag index build --overwrite`), or build it with --ivfpq-refine so it keeps the vectors")
    return build_dense(np.delete(vectors, rows, axis=0), Settings(index=index_settings), progress=progress)

