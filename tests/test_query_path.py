"""The query path's shared work: the searcher's cached encoder (used by rule matching too),
packed encoding of small mixed-length batches, and fusion tie order."""

from __future__ import annotations

import numpy as np
import pytest

from rulerag.config import RetrievalSettings, RuleSettings
from rulerag.corpus import Document
from rulerag.retrieval.bm25 import BM25Index
from rulerag.retrieval.dense import DenseIndex
from rulerag.retrieval.fusion import round_robin, rrf, weighted_sum
from rulerag.retrieval.guided import RuleGuidedRetriever
from rulerag.retrieval.hits import Hit
from rulerag.retrieval.search import CachedEncoder, Searcher
from rulerag.rules import RuleStore, parse_rule
from rulerag.rules.store import mask_entities
from tests.fakes import HashEncoder

TEXTS = [
    "Alice Marlow was born in Tarvik.",
    "Tarvik is located in Norland.",
    "Alice Marlow lives in Dravport.",
    "Dravport is located in Norland.",
    "Bruno Keller works for Karsland Rail.",
]


def _searcher(enc: HashEncoder, cache_size: int = 1000) -> Searcher:
    return Searcher(BM25Index.build(TEXTS), DenseIndex.build(enc.encode(TEXTS)), enc, RetrievalSettings(depth=5), cache_size=cache_size)


def test_searcher_encoder_is_the_cache_seen_as_an_encoder():
    enc = HashEncoder()
    s = _searcher(enc)
    assert isinstance(s.encoder, CachedEncoder) and s.base_encoder is enc
    assert s.encoder.model_name == enc.model_name and s.encoder.dim == enc.dim  # other attributes pass through
    enc.calls.clear()
    first = s.encoder.encode(["born in", "located in"])
    again = s.encoder.encode(["located in", "born in"])
    assert enc.calls == [["born in", "located in"]]  # the second call was served by the cache
    np.testing.assert_array_equal(again, first[::-1])
    assert s.encoder.encode([]).shape == (0, enc.dim)


def test_encode_also_caches_the_extra_texts_in_the_same_call():
    enc = HashEncoder()
    s = _searcher(enc)
    enc.calls.clear()
    vecs = s.encode(["Is someone a citizen?"], also=["Is Alice a citizen?", "Is someone a citizen?"])
    assert vecs.shape == (1, enc.dim)
    assert enc.calls == [["Is someone a citizen?", "Is Alice a citizen?"]]  # one call, no duplicate
    s.search_many(["Is Alice a citizen?"], retriever="dense")
    assert len(enc.calls) == 1  # the question's vector came from the cache


def test_rule_guided_retrieval_encodes_the_question_with_its_masked_form():
    enc = HashEncoder()
    s = _searcher(enc)
    rules = RuleStore([parse_rule("citizen_of(X,Y) <- born_in(X,Y)"), parse_rule("born_in(X,Y) <- lives_in(X,Y)")])
    retriever = RuleGuidedRetriever(s, [Document(str(i), t) for i, t in enumerate(TEXTS)], rules,
                                    RetrievalSettings(k=3, depth=5), RuleSettings(min_score=0.3, mention_weight=0.3))
    question = "Which country is Alice Marlow a citizen of?"
    enc.calls.clear()
    result = retriever.retrieve(question)
    masked = mask_entities(question)
    assert masked != question and result.rules  # the rule query is searched too
    # one call for masked question + question, one for the relation words (once per store), one for the rule queries
    assert [masked, question] in enc.calls and len(enc.calls) == 3
    assert question not in enc.calls[-1] and all(q in enc.calls[-1] for q in result.queries[1:])
    # a question that masking leaves unchanged is encoded once for matching and retrieval
    enc.calls.clear()
    plain = "which country is alice a citizen of?"
    assert mask_entities(plain) == plain
    retriever.retrieve(plain)
    assert sum(call.count(plain) for call in enc.calls) == 1


