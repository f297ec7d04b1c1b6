"""BM25 parity: our bm25s index against the Lucene BM25 formula and against rank-bm25."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from rulerag.demo import DEMO_CORPUS
from rulerag.corpus import read_corpus
from rulerag.retrieval.bm25 import BM25Index
from rulerag.text import tokenize

QUERIES = ["Which country is Alice Marlow a citizen of?", "Karsland Rail headquartered", "Norric speaks official language",
           "Jonas Brandt married", "who visited Dravport"]


def lucene_scores(docs: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    n = len(docs)
    avgdl = sum(map(len, docs)) / n
    df = Counter(t for d in docs for t in set(d))
    out = []
    for d in docs:
        tf = Counter(d)
        score = 0.0
        for t in query:
            if t in tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                # Lucene >= 8 drops the constant (k1 + 1) numerator factor (ranking unchanged)
                score += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(d) / avgdl))
        out.append(score)
    return out


@pytest.fixture(scope="module")
def corpus():
    return [d.contents for d in read_corpus(DEMO_CORPUS)]


def test_scores_equal_the_lucene_formula(corpus):
    index = BM25Index.build(corpus)
    tokens = [tokenize(t) for t in corpus]
    for q in QUERIES:
        expected = lucene_scores(tokens, tokenize(q))
        hits = index.search([q], depth=len(corpus))[0]
        assert len(hits) == sum(1 for s in expected if s > 0)
        for h in hits:
            assert h.score == pytest.approx(expected[h.pos], rel=1e-4)


def test_top_document_matches_rank_bm25(corpus):
    rank_bm25 = pytest.importorskip("rank_bm25", reason="rank-bm25 (the reference implementation) is a test extra")
    tokens = [tokenize(t) for t in corpus]
    ref = rank_bm25.BM25Okapi(tokens, k1=1.5, b=0.75)
    index = BM25Index.build(corpus)
    for q in QUERIES:
        ref_scores = ref.get_scores(tokenize(q))
        best = max(ref_scores)
        ours = index.search([q], depth=1)[0][0].pos
        # IDF variants differ (Okapi vs Lucene), but the best document is among the reference's best
        assert ref_scores[ours] == pytest.approx(best, rel=0.05)
