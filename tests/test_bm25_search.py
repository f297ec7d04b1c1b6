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
