"""BM25 search reads only the documents a query touches: the same scores as bm25s, the k best
of them, ties in corpus order (a function of the scores alone)."""

from __future__ import annotations

import numpy as np
import pytest

from rulerag.retrieval.bm25 import BM25Index, top_k
from rulerag.text import tokenize


def corpus(n: int = 3000, seed: int = 0) -> list[str]:
    """KG-like facts: many documents of equal length share terms, so scores tie often."""
    rng = np.random.default_rng(seed)
    people = [f"person{i}" for i in range(300)]
    places = [f"city{i}" for i in range(40)]
    rels = ["born in", "lives in", "works in", "visited"]
    return [f"{rng.choice(people)} {rng.choice(rels)} {rng.choice(places)}." for _ in range(n)]


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index.build(corpus())


QUERIES = ["where was person7 born", "city3", "person12 lives in city5", "works in", "unknownword", "the of", "visited visited city1",
           "born lives works visited"]  # the last scores every document (the dense path of top_k)


def test_scores_equal_bm25s_bit_for_bit(index):
    model = index.model
    for q in QUERIES:
        ids = model.get_tokens_ids(tokenize(q) or ["<empty>"])
        assert np.array_equal(index.scores(q), model.get_scores_from_ids(ids)), q


def test_top_k_is_the_k_best_with_ties_in_corpus_order(index):
    for q in QUERIES:
        scores = index.scores(q)
        for k in (1, 10, 200, 5000):
            positions, values = top_k(scores, k)
            # the reference: every positive score sorted by (-score, position), first k
            ref = sorted(np.flatnonzero(scores > 0).tolist(), key=lambda i: (-scores[i], i))[:k]
            assert positions.tolist() == ref and np.array_equal(values, scores[ref]), (q, k)
    hits = index.search(QUERIES, 10)
    assert [h.pos for h in hits[1]] == top_k(index.scores("city3"), 10)[0].tolist()
    assert hits[4] == [] and hits[5] == []  # nothing scores: nothing returned


def test_same_score_lists_as_bm25s_retrieve(index):
    """Whatever bm25s's order among tied documents, the scores at each rank are the same."""
    ids, scores = index.model.retrieve([tokenize(q) or ["<empty>"] for q in QUERIES], k=50, show_progress=False, n_threads=0)
    for q, row in zip(QUERIES, np.asarray(scores).tolist()):
        assert [h.score for h in index.search([q], 50)[0]] == [s for s in row if s > 0], q


def test_a_batch_shares_query_prefixes_and_gives_each_query_its_own_results(index, monkeypatch):
    """Rule-guided queries extend the question: in one call, a query starts from the score vector of
    the longest query whose terms it begins with. Every hit list (positions and float32 scores)
    equals the query searched alone, for prefix chains, branches, repeats and unrelated queries."""
    question = "where was person7 born"
    batch = [question + " lives in city3", question, "city3", question + " lives in", question + " works in city3",
             question, "unknownword", question + " lives in city3 visited", "person12 lives in city5", "lives in city3"]
    added: list[int] = []
    original = BM25Index._add_terms
    monkeypatch.setattr(BM25Index, "_add_terms", lambda self, out, ids: (added.extend(ids), original(self, out, ids))[1])
    together = index.search(batch, 50)
    shared = len(added)
    alone = [index.search([q], 50)[0] for q in batch]
    assert [[(h.pos, h.score) for h in hits] for hits in together] == [[(h.pos, h.score) for h in hits] for hits in alone]
    assert together[0] and together[1]
    # the work shared: every term column is added once per distinct extension, not once per query
    assert shared < len(added) - shared, (shared, len(added) - shared)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
def test_sharded_bm25_merge_equals_the_unsharded_search(index, num_shards):
    """Shards scoring with corpus-wide statistics, each returning its top k, merged: the same
    documents and scores as one index, ties included (the fixture ties in bulk)."""
    from rulerag.retrieval.shards import ShardedBM25

    sharded = ShardedBM25.build(corpus(), num_shards=num_shards)
    assert sharded.size == index.num_docs and len(sharded.shards) == num_shards
    for depth in (1, 10, 200):
        assert sharded.search(QUERIES, depth) == index.search(QUERIES, depth), depth


@pytest.mark.parametrize("depth", [1, 10, 50, 400])
def test_pruned_search_of_common_terms_equals_scoring_every_document(index, monkeypatch, depth):
    """Terms in at least COMMON_TERM_SHARE of the documents ("born", "in", ...: a quarter of the fixture
    each) are scored only for documents holding the query's other terms where a bound shows it exact.
    Hit lists (positions and float32 scores) equal full scoring, ties included, at every depth."""
    import rulerag.retrieval.bm25 as bm25_mod

    queries = [*QUERIES, "person7 born in city3 lives in", "person12 person13 visited", "city3 city4 works in works in",
               "person299 born in lives in works in visited",
               # repeated common terms outweigh the rare one: documents without "city3" belong in the top k
               # (the bound refuses the shortcut)
               "city3 born born born born in in in", "person7 works works works works visited visited"]
    pruned = [0]
    original = BM25Index._pruned

    def counted(self, ids, k):
        out = original(self, ids, k)
        pruned[0] += out is not None
        return out

    monkeypatch.setattr(BM25Index, "_pruned", counted)
    fast = BM25Index(index.model, index.num_docs).search(queries, depth)
    monkeypatch.setattr(bm25_mod, "COMMON_TERM_SHARE", 2.0)  # no term is common: every document scored, postings scattered
    full = BM25Index(index.model, index.num_docs).search(queries, depth)
    assert [[(h.pos, h.score) for h in hits] for hits in fast] == [[(h.pos, h.score) for h in hits] for hits in full]
    assert pruned[0] >= (3 if depth <= 50 else 0)  # the shortcut was taken (not at a depth beyond the candidates)


def test_common_terms_as_dense_columns_keep_bm25s_scores_and_are_capped(index, monkeypatch):
    import rulerag.retrieval.bm25 as bm25_mod

    monkeypatch.setattr(bm25_mod, "MAX_DENSE_TERMS", 2)
    fresh = BM25Index(index.model, index.num_docs)
    for q in QUERIES:
        ids = index.model.get_tokens_ids(tokenize(q) or ["<empty>"])
        assert np.array_equal(fresh.scores(q), index.model.get_scores_from_ids(ids)), q
    assert len(fresh._dense) == 2  # "born", "in", "lives", ... are common; only two columns kept
