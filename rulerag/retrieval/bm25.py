"""Sparse retrieval with bm25s (Lucene BM25 variant) over our shared tokeniser.

Example:
    >>> idx = BM25Index.build(["Alice born in Tarvik.", "Tarvik located in Norland."])
    >>> [h.pos for h in idx.search(["where was alice born"], depth=2)[0]]
    [0]
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from rulerag.retrieval.hits import Hit
from rulerag.text import tokenize

logging.getLogger("bm25s").setLevel(logging.WARNING)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of the ``k`` best non-zero scores (BM25's are never negative), by score (highest first), ties by
    the lower position: a function of the scores alone, unlike a partial sort's order of ties.
    Reads only the documents that scored: a query touches a small share of a large corpus.

    Example:
        >>> top_k(np.array([0.0, 2.0, 1.0, 2.0, 0.5], dtype=np.float32), 3)
        (array([1, 3, 2]), array([2., 2., 1.], dtype=float32))
    """
    if k <= 0:
        return np.empty(0, dtype=np.int64), scores[:0]
    # a boolean mask first: numpy finds the non-zero entries of a bool array several times faster
    # than those of a float one (0.4 vs 2-4 ms over 607k documents)
    mask = scores > 0  # BM25 scores are >= 0
    nonzero = int(np.count_nonzero(mask))
    if nonzero <= k:
        scored = np.flatnonzero(mask)
        order = np.lexsort((scored, -scores[scored]))
        return scored[order], scores[scored[order]]
    # the k-th best score, found among the scored documents only when they are few (a partial sort
    # of a mostly-zero array is slow); a date or a common word can make every document score.
    # Selecting the k-th smallest of the negated scores is the same value, and fast where many
    # documents tie (a partition for the k-th largest degrades there: 2.6 vs 0.5 ms on 277k)
    if nonzero < len(scores) // 2:
        scored = np.flatnonzero(mask)
        values = scores[scored]
        cut = -np.partition(-values, k - 1)[k - 1]
        above, tied = scored[values > cut], scored[values == cut]
    else:
        cut = -np.partition(-scores, k - 1)[k - 1]
        above, tied = np.flatnonzero(scores > cut), np.flatnonzero(scores == cut)
    above = above[np.lexsort((above, -scores[above]))]  # fewer than k: sort them
    positions = np.concatenate([above, tied[: k - len(above)]])  # ties at the cut, in corpus order
    return positions, scores[positions]


#: A query term in at least this share of the documents is "common": :meth:`BM25Index.search`
#: scores it only for the documents holding one of the query's other terms where a bound shows
#: that exact, and adds it as a dense column (below) rather than by scattering its postings.
COMMON_TERM_SHARE = 1 / 20
#: Common terms whose scores are kept as a dense float column (one per document: adding it is a
#: vector add, taking candidates' scores a gather); at most this many per index, built on first use.
MAX_DENSE_TERMS = 32


