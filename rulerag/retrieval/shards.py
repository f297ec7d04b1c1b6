"""Sharded dense search: several FAISS indexes, each holding a contiguous id range of one corpus.

A corpus too large to index (or to load) in one piece is split into shards: shard ``i`` holds
documents ``offset_i .. offset_i + size_i - 1``, the shards cover ``0 .. n - 1`` without gaps.
:class:`ShardedDenseIndex` searches every shard for its top ``k`` (:func:`top_k`) and merges the
lists by score, breaking ties by the lower corpus position, so sharded exact (``flat``) search
returns the same top-k ids and scores as one unsharded flat index read the same way.

Ties: FAISS returns *some* of the hits tied at the k-th score, not always those with the lowest
ids, and lists tied hits in no fixed order. :func:`top_k` asks a shard for a few more hits than
``k`` and, while the last one returned still ties with the k-th, for twice as many, so every hit
tied at the cut is seen; :func:`canonical_order` then sorts by score, then id. The result is a
function of the scores alone, whatever the shard layout.

It has the search interface of :class:`~rulerag.retrieval.dense.DenseIndex` (``search``,
``dimension``, ``size``), so a :class:`~rulerag.retrieval.search.Searcher` can use it directly.

On disk a sharded index is a directory of ``shard-00000.faiss``, ... plus ``shards.json``
(offsets, sizes, dimension); :meth:`ShardedDenseIndex.load` can memory-map every shard
(``mmap=True`` or ``index.mmap``), so a server starts without reading the vectors.

Example:
    >>> import numpy as np
    >>> vecs = np.eye(6, dtype=np.float32)
    >>> sharded = ShardedDenseIndex.build(vecs, shard_size=4)
    >>> [s.size for s in sharded.shards], sharded.offsets
    ([4, 2], [0, 4])
    >>> [h.pos for h in sharded.search(vecs[4:5], depth=1)[0]]
    [4]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from rulerag.config import IndexSettings
from rulerag.errors import ConfigError, IndexLoadError
from rulerag.retrieval.bm25 import BM25Index, BM25Stats, bm25_from_entries, document_tokens, score_entries
from rulerag.retrieval.dense import DenseIndex
from rulerag.retrieval.hits import Hit

SHARDS_FILE = "shards.json"
SHARDS_FORMAT = 1


def canonical_order(scores: np.ndarray, ids: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by score (descending), then by id (ascending); missing hits (id ``-1``) last.

    ``scores`` and ``ids`` are ``(nq, m)`` arrays as FAISS returns them; the result keeps the first
    ``k`` columns (all when ``k`` is None), padded with ``-inf`` / ``-1`` where a row has fewer hits.

    Example:
        >>> s, i = canonical_order(np.array([[0.5, 0.75, 0.5, 0.0]]), np.array([[7, 3, 2, -1]]), k=3)
        >>> i.tolist(), s.tolist()
        ([[3, 2, 7]], [[0.75, 0.5, 0.5]])
    """
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    missing = ids < 0
    keyed = np.where(missing, np.inf, -scores)  # missing hits sort after every real one
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, ids), keyed), axis=-1)
    if k is not None:
        order = order[:, :k]
    out_scores = np.take_along_axis(np.where(missing, -np.inf, scores), order, axis=-1)
    out_ids = np.take_along_axis(np.where(missing, -1, ids), order, axis=-1)
    if k is not None and out_ids.shape[1] < k:
        pad = k - out_ids.shape[1]
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=-1)
    return out_scores, out_ids


