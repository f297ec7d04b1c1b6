"""Mine closed path rules from a :class:`~rulerag.kg.FactTable` (AMIE-style static, TLogic-style temporal).

Rules have the head ``h(X,Y)`` and a body of one or two atoms, each in either direction::

    h(X,Y) <- b(X,Y)                  h(X,Y) <- b(Y,X)           (length 1)
    h(X,Y) <- b1(X,Z), b2(Z,Y)        with b1(Z,X) / b2(Y,Z) too (length 2)

Static mining skips the tautology ``h(X,Y) <- h(X,Y)``; temporal mining keeps it as the
*recurrence* rule (an earlier ``h(x,y,t1)`` predicts ``h(x,y,t)``), TLogic's most productive
rule on event KGs.

Conventions shared by both modes: facts ``r(x,x)`` (self-loops) are ignored; duplicate facts count
once; and, as in AMIE and AnyBURL, different variables bind different entities, so a body pair with
``x == y`` (e.g. the path ``x -r-> z <-r- x``) is never counted.

**Static** (``kg.temporal`` false, or ``MineConfig(temporal=False)``); all counts are over distinct
``(x, y)`` entity pairs:

- ``support``         = #pairs where the body and ``h(x,y)`` hold
- ``confidence``      = support / #pairs where the body holds (AMIE's standard confidence)
- ``pca_confidence``  = support / #body pairs whose ``x`` has some ``h(x, y')`` fact
- ``head_coverage``   = support / #distinct ``h`` pairs

**Temporal** (TLogic-style): a body grounding must be time-ordered and end before the head fact.
A length-1 grounding of ``h(x,y,t)`` is a fact ``b(x,y,t1)``; a length-2 grounding is
``b1(x,z,t1), b2(z,y,t2)`` with ``t1 <= t2``. With ``strict=True`` (default) the last body time
must be strictly earlier than the head time (``t1 < t`` resp. ``t2 < t``): a body fact dated on or
after the head's date never counts. ``strict=False`` also accepts body facts dated on the head's date.
For a pair ``(x,y)`` let ``t_b(x,y)`` be the earliest time at which the body is complete (the
earliest ``t1``, resp. the smallest ``t2`` over all time-ordered paths). Then:

- ``support``         = #head facts ``h(x,y,t)`` (distinct quadruples) with ``t > t_b(x,y)``
  (``>=`` when not strict), i.e. with at least one valid body grounding
- ``confidence``      = #body pairs ``(x,y)`` followed by some head fact ``h(x,y,t)``,
  ``t > t_b(x,y)`` / #body pairs ``(x,y)`` (pairs with at least one time-ordered grounding).
  This is TLogic's "body instances followed by the head" ratio, computed exactly instead of sampled.
- ``head_coverage``   = support / #distinct ``h`` facts; ``pca_confidence`` is ``None``.

Algorithm. Support is computed head-first: for every distinct head pair ``(x,y)`` the miner
enumerates the length-2 paths ``x - z - y`` from the lower-degree end (and the direct edges for
length 1), in vectorised chunks, and counts ``(head, b1, b2)`` triples once per pair. Only the
``(b1, b2)`` body pairs that reach ``min_support`` / ``min_head_coverage`` for some head are then
measured: statically with one sparse product ``B1 @ B2`` (scipy CSR, computed in row blocks, reused
for every head), skipped outright when a cheap lower bound on its size already pushes the
confidence below ``min_confidence``; temporally by a vectorised join of ``b1`` and ``b2`` edges on
``z`` that keeps paths with ``min t1 <= max t2``.

Example:
    >>> from rulerag.kg import FactTable
    >>> kg = FactTable.from_triples([("a", "born_in", "n"), ("a", "citizen_of", "n"),
    ...                              ("b", "born_in", "m"), ("b", "citizen_of", "m")])
    >>> [(r.datalog, r.support, r.confidence) for r in mine_rules(kg, MineConfig(max_length=1))]
    [('born_in(X,Y) <- citizen_of(X,Y)', 2, 1.0), ('citizen_of(X,Y) <- born_in(X,Y)', 2, 1.0)]
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rulerag.kg.facts import FactTable
from rulerag.rules.model import Atom, InvalidRule, Rule
from rulerag.rules.parse import save_rules

log = logging.getLogger(__name__)

__all__ = ["MineConfig", "mine_rules", "mine_to_file"]


@dataclass(frozen=True)
class MineConfig:
    """Search space and thresholds of :func:`mine_rules`.

    A rule is kept when ``support >= min_support``, ``head_coverage >= min_head_coverage``,
    ``confidence >= min_confidence`` and at least ``min_pairs`` distinct ``(x, y)`` pairs support it
    (for static rules that is the support itself; temporal support counts head facts, so without it
    one pair with many dated head facts could carry a rule on its own); then the best
    ``max_rules_per_head`` per head relation are returned (``None`` keeps all), chosen by
    ``rank_by``: ``"support"`` (default; then confidence) or ``"confidence"`` (then support). Raw
    confidence favours rules with rare bodies: on ICEWS14 it crowded the recurrence rule out of the
    cap for the most frequent relations, and the reasoner's EM on 400 RuleQA-I questions was 11.5
    with the confidence cap vs 20.8 with the support cap (18.5 uncapped). Within a head, the
    returned rules are sorted by confidence either way.

    ``temporal``: ``None`` mines temporal rules exactly when the table has times; ``False`` mines
    static rules from a temporal table (times ignored). ``strict`` (temporal only): body facts must
    be dated strictly before the head fact; ``False`` also admits the same date.
    ``head_relations``: mine only rules for these heads (bodies may use any relation).
    ``chunk_rows``: working-set size of the vectorised joins (rows of int64; memory ~ 100 B/row).
    """

    max_length: int = 2
    min_support: int = 2
    min_head_coverage: float = 0.01
    min_confidence: float = 0.1
    min_pairs: int = 2
    max_rules_per_head: int | None = 50
    rank_by: str = "support"
    temporal: bool | None = None
    strict: bool = True
    head_relations: Sequence[str] | None = None
    chunk_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_length not in (1, 2):
            raise ValueError(f"max_length must be 1 or 2, got {self.max_length!r}. Fix: use 1 or 2")
        if isinstance(self.min_support, bool) or not isinstance(self.min_support, int) or self.min_support < 1:
            raise ValueError(f"min_support must be an integer >= 1, got {self.min_support!r}. Fix: e.g. 2")
        if isinstance(self.min_pairs, bool) or not isinstance(self.min_pairs, int) or self.min_pairs < 1:
            raise ValueError(f"min_pairs must be an integer >= 1, got {self.min_pairs!r}. Fix: e.g. 2")
        for name in ("min_head_coverage", "min_confidence"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}. Fix: e.g. 0.01 or 0.1")
        if self.rank_by not in ("support", "confidence"):
            raise ValueError(f"rank_by must be 'support' or 'confidence', got {self.rank_by!r}")
        if self.max_rules_per_head is not None and self.max_rules_per_head < 1:
            raise ValueError(f"max_rules_per_head must be >= 1 or None, got {self.max_rules_per_head!r}")
        if self.chunk_rows < 1000:
            raise ValueError(f"chunk_rows must be >= 1000, got {self.chunk_rows!r}")
        if isinstance(self.head_relations, str):
            object.__setattr__(self, "head_relations", (self.head_relations,))


# --- vectorised helpers ----------------------------------------------------------------------


def _expand(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[starts[k], starts[k]+counts[k])``: (owner k of each element, element index)."""
    counts = counts.astype(np.int64, copy=False)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(starts.astype(np.int64, copy=False), counts) + offsets