class BM25Index:
    """A BM25 index over document texts. Documents with score 0 are never returned; documents
    with equal scores come in corpus order (:func:`top_k`)."""

    def __init__(self, model: bm25s.BM25, num_docs: int) -> None:
        self.model = model
        self.num_docs = num_docs
        self._bounds: np.ndarray | None = None  # per term: its largest score (None: not computed yet)
        self._dense: dict[int, np.ndarray] = {}  # common term -> its score in every document

    @classmethod
    def build(cls, texts: list[str], *, k1: float = 1.5, b: float = 0.75, method: str = "lucene", progress: bool = False) -> BM25Index:
        """Tokenise with :func:`rulerag.text.tokenize` and index with bm25s. ``method`` is a bm25s
        variant (``lucene``, the one stored indexes use; ``robertson``, ``atire``, ``bm25l``, ``bm25+``)."""
        model = bm25s.BM25(k1=k1, b=b, method=method)
        model.index([tokenize(t) or ["<empty>"] for t in texts], show_progress=progress)
        return cls(model, len(texts))

    def _term_ids(self, query: str) -> list[int]:
        vocab = self.model.vocab_dict
        return [vocab[tok] for tok in (tokenize(query) or ["<empty>"]) if tok in vocab]

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every document for ``query`` (float32, as bm25s computes them: each
        query term's precomputed column added in turn; a term the corpus lacks adds nothing)."""
        return self._score_terms(self._term_ids(query))

    def _score_terms(self, ids: Sequence[int]) -> np.ndarray:
        if self.model.nonoccurrence_array is not None:  # bm25l / bm25+: bm25s adds a per-term constant
            return self.model.get_scores_from_ids(list(ids))
        return self._add_terms(np.zeros(self.num_docs, dtype=np.dtype(self.model.dtype)), ids)

    def _dense_column(self, term: int) -> np.ndarray | None:
        """A common term's score in every document (0 where absent), built once; None for a rare
        term or when :data:`MAX_DENSE_TERMS` columns exist. Adding 0.0 leaves a score unchanged, so
        adding the column gives the same sums as adding the postings."""
        column = self._dense.get(term)
        if column is None:
            indptr = self.model.scores["indptr"]
            start, end = int(indptr[term]), int(indptr[term + 1])
            if end - start < COMMON_TERM_SHARE * self.num_docs or len(self._dense) >= MAX_DENSE_TERMS:
                return None
            column = np.zeros(self.num_docs, dtype=np.dtype(self.model.dtype))
            column[self.model.scores["indices"][start:end]] = self.model.scores["data"][start:end]
            self._dense[term] = column
        return column

    def _add_terms(self, out: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        data, indices, indptr = self.model.scores["data"], self.model.scores["indices"], self.model.scores["indptr"]
        for term in ids:
            column = self._dense_column(term)
            if column is not None:
                out += column
                continue
            start, end = int(indptr[term]), int(indptr[term + 1])
            # a document occurs once per term column, so both give bm25s's sums bit for bit; for a term
            # in a large share of the corpus ufunc.at is the faster, for the rest a gather-add-scatter
            if end - start > self.num_docs // 4:
                np.add.at(out, indices[start:end], data[start:end])
            else:
                out[indices[start:end]] += data[start:end]
        return out

    def _term_bounds(self) -> np.ndarray | None:
        """Each term's largest score in any document, or None when pruning cannot apply (a per-term
        constant, or document ids not sorted within a term's column). Computed once."""
        if self._bounds is None:
            data, indices, indptr = self.model.scores["data"], self.model.scores["indices"], self.model.scores["indptr"]
            bounds = np.zeros(len(indptr) - 1, dtype=np.float64)
            starts = np.asarray(indptr[:-1])
            filled = np.asarray(indptr[1:]) > starts
            if filled.any():
                bounds[filled] = np.maximum.reduceat(np.asarray(data), starts[filled])
            steps = np.diff(np.asarray(indices).astype(np.int64))
            cuts = np.asarray(indptr[1:-1])
            steps[cuts[(cuts > 0) & (cuts < len(indices))] - 1] = 1  # from one column to the next is no step
            usable = self.model.nonoccurrence_array is None and bool(np.all(steps > 0))
            self._bounds = bounds if usable else np.empty(0)
        return self._bounds if len(self._bounds) else None

    def _pruned(self, ids: Sequence[int], k: int) -> list[Hit] | None:
        """The top ``k`` of a query with common terms (:data:`COMMON_TERM_SHARE`), scoring only the
        documents holding one of its other terms, or None where that cannot be shown exact.

        Exact by a bound (the MaxScore argument): a document without any of the other terms scores
        at most the sum of the common terms' largest scores; when the k-th best candidate scores
        more than that, no such document reaches the top k or ties at its cut. Candidates get every
        term's score added in query order, the same float additions as :meth:`scores`."""
        bounds = self._term_bounds()
        if bounds is None or not ids or k <= 0:
            return None
        data, indices, indptr = self.model.scores["data"], self.model.scores["indices"], self.model.scores["indptr"]
        ids_a = np.asarray(ids)
        common = (indptr[ids_a + 1] - indptr[ids_a]) >= COMMON_TERM_SHARE * self.num_docs
        if not common.any() or common.all():
            return None
        rare = sorted({int(t) for t in ids_a[~common]})
        if len(rare) == 1:  # a column's documents are sorted and distinct
            candidates = np.asarray(indices[indptr[rare[0]] : indptr[rare[0] + 1]])
        else:
            candidates = np.sort(np.concatenate([indices[indptr[t] : indptr[t + 1]] for t in rare]))
            candidates = candidates[np.concatenate(([True], candidates[1:] != candidates[:-1]))]
        if len(candidates) < k:
            return None
        scores = np.zeros(len(candidates), dtype=np.dtype(self.model.dtype))
        rare_set = set(rare)
        for term in ids:
            start, end = int(indptr[term]), int(indptr[term + 1])
            docs = indices[start:end]
            if term in rare_set:  # every document of the term is a candidate
                scores[np.searchsorted(candidates, docs)] += data[start:end]
                continue
            column = self._dense_column(term)
            if column is not None:
                scores += column[candidates]
            else:
                at = np.minimum(np.searchsorted(docs, candidates), len(docs) - 1)
                held = docs[at] == candidates
                scores[held] += data[start:end][at[held]]
        positions, values = top_k(scores, k)
        ceiling = float(bounds[ids_a[common]].sum())  # what a document with only common terms can reach
        if len(values) < k or not float(values[-1]) > ceiling * (1 + 1e-5) + 1e-6:
            return None
        return [Hit(p, s) for p, s in zip(candidates[positions].tolist(), values.tolist())]

    def search(self, queries: list[str], depth: int) -> list[list[Hit]]:
        """Top ``depth`` hits per query (fewer when fewer documents share a term), best first, ties
        in corpus order.

        A query with common terms (in at least :data:`COMMON_TERM_SHARE` of the documents) and
        others is first scored only over the documents holding one of the others (:meth:`_pruned`),
        which a bound shows exact; where it cannot, every document is scored.

        Queries of one call share work: a query whose terms begin with all the terms of another
        (a rule-guided query is the question followed by the rule's words) starts from that
        query's score vector and adds only its own further terms, the same additions in the same
        order, so every score is bit for bit the one it gets alone; a repeated query is scored once.
        """
        if not queries:
            return []
        k = min(depth, self.num_docs)
        terms = [tuple(self._term_ids(q)) for q in queries]
        if self.model.nonoccurrence_array is not None:  # a per-term constant: no prefix to share
            return [self._hits(self._score_terms(t), k) for t in terms]
        out: list[list[Hit] | None] = [None] * len(queries)
        first = {}  # the terms of a query -> the first query with them (those pruning could not do)
        seen: set[tuple[int, ...]] = set()
        for i, t in enumerate(terms):
            if t not in seen:
                seen.add(t)
                out[i] = self._pruned(t, k)
                if out[i] is None:
                    first[t] = i
        source: dict[int, int] = {}  # query -> the query whose terms are its longest proper prefix
        for t, i in first.items():
            for n in range(len(t) - 1, 0, -1):
                j = first.get(t[:n])
                if j is not None:
                    source[i] = j
                    break
        users = Counter(source.values())
        vectors: dict[int, np.ndarray] = {}  # score vectors a longer query still starts from
        for i in sorted(first.values(), key=lambda i: len(terms[i])):  # a prefix before the queries that extend it
            j = source.get(i)
            if j is None:
                scores = self._score_terms(terms[i])
            else:
                scores = self._add_terms(vectors[j].copy(), terms[i][len(terms[j]):])
                users[j] -= 1
                if not users[j]:
                    del vectors[j]
            if users[i]:
                vectors[i] = scores
            out[i] = self._hits(scores, k)
        done = {terms[i]: hits for i, hits in enumerate(out) if hits is not None}
        return [done[t] for t in terms]

    @staticmethod
    def _hits(scores: np.ndarray, k: int) -> list[Hit]:
        positions, values = top_k(scores, k)
        return [Hit(p, s) for p, s in zip(positions.tolist(), values.tolist())]

    def save(self, directory: Path) -> None:
        self.model.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, num_docs: int, *, mmap: bool = False) -> BM25Index:
        model = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False, verbosity=0)
        return cls(model, num_docs)