def top_k(index: faiss.Index, query_vectors: np.ndarray, k: int, *, tie_margin: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of one FAISS index in :func:`canonical_order`, with every hit tied at the cut
    considered: ``(scores, ids)`` of shape ``(nq, k)``, padded with ``-inf`` / ``-1``.

    Example:
        >>> flat = faiss.IndexFlatIP(2)
        >>> flat.add(np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.float32))
        >>> top_k(flat, np.array([[1, 0]], dtype=np.float32), 2)[1].tolist()   # three ties: ids 0, 2, 3
        [[0, 2]]
    """
    n = int(index.ntotal)
    want = min(n, k + tie_margin)
    if want == 0:
        return canonical_order(np.zeros((len(query_vectors), 0), np.float32), np.zeros((len(query_vectors), 0), np.int64), k)
    scores, ids = index.search(query_vectors, want)
    cut = min(k, want) - 1
    while want < n:
        # a row whose last returned hit still ties with its k-th may have more tied hits beyond it
        open_rows = (ids[:, -1] >= 0) & (scores[:, -1] >= scores[:, cut])
        if not open_rows.any():
            break
        want = min(n, 2 * want)
        more_scores, more_ids = index.search(np.ascontiguousarray(query_vectors[open_rows]), want)
        pad = want - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores[open_rows], ids[open_rows] = more_scores, more_ids
    return canonical_order(scores, ids, k)


class ShardedDenseIndex:
    """Dense search over shards that each hold a contiguous range of corpus positions.

    ``shards`` are :class:`DenseIndex` objects in corpus order; ``offsets`` (default: the running
    sum of the shard sizes) give each shard's first corpus position. Shards may be of any FAISS
    type; only exact shards give results identical to an unsharded exact index. Shards are
    searched one after another (FAISS parallelises inside each search).
    """

    def __init__(self, shards: Sequence[DenseIndex], offsets: Sequence[int] | None = None, *, tie_margin: int = 8) -> None:
        if not shards:
            raise ConfigError("a sharded index needs at least one shard. Fix: pass the shards' DenseIndex objects")
        sizes = [s.size for s in shards]
        expected = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
        offsets = list(expected if offsets is None else offsets)
        if offsets != expected:
            raise ConfigError(
                f"shard offsets {offsets} do not tile the corpus contiguously (sizes {sizes} need offsets {expected}). "
                "Fix: order the shards by their first corpus position, with no gaps or overlaps"
            )
        dims = {s.dimension for s in shards}
        if len(dims) != 1:
            raise ConfigError(f"shards have different dimensions {sorted(dims)}. Fix: build every shard with the same embedding model")
        self.shards = list(shards)
        self.offsets = offsets
        self.tie_margin = tie_margin  #: extra hits asked of each shard, so ties at the cut are usually seen at once

    @property
    def dimension(self) -> int:
        return self.shards[0].dimension

    @property
    def size(self) -> int:
        return self.offsets[-1] + self.shards[-1].size

    @property
    def on_gpu(self) -> bool:
        return any(s.on_gpu for s in self.shards)

    @property
    def mmapped(self) -> bool:
        return all(s.mmapped for s in self.shards)

    @classmethod
    def build(
        cls, vectors: np.ndarray, settings: IndexSettings | None = None, *, shard_size: int | None = None, num_shards: int | None = None
    ) -> ShardedDenseIndex:
        """Split ``vectors`` (corpus order) into contiguous shards and index each one.

        Give ``shard_size`` (documents per shard, the last one may be smaller) or ``num_shards``
        (near-equal shards)."""
        n = len(vectors)
        if (shard_size is None) == (num_shards is None):
            raise ConfigError("give exactly one of shard_size and num_shards")
        if num_shards is not None:
            if not 1 <= num_shards <= max(1, n):
                raise ConfigError(f"num_shards must be between 1 and the number of vectors ({n}), got {num_shards}")
            bounds = np.linspace(0, n, num_shards + 1).astype(int).tolist()
        else:
            if shard_size is None or shard_size < 1:
                raise ConfigError(f"shard_size must be at least 1, got {shard_size}")
            bounds = list(range(0, n, shard_size)) + [n]
        shards = [DenseIndex.build(vectors[lo:hi], settings) for lo, hi in zip(bounds[:-1], bounds[1:])]
        return cls(shards, bounds[:-1])

    def search_arrays(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of every query over all shards: ``(scores, ids)`` arrays of shape ``(nq, k)``,
        ids as corpus positions, in :func:`canonical_order` (padded with ``-inf`` / ``-1``)."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        query_vectors = np.ascontiguousarray(query_vectors, dtype=np.float32)
        if query_vectors.ndim != 2 or query_vectors.shape[1] != self.dimension:
            raise ConfigError(
                f"query vectors have shape {query_vectors.shape} but the index has dimension {self.dimension}. "
                "Fix: query with the embedding model the index was built with (see `rulerag index info`)"
            )
        all_scores, all_ids = [], []
        for shard, offset in zip(self.shards, self.offsets):
            scores, ids = top_k(shard.index, query_vectors, min(k, shard.size), tie_margin=self.tie_margin)
            all_scores.append(scores)
            all_ids.append(np.where(ids >= 0, ids + offset, -1))
        return canonical_order(np.concatenate(all_scores, axis=1), np.concatenate(all_ids, axis=1), k)

    def search(self, query_vectors: np.ndarray, depth: int) -> list[list[Hit]]:
        """Ranked hits per query (at most ``depth``), like :meth:`DenseIndex.search`."""
        if len(query_vectors) == 0:
            return []
        scores, ids = self.search_arrays(query_vectors, min(depth, self.size))
        return [[Hit(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(ids, scores)]

    def save(self, directory: str | Path) -> None:
        """Write ``shard-NNNNN.faiss`` files and ``shards.json`` into ``directory`` (created)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        entries = []
        for i, (shard, offset) in enumerate(zip(self.shards, self.offsets)):
            name = f"shard-{i:05d}.faiss"
            shard.save(directory / name)
            entries.append({"file": name, "offset": offset, "size": shard.size})
        meta = {"format": SHARDS_FORMAT, "dimension": self.dimension, "size": self.size, "shards": entries}
        (directory / SHARDS_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, settings: IndexSettings | None = None, *, mmap: bool | None = None) -> ShardedDenseIndex:
        """Read a directory written by :meth:`save` (``mmap`` as in :meth:`DenseIndex.load`)."""
        directory = Path(directory)
        meta_path = directory / SHARDS_FILE
        if not meta_path.is_file():
            raise IndexLoadError(f"{directory} has no {SHARDS_FILE}: not a sharded dense index. Fix: write one with ShardedDenseIndex.save")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            entries = meta["shards"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise IndexLoadError(f"{meta_path} is corrupt ({exc}). Fix: write the sharded index again") from exc
        if meta.get("format") != SHARDS_FORMAT:
            raise IndexLoadError(f"{meta_path} has format {meta.get('format')}, this rulerag reads {SHARDS_FORMAT}. Fix: write the sharded index again")
        shards = []
        for e in entries:
            path = directory / e["file"]
            if not path.is_file():
                raise IndexLoadError(f"{directory} is missing shard {e['file']}. Fix: write the sharded index again")
            shard = DenseIndex.load(path, settings, mmap=mmap)
            if shard.size != e["size"]:
                raise IndexLoadError(f"{path} holds {shard.size} vectors, {SHARDS_FILE} says {e['size']}. Fix: write the sharded index again")
            shards.append(shard)
        return cls(shards, [e["offset"] for e in entries])


class ShardedBM25:
    """BM25 search over shards that each hold a contiguous range of corpus positions, every
    shard scoring with the **corpus-wide** statistics (document frequencies, mean length; as the
    distributed build computes them), so a document's score does not depend on its shard.

    Each shard returns its own top ``k`` (:func:`rulerag.retrieval.bm25.top_k`: ties in position
    order) and :func:`canonical_order` merges them: the result equals the unsharded index's
    :meth:`~rulerag.retrieval.bm25.BM25Index.search`, document for document.

    Example:
        >>> texts = ["alice born tarvik", "bruno born dravport", "tarvik in norland", "alice lives norland"]
        >>> sharded = ShardedBM25.build(texts, num_shards=2)
        >>> [h.pos for h in sharded.search(["alice norland"], depth=3)[0]]
        [3, 2, 0]
        >>> from rulerag.retrieval.index import build_bm25
        >>> sharded.search(["alice norland"], 3) == build_bm25(texts).search(["alice norland"], 3)
        True
    """

    def __init__(self, shards: Sequence[BM25Index], offsets: Sequence[int]) -> None:
        self.shards = list(shards)
        self.offsets = list(offsets)

    @property
    def size(self) -> int:
        return self.offsets[-1] + self.shards[-1].num_docs

    @classmethod
    def build(cls, texts: Sequence[str], *, num_shards: int) -> ShardedBM25:
        if not 1 <= num_shards <= max(1, len(texts)):
            raise ConfigError(f"num_shards must be between 1 and the number of documents ({len(texts)}), got {num_shards}")
        tokens = [document_tokens(t) for t in texts]
        stats = BM25Stats.from_tokens(tokens)  # in a cluster: each shard's statistics, merged
        vocab = stats.vocabulary()
        idf = stats.idf(vocab)
        bounds = np.linspace(0, len(texts), num_shards + 1).astype(int).tolist()
        shards = [bm25_from_entries([score_entries(tokens[lo:hi], vocab, idf, stats.avg_length)], vocab, hi - lo)
                  for lo, hi in zip(bounds[:-1], bounds[1:])]
        return cls(shards, bounds[:-1])

    def shard_hits(self, i: int, queries: list[str], depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Shard ``i``'s top ``depth`` per query as ``(scores, ids)`` arrays (corpus positions,
        padded with ``-inf`` / ``-1``): what one replica would send back."""
        shard, offset = self.shards[i], self.offsets[i]
        lists = shard.search(queries, depth)
        scores = np.full((len(queries), depth), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), depth), -1, dtype=np.int64)
        for row, hits in enumerate(lists):
            scores[row, : len(hits)] = [h.score for h in hits]
            ids[row, : len(hits)] = [h.pos + offset for h in hits]
        return scores, ids

    @staticmethod
    def merge(parts: Sequence[tuple[np.ndarray, np.ndarray]], depth: int) -> list[list[Hit]]:
        """The shards' answers merged into one ranked list per query."""
        scores, ids = canonical_order(np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts], axis=1), depth)
        return [[Hit(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(ids, scores)]

    def search(self, queries: list[str], depth: int) -> list[list[Hit]]:
        """Ranked hits per query (at most ``depth``), like :meth:`BM25Index.search`."""
        if not queries:
            return []
        return self.merge([self.shard_hits(i, queries, depth) for i in range(len(self.shards))], depth)