def _find(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` in the unique sorted array and a mask of the ones found."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == keys


def _first_per_key(keys: np.ndarray, values: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Unique keys and, if given, the minimum value per key."""
    if values is None:
        return np.unique(keys), None
    order = np.lexsort((values, keys))
    keys, values = keys[order], values[order]
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first], values[first]


class _Graph:
    """Distinct directed edges ``(a, b, d)``: direction ``d < R`` is ``r_d(a,b)``, ``d >= R`` is
    ``r_{d-R}(b,a)`` (traversing a fact backwards). Sorted by ``(a, b, d)``. Temporal graphs also
    keep each edge's sorted list of times."""

    def __init__(self, kg: FactTable, temporal: bool) -> None:
        n, r = kg.num_entities, kg.num_relations
        self.N, self.R, self.D = n, r, 2 * r
        s = kg.subjects.astype(np.int64)
        rel = kg.relation_ids.astype(np.int64)
        o = kg.objects.astype(np.int64)
        keep = s != o
        s, rel, o = s[keep], rel[keep], o[keep]
        a = np.concatenate([s, o])
        b = np.concatenate([o, s])
        d = np.concatenate([rel, rel + r])
        key = (a * n + b) * self.D + d
        self.temporal = temporal
        if temporal:
            t = np.concatenate([kg.times[keep], kg.times[keep]]).astype(np.int64)
            order = np.lexsort((t, key))
            key, t = key[order], t[order]
            distinct = np.ones(len(key), bool)
            distinct[1:] = (key[1:] != key[:-1]) | (t[1:] != t[:-1])
            key, t = key[distinct], t[distinct]
            new_group = np.ones(len(key), bool)
            new_group[1:] = key[1:] != key[:-1]
            self.ostart = np.flatnonzero(new_group)
            self.oend = np.append(self.ostart[1:], len(key)) if len(key) else self.ostart
            gkey = key[self.ostart]
            self.otimes = t
            self.t0 = int(t.min()) if len(t) else 0
            self.span = (int(t.max()) - self.t0 + 2) if len(t) else 2
            group_of = np.cumsum(new_group) - 1
            self.okey = group_of * self.span + (t - self.t0)  # sorted: by group, then time
            self.tmin = t[self.ostart]
            self.tmax = t[self.oend - 1]
        else:
            gkey = np.unique(key)
        self.d = gkey % self.D
        ab = gkey // self.D
        self.a = ab // n
        self.b = ab % n
        self.ab = ab
        new_pair = np.ones(len(ab), bool)
        new_pair[1:] = ab[1:] != ab[:-1]
        self.pstart = np.flatnonzero(new_pair)
        self.pkey = ab[self.pstart]
        self.pcnt = np.diff(np.append(self.pstart, len(ab)))
        self.astart = np.searchsorted(self.a, np.arange(n + 1))
        self.deg = np.diff(self.astart)

    def __len__(self) -> int:
        return len(self.d)

    def inv(self, d: np.ndarray) -> np.ndarray:
        return np.where(d < self.R, d + self.R, d - self.R)

    def lookup(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All edges ``(a[k], b[k], *)``: (k per edge, edge index)."""
        pos, found = _find(self.pkey, a * self.N + b)
        idx = np.flatnonzero(found)
        owner, edges = _expand(self.pstart[pos[idx]], self.pcnt[pos[idx]])
        return idx[owner], edges

    def next_time(self, g: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For edge ``g[k]``: its earliest time ``>= t[k]`` and whether there is one."""
        pos = np.searchsorted(self.okey, g * self.span + (t - self.t0))
        ok = pos < self.oend[g]
        return self.otimes[np.minimum(pos, len(self.otimes) - 1)], ok

    def count_after(self, g: np.ndarray, t: np.ndarray, strict: bool) -> np.ndarray:
        """For edge ``g[k]``: how many of its times are ``> t[k]`` (``>=`` if not strict)."""
        pos = np.searchsorted(self.okey, g * self.span + (t - self.t0), side="right" if strict else "left")
        return self.oend[g] - pos


class _Heads:
    """Distinct head pairs ``(x, y)`` (forward edges of the head relations), each with its heads."""

    def __init__(self, g: _Graph, head_ids: np.ndarray) -> None:
        wanted = np.zeros(g.D, bool)
        wanted[head_ids] = True
        self.edges = np.flatnonzero(wanted[g.d])  # forward edges (d < R) of the chosen heads
        ab = g.ab[self.edges]
        new_pair = np.ones(len(ab), bool)
        new_pair[1:] = ab[1:] != ab[:-1]
        self.hstart = np.flatnonzero(new_pair)  # into self.edges
        self.hcnt = np.diff(np.append(self.hstart, len(ab)))
        self.x = g.a[self.edges[self.hstart]]
        self.y = g.b[self.edges[self.hstart]]

    def __len__(self) -> int:
        return len(self.x)


# --- step 1: support by head-first path enumeration ------------------------------------------


def _paths(g: _Graph, px: np.ndarray, py: np.ndarray, length: int, budget: int):
    """Body groundings of length 1 or 2 between each ``(px[k], py[k])``, in pieces of about
    ``budget`` rows.

    Yields ``(k, d1, d2, c)`` with ``d2 = D`` for length 1 and ``c`` the earliest completion time
    (temporal) or ``None``; rows are not yet de-duplicated over intermediate entities.
    """
    if length == 1:
        k, e = g.lookup(px, py)
        yield k, g.d[e], np.full(len(k), g.D, np.int64), (g.tmin[e] if g.temporal else None)
        return
    from_x = g.deg[px] <= g.deg[py]
    for side_x in (True, False):
        # x side: edges (x, z, d1), then the edges (z, y, d2) of each.
        # y side: edges (y, z, e) = (z, y, inv e) (same times), then the edges (x, z, d1) of each.
        sel = np.flatnonzero(from_x if side_x else ~from_x)
        near, far = (px, py) if side_x else (py, px)
        own, e_near = _expand(g.astart[near[sel]], g.deg[near[sel]])
        k = sel[own]
        z = g.b[e_near]
        ok = z != far[k]
        k, e_near, z = k[ok], e_near[ok], z[ok]
        pos, found = _find(g.pkey, (z * g.N + far[k]) if side_x else (far[k] * g.N + z))
        idx = np.flatnonzero(found)
        k, e_near, pos = k[idx], e_near[idx], pos[idx]
        cnt = g.pcnt[pos]
        for lo, hi in _chunks(cnt, budget):
            own, e_far = _expand(g.pstart[pos[lo:hi]], cnt[lo:hi])
            kk, en = k[lo + own], e_near[lo + own]
            e1, e2 = (en, e_far) if side_x else (e_far, en)
            d2 = g.d[e2] if side_x else g.inv(g.d[e2])
            c = None
            if g.temporal:  # b2's times are those of edge e2 (an edge and its reverse share times)
                c, ok = g.next_time(e2, g.tmin[e1])
                kk, e1, d2, c = kk[ok], e1[ok], d2[ok], c[ok]
            yield kk, g.d[e1], d2, c


def _chunks(weights: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive ranges whose weights sum to about ``budget`` (at least one item each)."""
    cum = np.cumsum(weights, dtype=np.int64)
    start, n = 0, len(weights)
    base = 0
    while start < n:
        end = int(np.searchsorted(cum, base + budget, side="right"))
        end = max(end, start + 1)
        yield start, end
        base = int(cum[end - 1])
        start = end


def _count_support(g: _Graph, heads: _Heads, cfg: MineConfig, progress: bool):
    """Per ``(h, d1, d2)``: support and (temporal) the number of body pairs followed by the head."""
    D1 = g.D + 1
    keys_acc, sup_acc, succ_acc = [], [], []
    budget = cfg.chunk_rows
    if cfg.max_length >= 2:
        weights = np.minimum(g.deg[heads.x], g.deg[heads.y]).astype(np.int64) + 1
    else:
        weights = np.ones(len(heads), np.int64)
    bar = _bar(progress, total=len(heads), desc="support", unit="pair")
    for lo, hi in _chunks(weights, budget):
        px, py = heads.x[lo:hi], heads.y[lo:hi]
        for length in range(1, cfg.max_length + 1):
            pieces = [_first_per_key((k * g.D + d1) * D1 + d2, c) for k, d1, d2, c in _paths(g, px, py, length, budget)]
            if not pieces:
                continue
            pkey, c = _first_per_key(np.concatenate([p[0] for p in pieces]),  # one row per (pair, body)
                                     np.concatenate([p[1] for p in pieces]) if g.temporal else None)
            del pieces
            k_all = pkey // (g.D * D1)
            for lo2, hi2 in _chunks(heads.hcnt[lo + k_all], budget):
                k = k_all[lo2:hi2]
                own, he = _expand(heads.hstart[lo + k], heads.hcnt[lo + k])
                edge = heads.edges[he]
                h = g.d[edge]
                body = pkey[lo2:hi2][own] % (g.D * D1)
                if length == 1 and not g.temporal:
                    keep = body // D1 != h  # static: h(X,Y) <- h(X,Y) is a tautology; temporal: recurrence
                    own, edge, h, body = own[keep], edge[keep], h[keep], body[keep]
                hkey = h * (g.D * D1) + body
                if g.temporal:
                    cc = c[lo2:hi2][own]
                    sup = g.count_after(edge, cc, cfg.strict)
                    succ = (g.tmax[edge] > cc) if cfg.strict else (g.tmax[edge] >= cc)
                    keep = sup > 0
                    uk, inv = np.unique(hkey[keep], return_inverse=True)
                    keys_acc.append(uk)
                    sup_acc.append(np.bincount(inv, weights=sup[keep]).astype(np.int64))
                    succ_acc.append(np.bincount(inv, weights=succ[keep]).astype(np.int64))
                else:
                    uk, cnt = np.unique(hkey, return_counts=True)
                    keys_acc.append(uk)
                    sup_acc.append(cnt)
        if len(keys_acc) > 64:  # keep the partial counts compact
            keys_acc, sup_acc, succ_acc = _merge_counts(keys_acc, sup_acc, succ_acc, g.temporal)
        bar.update(hi - lo)
    bar.close()
    if not keys_acc:
        z = np.zeros(0, np.int64)
        return z, z, z
    keys_acc, sup_acc, succ_acc = _merge_counts(keys_acc, sup_acc, succ_acc, g.temporal)
    return keys_acc[0], sup_acc[0], (succ_acc[0] if g.temporal else sup_acc[0])


def _merge_counts(keys_acc, sup_acc, succ_acc, temporal: bool):
    uk, inv = np.unique(np.concatenate(keys_acc), return_inverse=True)
    sup = np.bincount(inv, weights=np.concatenate(sup_acc), minlength=len(uk)).astype(np.int64)
    succ = [np.bincount(inv, weights=np.concatenate(succ_acc), minlength=len(uk)).astype(np.int64)] if temporal else []
    return [uk], [sup], succ


# --- step 2: body sizes ----------------------------------------------------------------------


def _adjacency(g: _Graph):
    """CSR matrix (entity x entity) per direction, built lazily."""
    from scipy import sparse

    cache: dict[int, sparse.csr_matrix] = {}
    by_d = np.argsort(g.d, kind="stable")
    dstart = np.searchsorted(g.d[by_d], np.arange(g.D + 1))

    def get(d: int) -> sparse.csr_matrix:
        if d not in cache:
            idx = by_d[dstart[d] : dstart[d + 1]]  # sorted by (a, b) within d
            indptr = np.searchsorted(g.a[idx], np.arange(g.N + 1)).astype(np.int32)
            data = np.ones(len(idx), np.float32)
            cache[d] = sparse.csr_matrix((data, g.b[idx].astype(np.int32), indptr), shape=(g.N, g.N))
        return cache[d]

    return get, by_d, dstart


def _row_nnz_offdiag(m1, m2, max_flops: int) -> np.ndarray:
    """Per row x: #distinct y != x with (m1 @ m2)[x, y] > 0, in row blocks of bounded work."""
    row_flops = m1 @ np.diff(m2.indptr).astype(np.float64)
    out = np.zeros(m1.shape[0], np.int64)
    rows = np.flatnonzero(row_flops)
    if len(rows) == 0:
        return out
    for lo, hi in _chunks(row_flops[rows].astype(np.int64) + 1, max_flops):
        r0, r1 = int(rows[lo]), int(rows[hi - 1]) + 1
        prod = m1[r0:r1] @ m2
        nnz = np.diff(prod.indptr).astype(np.int64)
        diag = prod.diagonal(k=r0) if r0 < m1.shape[1] else np.zeros(0)
        nnz[: len(diag)] -= diag > 0
        out[r0:r1] = nnz
    return out


def _static_bodies(g: _Graph, cand: dict, cfg: MineConfig, progress: bool):
    """``cand``: {(d1, d2): [(h, support), ...]} -> {(h, d1, d2): (body, pca_body)}."""
    get, by_d, dstart = _adjacency(g)
    out = {}
    subj_mask = {}

    def mask(h: int) -> np.ndarray:
        if h not in subj_mask:
            m = np.zeros(g.N, bool)
            m[g.a[by_d[dstart[h] : dstart[h + 1]]]] = True
            subj_mask[h] = m
        return subj_mask[h]

    bar = _bar(progress, total=len(cand), desc="bodies", unit="body")
    skipped = 0
    for (d1, d2), hs in sorted(cand.items()):
        bar.update(1)
        if d2 == g.D:  # length 1: the edges of direction d1
            subj = g.a[by_d[dstart[d1] : dstart[d1 + 1]]]
            for h, _ in hs:
                out[(h, d1, d2)] = (len(subj), int(mask(h)[subj].sum()))
            continue
        m1, m2 = get(d1), get(d2)
        # Lower bound on #body pairs: all (x, y) through the busiest shared z.
        c1 = np.diff(get(g.inv(np.array([d1]))[0]).indptr)  # #x with b1(x, z), per z
        c2 = np.diff(m2.indptr)
        lower = int(np.max(c1 * c2 - np.minimum(c1, c2)))
        if max(s for _, s in hs) < cfg.min_confidence * lower:
            skipped += 1
            continue
        row_nnz = _row_nnz_offdiag(m1, m2, cfg.chunk_rows * 4)
        body = int(row_nnz.sum())
        for h, _ in hs:
            out[(h, d1, d2)] = (body, int(row_nnz[mask(h)].sum()))
    bar.close()
    log.debug("skipped %d of %d length-2 bodies by the confidence bound", skipped, len(cand))
    return out


def _temporal_bodies(g: _Graph, cand: dict, cfg: MineConfig, progress: bool):
    """{(d1, d2): [...]} -> {(d1, d2): #pairs (x, y), x != y, with a time-ordered body grounding}."""
    by_d = np.argsort(g.d, kind="stable")
    dstart = np.searchsorted(g.d[by_d], np.arange(g.D + 1))
    out = {}
    by_first: dict[int, list[int]] = {}
    for d1, d2 in cand:
        by_first.setdefault(d1, []).append(d2)
    bar = _bar(progress, total=len(cand), desc="bodies", unit="body")
    for d1, d2s in sorted(by_first.items()):
        e1 = by_d[dstart[d1] : dstart[d1 + 1]]  # (x, z) edges of b1, sorted by x
        if g.D in d2s:
            out[(d1, g.D)] = len(e1)
            bar.update(1)
        # b1 reversed: edges (z, x) of inv(d1) share times; group them by z
        inv1 = int(g.inv(np.array([d1]))[0])
        r1 = by_d[dstart[inv1] : dstart[inv1 + 1]]  # sorted by z
        z1 = g.a[r1]
        zstart = np.searchsorted(z1, np.arange(g.N + 1))
        for d2 in sorted(x for x in d2s if x != g.D):
            e2 = by_d[dstart[d2] : dstart[d2 + 1]]  # (z, y) edges of b2, sorted by z
            z = g.a[e2]
            cnt = zstart[z + 1] - zstart[z]
            seen = []
            for lo, hi in _chunks(cnt.astype(np.int64) + 1, cfg.chunk_rows):
                own, r = _expand(zstart[z[lo:hi]], cnt[lo:hi])
                e = e2[lo + own]
                ok = (g.tmin[r1[r]] <= g.tmax[e])
                x, y = g.b[r1[r]][ok], g.b[e][ok]
                ok = x != y
                seen.append(np.unique(x[ok] * g.N + y[ok]))
            out[(d1, d2)] = len(np.unique(np.concatenate(seen))) if seen else 0
            bar.update(1)
    bar.close()
    return out


# --- assembly --------------------------------------------------------------------------------


def _bar(progress: bool, **kw):
    from tqdm.auto import tqdm

    return tqdm(disable=not progress, leave=False, **kw)


def _atom(g: _Graph, names: list[str], d: int, u: str, v: str) -> Atom:
    return Atom(names[d], u, v) if d < g.R else Atom(names[d - g.R], v, u)


def mine_rules(kg: FactTable, config: MineConfig | None = None, *, progress: bool = False) -> list[Rule]:
    """Mine path rules of length 1..``config.max_length`` from ``kg``.

    Static or temporal measures (see the module docstring) follow ``kg.temporal`` unless
    ``config.temporal`` says otherwise. Returns rules sorted by head relation name, then confidence
    (descending), support (descending) and text. ``progress`` shows tqdm bars.

    Example:
        >>> from rulerag.kg import FactTable
        >>> kg = FactTable.from_triples([("a", "r", "b", 1), ("a", "s", "b", 2),
        ...                              ("c", "r", "d", 3), ("c", "s", "d", 3)], time_unit="year")
        >>> [(r.datalog, r.support, r.confidence) for r in mine_rules(kg, MineConfig(min_support=1, min_pairs=1))]
        [('s(X,Y) <- r(X,Y)', 1, 0.5)]
    """
    cfg = config or MineConfig()
    temporal = kg.temporal if cfg.temporal is None else bool(cfg.temporal and kg.temporal)
    if cfg.temporal and not kg.temporal:
        raise ValueError("MineConfig(temporal=True) needs a FactTable with times. Fix: leave temporal=None")
    names = list(kg.relations)
    if cfg.head_relations is not None:
        unknown = [r for r in cfg.head_relations if r not in names]
        if unknown:
            raise ValueError(f"unknown head relation(s) {unknown[:5]}. Fix: use names from kg.relations")
        head_ids = np.array(sorted({names.index(r) for r in cfg.head_relations}), np.int64)
    else:
        head_ids = np.arange(kg.num_relations, dtype=np.int64)
    if not np.any(kg.subjects != kg.objects) or len(head_ids) == 0:
        return []  # no facts, or only self-loops

    g = _Graph(kg, temporal)
    heads = _Heads(g, head_ids)
    D1 = g.D + 1
    if temporal:
        n_head = np.bincount(g.d[heads.edges], weights=g.oend[heads.edges] - g.ostart[heads.edges],
                             minlength=g.D).astype(np.int64)
    else:
        n_head = np.bincount(g.d[heads.edges], minlength=g.D).astype(np.int64)

    keys, sup, succ = _count_support(g, heads, cfg, progress)
    h_of = keys // (g.D * D1)
    need = np.maximum(cfg.min_support, np.ceil(cfg.min_head_coverage * n_head[h_of] - 1e-9)).astype(np.int64)
    keep = (sup >= need) & (succ >= cfg.min_pairs)
    keys, sup, succ, h_of = keys[keep], sup[keep], succ[keep], h_of[keep]
    d1s = (keys // D1) % g.D
    d2s = keys % D1
    cand: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for h, d1, d2, s, w in zip(h_of.tolist(), d1s.tolist(), d2s.tolist(), sup.tolist(), succ.tolist()):
        cand.setdefault((d1, d2), []).append((h, w))
    log.info("%d candidate rules over %d bodies reach the support thresholds", len(keys), len(cand))

    if temporal:
        bodies = _temporal_bodies(g, cand, cfg, progress)
    else:
        bodies = _static_bodies(g, cand, cfg, progress)

    per_head: dict[int, list[Rule]] = {}
    bad_names: set[str] = set()
    for h, d1, d2, s, w in zip(h_of.tolist(), d1s.tolist(), d2s.tolist(), sup.tolist(), succ.tolist()):
        if temporal:
            body = bodies.get((d1, d2))
            if not body:
                continue
            conf, pca = w / body, None
        else:
            measured = bodies.get((h, d1, d2))
            if measured is None or measured[0] == 0:
                continue  # skipped by the confidence bound
            conf, pca = s / measured[0], (s / measured[1] if measured[1] else None)
        if conf < cfg.min_confidence:
            continue
        if d2 == g.D:
            body_atoms = (_atom(g, names, d1, "X", "Y"),)
        else:
            body_atoms = (_atom(g, names, d1, "X", "Z"), _atom(g, names, d2, "Z", "Y"))
        try:
            rule = Rule(Atom(names[h], "X", "Y"), body_atoms, confidence=min(conf, 1.0), support=int(s),
                        head_coverage=min(s / n_head[h], 1.0), pca_confidence=None if pca is None else min(pca, 1.0))
        except InvalidRule as exc:  # e.g. a relation name with '[' in it
            if str(exc) not in bad_names:
                log.warning("skipping rules that cannot be represented: %s", exc)
                bad_names.add(str(exc))
            continue
        per_head.setdefault(h, []).append(rule)

    rules: list[Rule] = []
    for h in sorted(per_head, key=lambda i: names[i]):
        ranked = sorted(per_head[h], key=lambda r: (-r.confidence, -r.support, r.datalog))
        if cfg.max_rules_per_head and len(ranked) > cfg.max_rules_per_head:
            if cfg.rank_by == "support":
                keep = set(map(id, sorted(ranked, key=lambda r: (-r.support, -r.confidence, r.datalog))[: cfg.max_rules_per_head]))
                ranked = [r for r in ranked if id(r) in keep]
            else:
                ranked = ranked[: cfg.max_rules_per_head]
        rules.extend(ranked)
    return rules


def mine_to_file(kg: FactTable, out_path: str | Path, config: MineConfig | None = None, *,
                 progress: bool = False) -> int:
    """Mine rules and write them as JSONL (atomically, via :func:`~rulerag.rules.save_rules`).

    Returns the number of rules written. ``out_path`` must end in ``.jsonl``.
    """
    if Path(out_path).suffix.lower() not in (".jsonl", ".ndjson"):
        raise ValueError(f"{out_path}: rules are written as JSONL. Fix: use a path ending in .jsonl")
    return save_rules(mine_rules(kg, config, progress=progress), out_path)