# ------------------------------------------------------------------ sharded build (global statistics)
#
# A BM25 index built in shards (``rulerag index build --engine ray``) must score exactly as one built
# in one piece: every shard's scores use the corpus-wide document frequencies and average length.
# The steps below do the same arithmetic as bm25s (``method="lucene"``, float32 scores), vectorised,
# and name the vocabulary in sorted order, so the same corpus always gives byte-identical files.

EMPTY_TOKEN = "<empty>"  #: stands in for a document with no indexable token (as in :meth:`BM25Index.build`)


def document_tokens(text: str) -> list[str]:
    """The BM25 terms of one document: :func:`rulerag.text.tokenize`, or ``[EMPTY_TOKEN]``.

    Example:
        >>> document_tokens("Alice was born in Tarvik."), document_tokens("the of")
        (['alice', 'born', 'tarvik'], ['<empty>'])
    """
    return tokenize(text) or [EMPTY_TOKEN]


@dataclass
class BM25Stats:
    """Corpus statistics BM25 needs: document count, total length and document frequencies.

    Statistics of shards add up (:meth:`merge`) to those of the whole corpus.

    Example:
        >>> a = BM25Stats.from_tokens([["alice", "tarvik"], ["tarvik"]])
        >>> b = BM25Stats.from_tokens([["norland"]])
        >>> total = BM25Stats.merge([a, b])
        >>> total.num_docs, total.doc_freqs["tarvik"], float(total.avg_length)
        (3, 2, 1.3333333333333333)
    """

    num_docs: int
    total_length: int
    doc_freqs: dict[str, int]

    @classmethod
    def from_tokens(cls, token_lists: Sequence[Sequence[str]]) -> BM25Stats:
        """Statistics of tokenised documents (see :func:`document_tokens`)."""
        df: Counter[str] = Counter()
        total = 0
        for tokens in token_lists:
            df.update(set(tokens))
            total += len(tokens)
        return cls(len(token_lists), total, dict(df))

    @classmethod
    def merge(cls, parts: Iterable[BM25Stats]) -> BM25Stats:
        """The statistics of the concatenation of the parts' documents."""
        df: Counter[str] = Counter()
        n = total = 0
        for part in parts:
            df.update(part.doc_freqs)
            n += part.num_docs
            total += part.total_length
        return cls(n, total, dict(df))

    @property
    def avg_length(self) -> np.float64:
        """Mean document length in tokens (float64, as bm25s computes it)."""
        return np.float64(self.total_length) / self.num_docs

    def vocabulary(self) -> dict[str, int]:
        """Term -> column, terms in sorted order (deterministic across processes and machines)."""
        return {term: i for i, term in enumerate(sorted(self.doc_freqs))}

    def idf(self, vocab: dict[str, int]) -> np.ndarray:
        """Lucene idf ``log(1 + (N - df + 0.5) / (df + 0.5))`` per column, float32 (as bm25s)."""
        n = self.num_docs
        out = np.zeros(len(vocab), dtype=np.float32)
        for term, col in vocab.items():
            df = self.doc_freqs[term]
            out[col] = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return out


