"""First-stage search over a loaded index: BM25, dense, or the two fused (hybrid).

Example:
    >>> searcher = Searcher(index, encoder, RetrievalSettings())         # doctest: +SKIP
    >>> hits = searcher.search_many(["Where was Alice Marlow born?"])[0]  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from rulerag.config import Fusion, RetrievalSettings, RetrieverKind
from rulerag.embedding import TextEncoder
from rulerag.errors import ConfigError
from rulerag.retrieval.bm25 import BM25Index
from rulerag.retrieval.dense import DenseIndex
from rulerag.retrieval.fusion import rrf, weighted_sum
from rulerag.retrieval.hits import Hit


class CachedEncoder:
    """A :class:`~rulerag.embedding.TextEncoder` view of a :class:`Searcher`'s query-embedding
    cache: ``encode`` returns cached vectors and encodes (and caches) only unseen texts.

    ``Searcher.encoder`` is this view, so every query-time caller shares one cache: rule matching
    embeds the (name-masked) question through it, and when masking leaves the question unchanged
    (about a third of RuleQA-I's questions) the retrieval query that follows is already encoded."""

    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher

    @property
    def model_name(self) -> str:
        return self._searcher.base_encoder.model_name

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Unit vectors for ``texts`` (float32, ``(n, d)``), through the cache."""
        return self._searcher.encode(list(texts))

    def __getattr__(self, name: str) -> Any:  # dimension, batch_size, ... of the wrapped encoder
        return getattr(self._searcher.base_encoder, name)


class Searcher:
    """Runs batches of queries through BM25, FAISS or both, returning ranked :class:`Hit` lists.

    Query embeddings are kept in a bounded LRU cache (``cache_size`` queries), so a query text
    seen before (a repeated question, the same rule query) is not encoded again.
    ``base_encoder`` is the encoder given; ``encoder`` is the same encoder seen through the cache
    (:class:`CachedEncoder`), for other query-time callers such as rule matching."""

    def __init__(
        self,
        bm25: BM25Index,
        dense: DenseIndex | None,
        encoder: TextEncoder,
        settings: RetrievalSettings | None = None,
        cache_size: int = 50_000,
    ) -> None:
        self.bm25 = bm25
        self.dense = dense
        self.base_encoder = encoder
        self.encoder: TextEncoder = CachedEncoder(self)
        self.settings = settings or RetrievalSettings()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, queries: list[str], *, also: Sequence[str] = ()) -> np.ndarray:
        """Unit vectors for ``queries``, encoding only those not in the cache (thread-safe).

        ``also``: more texts to encode in the same encoder call (those not cached) and cache,
        without returning them."""
        if not queries:
            return self.base_encoder.encode([])
        with self._lock:
            missing = list(dict.fromkeys(q for q in [*queries, *also] if q not in self._cache))
        if missing:
            vectors = self.base_encoder.encode(missing)
            with self._lock:
                for q, v in zip(missing, vectors):
                    self._cache[q] = v
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            out = []
            for q in queries:
                v = self._cache.get(q)
                if v is None:  # evicted by a concurrent caller: encode it on its own
                    v = self.base_encoder.encode([q])[0]
                else:
                    self._cache.move_to_end(q)
                out.append(v)
        return np.stack(out).astype(np.float32, copy=False)

    def search_many(
        self, queries: list[str], *, retriever: RetrieverKind | str | None = None, depth: int | None = None
    ) -> list[list[Hit]]:
        """One ranked list per query, at most ``depth`` hits each (default ``settings.depth``)."""
        s = self.settings
        kind = RetrieverKind(retriever or s.retriever)
        depth = depth or s.depth
        if not queries:
            return []
        if kind == RetrieverKind.bm25:
            return self.bm25.search(queries, depth)
        if self.dense is None:
            raise ConfigError(
                f"retriever {kind.value!r} needs a dense index, but this index is BM25-only. "
                "Fix: use --retriever bm25, or rebuild the index with embeddings"
            )
        dense_lists = self.dense.search(self.encode(queries), depth)
        if kind == RetrieverKind.dense:
            return dense_lists
        sparse_lists = self.bm25.search(queries, depth)
        weights = (s.bm25_weight, s.dense_weight)
        fused = []
        for sparse, dense in zip(sparse_lists, dense_lists):
            if s.fusion == Fusion.rrf:
                fused.append(rrf([sparse, dense], rrf_k=s.rrf_k, weights=weights)[:depth])
            else:
                fused.append(weighted_sum([sparse, dense], weights=weights)[:depth])
        return fused
