"""Sparse retrieval with bm25s (Lucene BM25 variant) over our shared tokeniser.

Example:
    >>> idx = BM25Index.build(["Alice born in Tarvik.", "Tarvik located in Norland."])
    >>> [h.pos for h in idx.search(["where was alice born"], depth=2)[0]]
    [0]
"""

from __future__ import annotations

import logging
from pathlib import Path

import bm25s
import numpy as np

from rulerag.retrieval.hits import Hit
from rulerag.text import tokenize

logging.getLogger("bm25s").setLevel(logging.WARNING)


class BM25Index:
    """A BM25 index over document texts. Documents with score 0 are never returned."""

    def __init__(self, model: bm25s.BM25, num_docs: int) -> None:
        self.model = model
        self.num_docs = num_docs

    @classmethod
    def build(cls, texts: list[str], *, k1: float = 1.5, b: float = 0.75, progress: bool = False) -> BM25Index:
        """Tokenise with :func:`rulerag.text.tokenize` and index (bm25s, method ``lucene``)."""
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.index([tokenize(t) or ["<empty>"] for t in texts], show_progress=progress)
        return cls(model, len(texts))

    def search(self, queries: list[str], depth: int) -> list[list[Hit]]:
        """Top ``depth`` hits per query (fewer when fewer documents share a term)."""
        if not queries:
            return []
        k = min(depth, self.num_docs)
        tokens = [tokenize(q) or ["<empty>"] for q in queries]
        ids, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        out: list[list[Hit]] = []
        for row_ids, row_scores in zip(np.asarray(ids), np.asarray(scores)):
            out.append([Hit(int(i), float(s)) for i, s in zip(row_ids, row_scores) if s > 0])
        return out

    def save(self, directory: Path) -> None:
        self.model.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, num_docs: int, *, mmap: bool = False) -> BM25Index:
        model = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False, verbosity=0)
        return cls(model, num_docs)