def test_cached_and_uncached_rule_guided_results_are_the_same():
    docs = [Document(str(i), t) for i, t in enumerate(TEXTS)]
    rules = RuleStore([parse_rule("citizen_of(X,Y) <- born_in(X,Y)"), parse_rule("lives_in(X,Y) <- born_in(X,Y)")])
    settings, rule_settings = RetrievalSettings(k=4, depth=5), RuleSettings(min_score=0.2, mention_weight=0.3)
    questions = ["Which country is Alice Marlow a citizen of?", "Where does Alice Marlow live?", "Who works for Karsland Rail?"]
    cached = RuleGuidedRetriever(_searcher(HashEncoder()), docs, rules, settings, rule_settings)
    tiny = RuleGuidedRetriever(_searcher(HashEncoder(), cache_size=1), docs, rules, settings, rule_settings)  # evicts at once
    for q in questions:
        a, b = cached.retrieve(q), tiny.retrieve(q)
        assert [(d.id, d.score, d.found_by) for d in a.documents] == [(d.id, d.score, d.found_by) for d in b.documents]
        assert [(m.rule.id, m.score) for m in a.rules] == [(m.rule.id, m.score) for m in b.rules]


def test_fusion_breaks_ties_by_first_appearance():
    a = [Hit(7, 1.0), Hit(3, 1.0)]
    b = [Hit(3, 1.0), Hit(7, 1.0)]
    # equal RRF scores (rank 1 + rank 2 each): 7 was seen first
    assert [h.pos for h in rrf([a, b])] == [7, 3]
    assert [h.pos for h in rrf([b, a])] == [3, 7]
    # equal normalised scores everywhere: first appearance again
    assert [h.pos for h in weighted_sum([[Hit(5, 2.0), Hit(9, 2.0)], [Hit(9, 1.0)]], weights=[1.0, 0.0])] == [5, 9]
    assert [(h.pos, h.score) for h in round_robin([[Hit(1, 9.0), Hit(2, 8.0)], [Hit(2, 5.0), Hit(4, 1.0)], []])] == \
        [(1, 1.0), (2, 0.5), (4, 1 / 3)]
    assert round_robin([]) == [] and rrf([]) == []


def test_dense_search_returns_python_numbers():
    vecs = np.eye(4, dtype=np.float32)
    hits = DenseIndex.build(vecs).search(vecs[:2], depth=2)
    assert [h.pos for h in (hits[0][0], hits[1][0])] == [0, 1]
    assert type(hits[0][0].pos) is int and type(hits[0][0].score) is float


# ---------------------------------------------------------------- packed encoding (real model)


@pytest.fixture(scope="module")
def encoders():
    from rulerag.embedding import Encoder

    return Encoder(backend="torch"), Encoder(pack=False, backend="torch")  # packing is a torch-path optimisation


@pytest.mark.integration
def test_packed_encoding_equals_padded_batches(encoders):
    from rulerag.embedding import _packer_for

    packed, padded = encoders
    question = "Afghanistan make optimistic comment whom on 2014-11-11?"
    texts = [question] + [f"{question} {b}" for b in ("Make statement", "Host a visit Make a visit Praise or endorse", "Consult")]
    assert _packer_for(packed.model) is not None  # all-MiniLM-L6-v2 qualifies
    a, b = packed.encode(texts), padded.encode(texts)
    assert a.dtype == np.float32 and a.shape == b.shape == (4, 384)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)


@pytest.mark.integration
def test_packing_is_skipped_where_it_would_not_pay(encoders):
    from rulerag.embedding import _PackedEncoder, _packer_for

    packed, padded = encoders
    packer = _packer_for(packed.model)
    same_length = ["born in", "lives in"]
    assert packer.encode(same_length) is None  # no padding to save: the padded batch, bit for bit
    np.testing.assert_array_equal(packed.encode(same_length), padded.encode(same_length))
    one = ["Which country is Alice Marlow a citizen of?"]
    np.testing.assert_array_equal(packed.encode(one), padded.encode(one))  # a single text is never packed
    long_texts = ["word " * 200, "other words " * 100]
    assert packer.encode(long_texts) is None  # too many tokens together
    assert packed.encode(long_texts).shape == (2, 384)
    assert _PackedEncoder.for_model([object(), object()]) is None  # not a sentence-transformers pipeline it reproduces
