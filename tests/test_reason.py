"""The symbolic rule reasoner on small KGs with known derivations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rulerag.rules import Rule, parse_rule
from rulerag.rules.reason import Fact, Query, RuleReasoner


def rule(text: str, confidence: float) -> Rule:
    return Rule.from_dict({**parse_rule(text).to_dict(), "confidence": confidence})


def test_length_one_and_inverse_rules_rank_by_confidence():
    rules = [rule("citizen_of(X,Y) <- serves_in_army_of(X,Y)", 0.9), rule("citizen_of(X,Y) <- hosts_citizen(Y,X)", 0.5)]
    facts = [Fact("Alice", "serves_in_army_of", "Norland", doc_id="d1"), Fact("Karsland", "hosts_citizen", "Alice", doc_id="d2"),
             Fact("Bob", "serves_in_army_of", "Estova", doc_id="d3")]
    cands = RuleReasoner().reason(Query("Alice", "citizen_of"), rules, facts)
    assert [(c.answer, c.score) for c in cands] == [("Norland", pytest.approx(0.9)), ("Karsland", pytest.approx(0.5))]
    assert cands[0].evidence == ["d1"] and cands[0].rules == [rules[0].id]


def test_noisy_or_combines_rules_for_the_same_answer():
    rules = [rule("citizen_of(X,Y) <- born_in(X,Y)", 0.6), rule("citizen_of(X,Y) <- lives_in(X,Z), located_in(Z,Y)", 0.5)]
    facts = [Fact("A", "born_in", "N"), Fact("A", "lives_in", "T"), Fact("T", "located_in", "N"), Fact("A", "lives_in", "U"),
             Fact("U", "located_in", "K")]
    cands = {c.answer: c.score for c in RuleReasoner().reason(Query("A", "citizen_of"), rules, facts)}
    assert cands["N"] == pytest.approx(1 - 0.4 * 0.5)
    assert cands["K"] == pytest.approx(0.5)


def test_facts_after_the_query_time_are_never_used_and_recency_matters():
    r = rule("consult(X,Y) <- visit(X,Y)", 0.8)
    facts = [Fact("A", "visit", "B", "2014-01-01"), Fact("A", "visit", "C", "2014-01-09"), Fact("A", "visit", "D", "2014-02-01")]
    reasoner = RuleReasoner(recency_decay=0.1)
    cands = reasoner.reason(Query("A", "consult", "2014-01-10"), [r], facts)
    assert [c.answer for c in cands] == ["C", "B"]  # D is dated after the query; C is more recent than B
    assert cands[0].score == pytest.approx(0.8 * math.exp(-0.1 * 1))
    assert cands[1].score == pytest.approx(0.8 * math.exp(-0.1 * 9))
    # a fact on the query's own date is not "before"
    assert reasoner.reason(Query("A", "consult", "2014-01-09"), [r], facts)[0].answer == "B"


def test_length_two_bodies_must_be_time_ordered():
    r = rule("r(X,Y) <- a(X,Z), b(Z,Y)", 1.0)
    facts = [Fact("x", "a", "z", "2014-01-05"), Fact("z", "b", "y1", "2014-01-06"), Fact("z", "b", "y2", "2014-01-02")]
    assert [c.answer for c in RuleReasoner().reason(Query("x", "r", "2014-02-01"), [r], facts)] == ["y1"]


def test_second_hop_fetches_missing_facts():
    r = rule("citizen_of(X,Y) <- born_in(X,Z), located_in(Z,Y)", 0.7)
    asked = []

    def hop(entity, relation):
        asked.append((entity, relation))
        return [Fact("Tarvik", "located_in", "Norland", doc_id="d9")] if (entity, relation) == ("Tarvik", "located_in") else []

    facts = [Fact("Alice", "born_in", "Tarvik", doc_id="d1")]
    assert RuleReasoner().reason(Query("Alice", "citizen_of"), [r], facts) == []
    cands = RuleReasoner(lookup="missing").reason(Query("Alice", "citizen_of"), [r], facts, second_hop=hop)
    assert [(c.answer, c.evidence) for c in cands] == [("Norland", ["d1", "d9"])]
    assert asked == [("Tarvik", "located_in")]  # the first atom's fact was retrieved: not looked up
    asked.clear()
    assert [c.answer for c in RuleReasoner().reason(Query("Alice", "citizen_of"), [r], facts, second_hop=hop)] == ["Norland"]
    assert asked == [("Alice", "born_in"), ("Tarvik", "located_in")]  # lookup="always": every atom


def test_lookup_always_completes_a_partly_retrieved_atom_and_counts_shared_facts_once():
    r = rule("consult(X,Y) <- visit(X,Y)", 1.0)
    old = Fact("A", "visit", "B", "2014-01-01", doc_id="d1")
    recent = Fact("A", "visit", "C", "2014-01-09", doc_id="d2")
    hop = lambda entity, relation: [old, recent] if (entity, relation) == ("A", "visit") else []  # noqa: E731
    q = Query("A", "consult", "2014-01-10")
    # only the old visit was retrieved: "missing" never sees the recent one, "always" does
    assert [c.answer for c in RuleReasoner(lookup="missing", recency_decay=0.1).reason(q, [r], [old], hop)] == ["B"]
    cands = RuleReasoner(recency_decay=0.1).reason(q, [r], [old], hop)
    assert [c.answer for c in cands] == ["C", "B"]
    assert cands[1].score == pytest.approx(math.exp(-0.1 * 9)) and cands[1].evidence == ["d1"]  # d1 once, not twice
    with pytest.raises(ValueError, match="lookup"):
        RuleReasoner(lookup="sometimes")


def test_lookups_keep_the_latest_facts_before_the_question():
    r = rule("consult(X,Y) <- visit(X,Y)", 1.0)
    facts = [Fact("A", "visit", f"E{y}", str(y), doc_id=f"d{y}") for y in range(1990, 2030)]  # oldest first
    hop = lambda entity, relation: facts if (entity, relation) == ("A", "visit") else []  # noqa: E731
    cands = RuleReasoner(max_second_hop=1).reason(Query("A", "consult", "2015"), [r], [], hop)  # 10 facts at most
    assert sorted(c.answer for c in cands) == sorted(f"E{y}" for y in range(2005, 2015))  # the 10 latest before 2015
    assert cands[0].answer == "E2014"


def test_yearly_ages_are_counted_in_days():
    r = rule("consult(X,Y) <- visit(X,Y)", 1.0)
    facts = [Fact("A", "visit", "B", "2013"), Fact("A", "visit", "C", "2009")]
    cands = RuleReasoner(recency_decay=0.003).reason(Query("A", "consult", "2014"), [r], facts)
    assert [c.answer for c in cands] == ["B", "C"]
    assert cands[0].score == pytest.approx(math.exp(-0.003 * 365.2425))  # one year = 365.2425 days
    assert cands[1].score == pytest.approx(math.exp(-0.003 * 5 * 365.2425))


def test_rules_for_other_relations_and_the_subject_itself_are_ignored():
    rules = [rule("speaks(X,Y) <- born_in(X,Y)", 0.9), rule("knows(X,Y) <- knows(Y,X)", 1.0)]
    facts = [Fact("A", "born_in", "N"), Fact("A", "knows", "A")]
    assert RuleReasoner().reason(Query("A", "knows"), rules, facts) == []


def test_history_adds_recent_and_recurrent_partners_without_rules():
    history = [Fact("A", "consult", "B", "2014-01-01", "h1"), Fact("A", "praise", "C", "2014-01-08", "h2"),
               Fact("D", "visit", "A", "2014-01-09", "h3"), Fact("A", "consult", "E", "2014-02-01", "h4"),  # after the query
               Fact("X", "consult", "Y", "2014-01-09", "h5")]  # not about A
    q = Query("A", "consult", "2014-01-10")
    assert RuleReasoner().reason(q, [], [], history=history) == []  # history off by default
    reasoner = RuleReasoner(history_weight=1.0, history_decay=0.1, history_same_relation=5.0)
    cands = reasoner.reason(q, [], [], history=history)
    w = {"B": 5 * math.exp(-0.9), "C": math.exp(-0.2), "D": math.exp(-0.1)}  # B repeats the query's relation
    top = max(w.values())
    assert [(c.answer, c.score) for c in cands] == [(a, pytest.approx(w[a] / top)) for a in sorted(w, key=lambda a: -w[a])]
    assert {c.answer: c.evidence for c in cands} == {"B": ["h1"], "C": ["h2"], "D": ["h3"]}
    assert all(c.rules == ["history"] for c in cands)


def test_history_is_added_to_rule_scores():
    r = rule("consult(X,Y) <- visit(X,Y)", 0.8)
    facts = [Fact("A", "visit", "B", doc_id="d1")]
    history = facts + [Fact("A", "praise", "C", doc_id="d2"), Fact("A", "praise", "C", doc_id="d3")]
    cands = RuleReasoner(history_weight=0.5).reason(Query("A", "consult"), [r], facts, history=history)
    # B: rule 0.8 + history 0.5 * 1/2; C: history only, 0.5 * 2/2
    assert [(c.answer, c.score) for c in cands] == [("B", pytest.approx(1.05)), ("C", pytest.approx(0.5))]
    assert cands[0].rules == [r.id, "history"]


def test_reasoner_settings_flow_from_the_config():
    from rulerag.config import load_settings

    reasoner = RuleReasoner.from_settings(load_settings(overrides={"reasoner": {"history_weight": 2.0, "recency_decay": 0.5}}).reasoner)
    assert (reasoner.history_weight, reasoner.recency_decay) == (2.0, 0.5)


def test_relation_prior_proposes_the_relations_usual_objects():
    from rulerag.corpus import Document
    from rulerag.rules.reason import FactIndex

    rows = [("B", "consult", "N", "2014-01-01"), ("C", "consult", "N", "2014-01-05"), ("D", "consult", "M", "2014-01-09"),
            ("E", "consult", "A", "2014-01-09"),  # the subject itself: never a candidate
            ("F", "consult", "M", "2014-01-10"),  # on the query's date: not before it
            ("G", "praise", "P", "2014-01-02")]  # another relation
    index = FactIndex([Document(f"d{i}", "", {"subject": s, "relation": r, "object": o, "time": t}) for i, (s, r, o, t) in enumerate(rows)])
    q = Query("A", "consult", "2014-01-10")
    # prior off: only A's history (E consulted A)
    assert [(c.answer, c.rules) for c in RuleReasoner(history_weight=1.0).reason_with(q, [], [], index)] == [("E", ["history"])]
    cands = RuleReasoner(prior_weight=0.5, prior_decay=0.1).reason_with(q, [], [], index)
    w = {"N": math.exp(-0.9) + math.exp(-0.5), "M": math.exp(-0.1)}
    top = max(w.values())
    assert [(c.answer, c.score) for c in cands] == [(a, pytest.approx(0.5 * w[a] / top)) for a in sorted(w, key=lambda a: -w[a])]
    assert all(c.rules == ["prior"] and c.evidence == [] for c in cands)
    assert index.objects_of("unknown").weights(None, 0.1) == {}


def test_relation_prior_adds_to_history_and_undated_facts_count_fully():
    from rulerag.rules.reason import RelationObjects

    prior = RelationObjects(["N", "M"], np.array([0, 1, 1]), np.array([np.nan, np.nan, np.nan]))
    assert prior.weights(100.0, 1.0) == {"N": 0.5, "M": 1.0}
    history = [Fact("A", "consult", "N", doc_id="h1")]
    cands = RuleReasoner(history_weight=1.0, prior_weight=0.2).reason(Query("A", "consult"), [], [], history=history, prior=prior)
    assert [(c.answer, c.score) for c in cands] == [("N", pytest.approx(1.1)), ("M", pytest.approx(0.2))]
    assert cands[0].rules == ["history", "prior"]
