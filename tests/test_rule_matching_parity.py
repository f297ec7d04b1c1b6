"""The vectorised ``RuleStore.match_many`` returns exactly what the original per-relation loop did.

``reference_match_many`` below is the loop as it was before the mention scoring was vectorised
(kept here verbatim as the oracle): same rules, same order, same float scores, same reasons.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from rulerag.demo import DEMO_QUESTION, DEMO_RULES
from rulerag.rules import RuleMatch, RuleStore, parse_rule
from rulerag.rules.store import _confidence_key, _reason, _words_match, mask_entities
from rulerag.text import relation_words, tokenize
from tests.fakes import HashEncoder

DEMO_QUESTIONS = [
    DEMO_QUESTION,
    "Where was Alice Marlow born?",
    "Which language does Alice Marlow speak?",
    "Where does Alice Marlow live?",
    "Which company does Bruno Keller work for?",
    "Which country is Dravport located in?",
    "What nationality does Alice Marlow hold?",
    "Is Bob married to Carol?",
    "What is the weather like today?",
    "",
]


def reference_match_many(store: RuleStore, questions, *, encoder=None, top_n=3, min_score=0.35, mention_weight=0.5):
    """The pre-vectorisation implementation of ``RuleStore.match_many`` (the oracle)."""
    relations = store.relations
    words_of = {rel: list(dict.fromkeys(tokenize(relation_words(rel)) or tokenize(relation_words(rel), stopwords=False)))
                for rel in relations}
    sims = None
    if encoder is not None and relations and questions:
        texts = [mask_entities(q) if store.mask_names else q for q in questions]
        rel_vecs = np.asarray(encoder.encode([relation_words(r) for r in relations]), dtype=np.float32)
        sims = np.clip(encoder.encode(texts) @ rel_vecs.T, 0.0, 1.0)
    results = []
    for qi, question in enumerate(questions):
        tokens = set(tokenize(question))
        found = []
        for ri, rel in enumerate(relations):
            words = words_of[rel]
            hit = [w for w in words if any(_words_match(w, t) for t in tokens)]
            mention = len(hit) / len(words) if words else 0.0
            emb = None if sims is None else float(sims[qi, ri])
            score = mention if emb is None else mention_weight * mention + (1.0 - mention_weight) * emb
            if score < min_score:
                continue
            reason = _reason(relation_words(rel), hit, mention, emb)
            found.extend(RuleMatch(rule, score, mention, emb, reason) for rule in store.by_head(rel))
        found.sort(key=lambda m: (-m.score, *_confidence_key(m.rule)))
        results.append(found[:top_n])
    return results


def _as_tuples(results):
    # RuleMatch equality compares the rules by their logical form; compare ids and every field exactly
    return [[(m.rule.id, m.rule.text, m.score, m.mention_score, m.embedding_score, m.reason) for m in ms] for ms in results]


def _icews_like_store(seed: int = 5) -> RuleStore:
    """Many head relations with shared words, spaces and commas, equal confidences (ties)."""
    rng = random.Random(seed)
    verbs = ["Make", "Express", "Appeal", "Engage", "Consult", "Threaten", "Accuse", "Reject", "Praise", "Host"]
    objects = ["statement", "intent to cooperate", "optimistic comment", "for economic aid", "in negotiation",
               "visit", "of crime, corruption", "with military force", "or endorse", "diplomatic cooperation"]
    relations = sorted({f"{v} {o}" for v in verbs for o in objects if rng.random() < 0.5} | {"Consult", "Host a visit"})
    rules = []
    for head in relations:
        for _ in range(rng.randint(1, 6)):
            body = rng.choice(relations)
            conf = rng.choice([None, 0.5, 0.5, 0.8, 1.0])
            text = f"[Entity1, {body}, Entity2] leads to [Entity1, {head}, Entity2]"
            if rng.random() < 0.4:
                other = rng.choice(relations)
                text = f"[Entity1, {body}, Entity3] & [Entity3, {other}, Entity2] leads to [Entity1, {head}, Entity2]"
            rule = parse_rule(text)
            rules.append(rule.__class__(rule.head, rule.body, confidence=conf, support=rule.support))
    return RuleStore(rules)


ICEWS_QUESTIONS = [
    "Afghanistan make optimistic comment whom on 2014-11-11?",
    "Ashraf Ghani Ahmadzai consult whom on 2014-11-11?",
    "Who expressed intent to cooperate with China?",
    "Which country hosted a visit of the Iranian president?",
    "Did Barack Obama appeal for economic aid?",
    "Who threatened with military force and rejected the statement?",
    "Police (India) accuse whom of crime, corruption?",
    "Nothing relevant here at all",
]


@pytest.mark.parametrize("top_n", [None, 0, 1, 2, 3, 7, 50])
@pytest.mark.parametrize("min_score,mention_weight", [(0.35, 0.5), (0.3, 0.3), (0.0, 0.0), (0.0, 1.0), (0.5, 0.25)])
@pytest.mark.parametrize("with_encoder", [False, True])
def test_demo_rules_match_exactly_as_before(top_n, min_score, mention_weight, with_encoder):
    store = RuleStore.from_file(DEMO_RULES)
    enc = HashEncoder() if with_encoder else None
    kw = {"top_n": top_n, "min_score": min_score, "mention_weight": mention_weight}
    new = store.match_many(DEMO_QUESTIONS, encoder=enc, **kw)
    old = reference_match_many(store, DEMO_QUESTIONS, encoder=enc, **kw)
    assert _as_tuples(new) == _as_tuples(old)
    if top_n is None and min_score == 0.0:
        assert all(len(ms) == len(store) for ms in new)  # every rule, in the same order


@pytest.mark.parametrize("top_n", [None, 1, 3, 5, 12])
@pytest.mark.parametrize("min_score,mention_weight", [(0.3, 0.3), (0.0, 0.5), (0.2, 1.0)])
@pytest.mark.parametrize("with_encoder", [False, True])
def test_many_relations_with_ties_match_exactly_as_before(top_n, min_score, mention_weight, with_encoder):
    store = _icews_like_store()
    assert len(store.relations) > 20
    enc = HashEncoder(dim=16) if with_encoder else None  # small dimension: many equal similarities
    kw = {"top_n": top_n, "min_score": min_score, "mention_weight": mention_weight}
    new = store.match_many(ICEWS_QUESTIONS, encoder=enc, **kw)
    old = reference_match_many(store, ICEWS_QUESTIONS, encoder=enc, **kw)
    assert _as_tuples(new) == _as_tuples(old)
    assert any(new)  # the comparison is not vacuous


def test_precomputed_question_vectors_give_the_same_matches():
    store = RuleStore.from_file(DEMO_RULES)
    enc = HashEncoder()
    vecs = enc.encode(store.embedding_texts(DEMO_QUESTIONS))
    calls = len(enc.calls)
    given = store.match_many(DEMO_QUESTIONS, encoder=enc, question_vectors=vecs, min_score=0.3, mention_weight=0.3)
    assert [c for c in enc.calls[calls:] if c != [relation_words(r) for r in store.relations]] == []  # questions not re-encoded
    assert _as_tuples(given) == _as_tuples(store.match_many(DEMO_QUESTIONS, encoder=enc, min_score=0.3, mention_weight=0.3))
    with pytest.raises(ValueError, match="3 question vectors for 10 questions"):
        store.match_many(DEMO_QUESTIONS, encoder=enc, question_vectors=vecs[:3])
    with pytest.raises(ValueError, match="pass encoder="):
        store.match_many(DEMO_QUESTIONS, question_vectors=vecs)


def test_embedding_texts_mask_names_unless_disabled():
    rules = [parse_rule("citizen_of(X,Y) <- born_in(X,Y)")]
    assert RuleStore(rules).embedding_texts(["Is Alice Marlow a citizen?"]) == ["Is someone a citizen?"]
    assert RuleStore(rules, mask_names=False).embedding_texts(["Is Alice Marlow a citizen?"]) == ["Is Alice Marlow a citizen?"]


@pytest.mark.integration
def test_real_encoder_matches_exactly_as_before():
    from rulerag.embedding import Encoder

    store = RuleStore.from_file(DEMO_RULES)
    enc = Encoder()
    new = store.match_many(DEMO_QUESTIONS, encoder=enc, min_score=0.3, mention_weight=0.3)
    old = reference_match_many(store, DEMO_QUESTIONS, encoder=enc, min_score=0.3, mention_weight=0.3)
    assert _as_tuples(new) == _as_tuples(old)
    assert new[0] and new[0][0].rule.head.relation == "citizen_of"