@dataclass
class BM25Entries:
    """The non-zero BM25 scores of a run of consecutive documents, sorted by (document, term)."""

    scores: np.ndarray  # float32
    docs: np.ndarray  # int64, corpus positions
    terms: np.ndarray  # int64, vocabulary columns


def score_entries(
    token_lists: Sequence[Sequence[str]],
    vocab: dict[str, int],
    idf: np.ndarray,
    avg_length: float,
    *,
    first_doc: int = 0,
    k1: float = 1.5,
    b: float = 0.75,
) -> BM25Entries:
    """BM25 scores (Lucene variant) of one shard's documents under the corpus-wide ``idf`` and
    ``avg_length``; documents are numbered from ``first_doc``.

    Example:
        >>> toks = [["alice", "tarvik"], ["tarvik", "tarvik"]]
        >>> stats = BM25Stats.from_tokens(toks); vocab = stats.vocabulary()
        >>> e = score_entries(toks[1:], vocab, stats.idf(vocab), stats.avg_length, first_doc=1)
        >>> e.docs.tolist(), e.terms.tolist()
        ([1], [1])
    """
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    flat = np.fromiter((vocab[tok] for tokens in token_lists for tok in tokens), dtype=np.int64, count=int(lengths.sum()))
    width = max(len(vocab), 1)
    keys, counts = np.unique(np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths) * width + flat, return_counts=True)
    docs, terms = keys // width, keys % width
    tf = counts.astype(np.float32)
    # the same float operations, in the same order and precision, as bm25s' lucene scorer
    tfc = tf / (k1 * ((1 - b) + b * lengths[docs] / np.float64(avg_length)) + tf)
    scores = (idf[terms] * tfc).astype(np.float32)
    return BM25Entries(scores, docs + first_doc, terms)


def bm25_from_entries(parts: Sequence[BM25Entries], vocab: dict[str, int], num_docs: int, *, k1: float = 1.5, b: float = 0.75) -> BM25Index:
    """Merge shards' entries (in corpus order) into one :class:`BM25Index`: the bm25s model and
    files of an index built in one piece (CSC matrix: float32 data, int32 rows, int64 pointers).

    Example:
        >>> toks = [["alice", "tarvik"], ["tarvik"]]
        >>> stats = BM25Stats.from_tokens(toks); vocab = stats.vocabulary(); idf = stats.idf(vocab)
        >>> parts = [score_entries(toks[:1], vocab, idf, stats.avg_length),
        ...          score_entries(toks[1:], vocab, idf, stats.avg_length, first_doc=1)]
        >>> [h.pos for h in bm25_from_entries(parts, vocab, 2).search(["alice"], depth=2)[0]]
        [0]
    """
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0, np.float32)
    docs = np.concatenate([p.docs for p in parts]) if parts else np.zeros(0, np.int64)
    terms = np.concatenate([p.terms for p in parts]) if parts else np.zeros(0, np.int64)
    order = np.argsort(terms, kind="stable")  # column-major; rows stay in corpus order within a column
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(np.bincount(terms, minlength=len(vocab)), out=indptr[1:])
    model = bm25s.BM25(k1=k1, b=b, method="lucene")
    model.scores = {
        "data": scores[order].astype(np.float32),
        "indices": docs[order].astype(np.int32),
        "indptr": indptr,
        "num_docs": num_docs,
    }
    full_vocab = dict(vocab)
    full_vocab.setdefault("", len(vocab))  # bm25s' empty-query token, last (create_empty_token)
    model.vocab_dict = full_vocab
    model.unique_token_ids_set = set(full_vocab.values())
    model.nonoccurrence_array = None
    return BM25Index(model, num_docs)
