"""Metric functions on hand-computed examples."""

from __future__ import annotations

import pytest

from rulerag.metrics import EntityMatcher, entity_exact_match, exact_match, recall_at_k, token_f1, token_recall


def test_recall_at_k_uses_normalised_token_boundaries_and_aliases():
    docs = ["Time 2014-01-02 Iranian officials met Iraq.", "Time 2014-01-03 Iran Consult The United Nations."]
    assert recall_at_k(docs, ["Iran"], 1) == 0.0  # "Iranian" is not "Iran"
    assert recall_at_k(docs, ["Iran"], 2) == 1.0
    assert recall_at_k(docs, ["united nations"], 2) == 1.0  # article and case normalised
    assert recall_at_k(docs, ["Syria", "Iraq"], 1) == 1.0  # any gold alias (filtered setting)
    assert recall_at_k(docs, [""], 2) == 0.0


def test_exact_match_and_token_scores():
    assert exact_match("  the Norland!", ["Norland"]) == 1.0
    assert exact_match("Norland City", ["Norland"]) == 0.0
    assert exact_match("Karsland", ["Norland", "Karsland"]) == 1.0
    # pred {kingdom, of, norland} vs gold {norland}: precision 1/3, recall 1 -> F1 0.5
    assert token_f1("Kingdom of Norland", ["Norland"]) == pytest.approx(0.5)
    assert token_f1("x", ["Norland"]) == 0.0
    assert token_recall("Government", ["Government (Kenya)"]) == pytest.approx(0.5)
    assert token_f1("Government", ["Government (Kenya)", "Government"]) == 1.0


def test_entity_em_skips_question_entities_and_takes_the_first_other_entity():
    m = EntityMatcher(["Thailand", "Malaysia", "Japan", "Government (Kenya)"])
    q_ents = ["Thailand"]
    assert entity_exact_match("Thailand consulted Malaysia.", ["Malaysia"], q_ents, m) == 1.0
    assert entity_exact_match("Japan, then Malaysia", ["Malaysia"], q_ents, m) == 0.0  # first other entity is Japan
    assert entity_exact_match("Thailand", ["Malaysia"], q_ents, m) == 0.0  # only the question's entity
    assert entity_exact_match("the government (Kenya)", ["Government (Kenya)"], [], m) == 1.0
    assert entity_exact_match("nobody", ["Malaysia"], q_ents, m) == 0.0
