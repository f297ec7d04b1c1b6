"""Combining ranked lists: reciprocal rank fusion, normalised weighted sum, round-robin.

Conventions (record them in reports, peers differ): ranks start at **1**; RRF score of a document
is ``sum_i w_i / (rrf_k + rank_i)`` over the lists that contain it, with ``rrf_k = 60`` by default
(Cormack et al., 2009). Weighted sum min-max normalises each list's scores to [0, 1] (a list whose
scores are all equal maps to 1), and a document missing from a list gets 0 from it.

Example:
    >>> from rulerag.retrieval.hits import Hit
    >>> a = [Hit(1, 9.0), Hit(2, 5.0)]
    >>> b = [Hit(2, 0.9), Hit(3, 0.8)]
    >>> [h.pos for h in rrf([a, b], rrf_k=60)]
    [2, 1, 3]
    >>> [h.pos for h in round_robin([a, b])]
    [1, 2, 3]
"""

from __future__ import annotations

from collections.abc import Sequence

from rulerag.retrieval.hits import Hit


def _weights(n: int, weights: Sequence[float] | None) -> Sequence[float]:
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} weights for {n} lists")
    return weights


def _ranked(scores: dict[int, float]) -> list[Hit]:
    # ties broken by first appearance (the dict's insertion order; the sort is stable), so results
    # are deterministic
    return [Hit(p, s) for p, s in sorted(scores.items(), key=lambda kv: -kv[1])]


def rrf(lists: Sequence[Sequence[Hit]], *, rrf_k: int = 60, weights: Sequence[float] | None = None) -> list[Hit]:
    """Reciprocal rank fusion of ranked lists (ranks from 1)."""
    ws = _weights(len(lists), weights)
    scores: dict[int, float] = {}
    get = scores.get
    for w, hits in zip(ws, lists):
        for rank, hit in enumerate(hits, start=1):
            pos = hit.pos
            scores[pos] = get(pos, 0.0) + w / (rrf_k + rank)
    return _ranked(scores)


def weighted_sum(lists: Sequence[Sequence[Hit]], *, weights: Sequence[float] | None = None) -> list[Hit]:
    """Weighted sum of per-list min-max normalised scores."""
    ws = _weights(len(lists), weights)
    scores: dict[int, float] = {}
    get = scores.get
    for w, hits in zip(ws, lists):
        if not hits:
            continue
        lo = min(h.score for h in hits)
        hi = max(h.score for h in hits)
        span = hi - lo
        for hit in hits:
            norm = (hit.score - lo) / span if span > 0 else 1.0
            scores[hit.pos] = get(hit.pos, 0.0) + w * norm
    return _ranked(scores)


def round_robin(lists: Sequence[Sequence[Hit]]) -> list[Hit]:
    """Interleave lists (rank 1 of each list in order, then rank 2, ...); a document keeps its
    first appearance. Scores are rank-based, ``1 / merged position``, since the lists' own scores
    are not comparable."""
    columns = [[h.pos for h in hits] for hits in lists]
    order: dict[int, None] = {}  # insertion-ordered set
    longest = max((len(c) for c in columns), default=0)
    for rank in range(longest):
        for col in columns:
            if rank < len(col):
                order.setdefault(col[rank])
    return [Hit(pos, 1.0 / i) for i, pos in enumerate(order, start=1)]
