"""First-stage search over a loaded index: BM25, dense, or the two fused (hybrid).

Example:
    >>> searcher = Searcher(index, encoder, RetrievalSettings())         # doctest: +SKIP
    >>> hits = searcher.search_many(["Where was Alice Marlow born?"])[0]  # doctest: +SKIP
"""

from __future__ import annotations

from rulerag.config import Fusion, RetrievalSettings, RetrieverKind
from rulerag.embedding import TextEncoder
from rulerag.errors import ConfigError
from rulerag.retrieval.bm25 import BM25Index
from rulerag.retrieval.dense import DenseIndex
from rulerag.retrieval.fusion import rrf, weighted_sum
from rulerag.retrieval.hits import Hit


class Searcher:
    """Runs batches of queries through BM25, FAISS or both, returning ranked :class:`Hit` lists."""

    def __init__(self, bm25: BM25Index, dense: DenseIndex | None, encoder: TextEncoder, settings: RetrievalSettings | None = None) -> None:
        self.bm25 = bm25
        self.dense = dense
        self.encoder = encoder
        self.settings = settings or RetrievalSettings()

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
        dense_lists = self.dense.search(self.encoder.encode(queries), depth)
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
