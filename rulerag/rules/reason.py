"""Symbolic rule reasoner: apply matched rules to retrieved facts and rank candidate answers.

Given a structured query ``(subject, relation, ?, time)``, its matched rules and the facts read from
the retrieved documents, every rule whose head relation is the query's is grounded with
``X = subject``: a length-1 body ``b(X,Y)`` proposes the ``Y`` of each fact ``b(subject, Y)``
(inverse atoms ``b(Y,X)`` read the fact the other way round); a length-2 body ``b1(X,Z), b2(Z,Y)``
first binds ``Z`` from ``b1`` facts, then reads ``b2(Z, Y)`` facts, fetched through the optional
``second_hop(entity, relation)`` callback (iterative rule-guided retrieval: every body atom is
looked up with the entity bound so far, the question's subject for the first). ``lookup="always"``
(the default) merges each lookup's latest ``max_second_hop * 10`` facts with the retrieved ones, so
a retrieved top k holding some of an atom's facts never hides the rest; ``"missing"`` looks up only
atoms the retrieved documents hold no fact for. For temporal queries only facts dated strictly
before the query's time are used, and a length-2 grounding must be time-ordered (``t1 <= t2``).

Scores (TLogic-style): a grounding scores ``confidence * exp(-recency_decay * age)``, where ``age``
is the query time minus the grounding's latest body time in days (yearly facts: years x 365.2425,
so one decay suits daily and yearly KGs; 0 for static facts). A candidate keeps its best grounding
per rule, and its rules are combined by noisy-or, ``1 - prod(1 - s_rule)``. The query's subject is
never a candidate.

History (optional, ``history_weight > 0``): the subject's own past facts (``history``, any
relation, either direction) also propose their other entity, weighted ``exp(-history_decay * age)``
and ``history_same_relation`` times more when the fact has the query's relation and direction (the
recurrence of past facts). Per query the history weights are scaled so the strongest is
``history_weight`` and added to the rule score: entities the subject dealt with recently and often
rank high even when no mined rule reaches them. Such candidates list ``"history"`` among their rules.

Relation prior (optional, ``prior_weight > 0``): the entities that were the object of the query's
relation before its time, for any subject (``prior``, a :class:`RelationObjects`), weighted
``exp(-prior_decay * age)`` and scaled so the strongest is ``prior_weight``, are added too: the
usual answers of the relation, which is all a subject with no history and no rule grounding has.
Such candidates list ``"prior"`` among their rules.

:meth:`RuleReasoner.reason_with` reads the second hop, the history and the prior from a
:class:`FactIndex`.

Example:
    >>> from rulerag.rules import parse_rule
    >>> rule = parse_rule("citizen_of(X,Y) <- serves_in_army_of(X,Y)").__class__.from_dict(
    ...     {**parse_rule("citizen_of(X,Y) <- serves_in_army_of(X,Y)").to_dict(), "confidence": 0.9})
    >>> facts = [Fact("Alice", "serves_in_army_of", "Norland")]
    >>> [(c.answer, round(c.score, 2)) for c in RuleReasoner().reason(Query("Alice", "citizen_of"), [rule], facts)]
    [('Norland', 0.9)]
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rulerag.config import ReasonerSettings
from rulerag.kg.facts import date_to_day
from rulerag.rules.model import Atom, Rule


@dataclass(frozen=True)
class Fact:
    """One KG fact as read from a document (``time``: ``YYYY-MM-DD``, a year, or ``None``)."""

    subject: str
    relation: str
    object: str
    time: str | None = None
    doc_id: str | None = None

    @classmethod
    def from_metadata(cls, doc_id: str, metadata: dict[str, Any]) -> Fact | None:
        """A fact from a corpus document's ``subject``/``relation``/``object``/``time`` fields."""
        try:
            return cls(metadata["subject"], metadata["relation"], metadata["object"], metadata.get("time"), doc_id)
        except KeyError:
            return None


@dataclass(frozen=True)
class Query:
    """A structured query ``(subject, relation, ?, time)``."""

    subject: str
    relation: str
    time: str | None = None


@dataclass
class Candidate:
    """A proposed answer with its score and the rules and documents behind it."""

    answer: str
    score: float
    rules: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "score": round(self.score, 6), "rules": self.rules, "evidence": self.evidence}


DAYS_PER_YEAR = 365.2425  #: mean Gregorian year


def time_value(time: str | None) -> float | None:
    """Days since 1970: ``YYYY-MM-DD`` exactly, a year at its start (``(year - 1970) * 365.2425``),
    so every decay is per day whatever the KG's granularity; ``None`` -> ``None``.

    Example:
        >>> time_value("1970-01-11"), time_value("1971"), time_value(None)
        (10.0, 365.2425, None)
    """
    if time is None:
        return None
    return float(date_to_day(time)) if "-" in time[1:] else (float(time) - 1970) * DAYS_PER_YEAR


SecondHop = Callable[[str, str], Iterable[Fact]]


class RuleReasoner:
    """Applies rules to facts; every decay is per day of age (a yearly fact's age is its years x 365.2425)."""

    def __init__(
        self,
        *,
        recency_decay: float = 0.01,
        max_second_hop: int = 5,
        history_weight: float = 0.0,
        history_decay: float = 0.01,
        history_same_relation: float = 5.0,
        prior_weight: float = 0.0,
        prior_decay: float = 0.01,
        lookup: str = "always",
    ) -> None:
        if lookup not in ("missing", "always"):
            raise ValueError(f"lookup must be 'missing' or 'always', not {lookup!r}")
        self.lookup = lookup
        self.recency_decay = recency_decay
        self.max_second_hop = max_second_hop
        self.history_weight = history_weight
        self.history_decay = history_decay
        self.history_same_relation = history_same_relation
        self.prior_weight = prior_weight
        self.prior_decay = prior_decay

    @classmethod
    def from_settings(cls, settings: ReasonerSettings | None = None) -> RuleReasoner:
        """A reasoner configured by the ``reasoner`` settings section."""
        return cls(**(settings or ReasonerSettings()).model_dump())

    def reason(
        self,
        query: Query,
        rules: Sequence[Rule],
        facts: Iterable[Fact],
        second_hop: SecondHop | None = None,
        history: Iterable[Fact] = (),
        prior: RelationObjects | None = None,
    ) -> list[Candidate]:
        """Ranked candidates (best first) for ``query``; ``history``: facts about the subject;
        ``prior``: the objects of the query's relation (used when ``prior_weight > 0``)."""
        t_query = time_value(query.time)

        def before(f: Fact) -> bool:
            return t_query is None or f.time is None or time_value(f.time) < t_query

        usable = [f for f in facts if before(f)]
        index: dict[tuple[str, str], list[tuple[str, Fact]]] = defaultdict(list)  # (entity, relation) -> (other end, fact)

        def add(f: Fact) -> None:  # readable from either end
            index[(f.subject, f.relation + ">")].append((f.object, f))
            index[(f.object, f.relation + "<")].append((f.subject, f))

        for f in usable:
            add(f)
        fetched: set[tuple[str, str]] = set()
        known = set(usable)  # a fact both retrieved and looked up counts once

        def step(entity: str, atom: Atom, from_var: str, fetch: bool = False) -> list[tuple[str, Fact]]:
            key = (entity, atom.relation + (">" if atom.subject == from_var else "<"))
            wanted = self.lookup == "always" or not index.get(key)
            if fetch and wanted and second_hop is not None and (entity, atom.relation) not in fetched:
                fetched.add((entity, atom.relation))
                for f in self._most_recent([f for f in second_hop(entity, atom.relation) if before(f)]):
                    if f not in known:
                        known.add(f)
                        add(f)
            return index.get(key, [])

        best: dict[tuple[str, str], tuple[float, list[str]]] = {}  # (answer, rule id) -> (score, evidence)
        for rule in rules:
            if rule.head.relation != query.relation:
                continue
            conf = rule.confidence if rule.confidence is not None else 1.0
            for answer, body_facts in self._groundings(rule, query.subject, step):
                if answer == query.subject:
                    continue
                times = [time_value(f.time) for f in body_facts if f.time is not None]
                if len(times) == 2 and times[0] > times[1]:
                    continue  # a length-2 body must be time-ordered
                age = (t_query - max(times)) if (t_query is not None and times) else 0.0
                score = conf * math.exp(-self.recency_decay * age)
                key = (answer, rule.id)
                if score > best.get(key, (-1.0, []))[0]:
                    best[key] = (score, [f.doc_id for f in body_facts if f.doc_id])
        per_answer: dict[str, Candidate] = {}
        for (answer, rule_id), (score, evidence) in best.items():
            cand = per_answer.setdefault(answer, Candidate(answer, 0.0))
            cand.score = 1 - (1 - cand.score) * (1 - score)  # noisy-or across rules
            cand.rules.append(rule_id)
            cand.evidence.extend(e for e in evidence if e not in cand.evidence)
        if self.history_weight > 0:
            self._add_history(query, [f for f in history if before(f)], t_query, per_answer)
        if self.prior_weight > 0 and prior is not None:
            for other, w in prior.weights(t_query, self.prior_decay).items():
                if other != query.subject:
                    cand = per_answer.setdefault(other, Candidate(other, 0.0))
                    cand.score += self.prior_weight * w
                    cand.rules.append("prior")
        return sorted(per_answer.values(), key=lambda c: (-c.score, c.answer))

    def _most_recent(self, facts: list[Fact]) -> list[Fact]:
        """At most ``max_second_hop * 10`` of ``facts``: the latest ones (undated facts count as oldest)."""
        cap = self.max_second_hop * 10
        if len(facts) <= cap:
            return facts
        times = [time_value(f.time) for f in facts]
        order = sorted(range(len(facts)), key=lambda i: (-math.inf if times[i] is None else times[i], -i), reverse=True)
        return [facts[i] for i in sorted(order[:cap])]

    def reason_with(self, query: Query, rules: Sequence[Rule], facts: Iterable[Fact], index: FactIndex) -> list[Candidate]:
        """:meth:`reason` with the second hop, the subject's history and the relation prior read
        from ``index`` (each only when its weight asks for it)."""
        history = index.about(query.subject) if self.history_weight > 0 else ()
        prior = index.objects_of(query.relation) if self.prior_weight > 0 else None
        return self.reason(query, rules, facts, index.lookup, history, prior)

    def _add_history(self, query: Query, history: list[Fact], t_query: float | None, per_answer: dict[str, Candidate]) -> None:
        weight: dict[str, float] = defaultdict(float)
        latest: dict[str, tuple[float, str]] = {}  # other entity -> (weight of its best fact, doc id)
        for f in history:
            if f.subject == query.subject:
                other, same = f.object, f.relation == query.relation
            elif f.object == query.subject:
                other, same = f.subject, False
            else:
                continue
            if other == query.subject:
                continue
            t = time_value(f.time)
            age = (t_query - t) if (t_query is not None and t is not None) else 0.0
            w = math.exp(-self.history_decay * age) * (self.history_same_relation if same else 1.0)
            weight[other] += w
            if f.doc_id and w > latest.get(other, (-1.0, ""))[0]:
                latest[other] = (w, f.doc_id)
        if not weight:
            return
        top = max(weight.values())
        for other, w in weight.items():
            cand = per_answer.setdefault(other, Candidate(other, 0.0))
            cand.score += self.history_weight * w / top
            cand.rules.append("history")
            if other in latest and latest[other][1] not in cand.evidence:
                cand.evidence.append(latest[other][1])

    @staticmethod
    def _groundings(rule: Rule, subject: str, step) -> Iterable[tuple[str, list[Fact]]]:
        body = rule.body
        if len(body) == 1:
            for other, fact in step(subject, body[0], "X", fetch=True):
                yield other, [fact]
        elif len(body) == 2:
            for z, f1 in step(subject, body[0], "X", fetch=True):
                if z == subject:
                    continue
                for y, f2 in step(z, body[1], "Z", fetch=True):
                    yield y, [f1, f2]


@dataclass(frozen=True)
class RelationObjects:
    """The objects of one relation's facts: entity ``codes`` into ``names`` and their ``times``
    (:func:`time_value`; NaN for undated facts), for the reasoner's relation prior.

    Example:
        >>> ro = RelationObjects(["Norland", "Ostia"], np.array([0, 0, 1]), np.array([1.0, 2.0, 2.0]))
        >>> {k: round(v, 2) for k, v in ro.weights(3.0, 0.0).items()}
        {'Norland': 1.0, 'Ostia': 0.5}
    """

    names: list[str]
    codes: np.ndarray
    times: np.ndarray

    def weights(self, before: float | None, decay: float) -> dict[str, float]:
        """Per object: the sum of ``exp(-decay * age)`` over its facts dated strictly ``before``
        (undated facts count with age 0), scaled so the largest is 1; empty when none qualify."""
        undated = np.isnan(self.times)
        if before is None:
            mask, ages = np.ones(len(self.codes), dtype=bool), np.zeros(len(self.codes))
        else:
            with np.errstate(invalid="ignore"):
                mask = undated | (self.times < before)
            ages = np.where(undated, 0.0, before - self.times)
        if not mask.any():
            return {}
        totals = np.bincount(self.codes[mask], weights=np.exp(-decay * ages[mask]), minlength=len(self.names))
        top = totals.max()
        return {self.names[i]: float(totals[i] / top) for i in np.flatnonzero(totals)}


class FactIndex:
    """The facts of a corpus (documents with ``subject``/``relation``/``object``[/``time``]
    metadata), looked up by ``(entity, relation)`` with the entity on either side: the exact
    second-hop retrieval the reasoner uses for a body atom with a bound entity.

    Example:
        >>> from rulerag.corpus import Document
        >>> idx = FactIndex([Document("d1", "Tarvik located in Norland.",
        ...                           {"subject": "Tarvik", "relation": "located_in", "object": "Norland"})])
        >>> [f.object for f in idx.lookup("Tarvik", "located_in")], idx.lookup("Norland", "borders")
        (['Norland'], [])
    """

    def __init__(self, documents: Sequence[Any]) -> None:
        self.facts: list[Fact | None] = [Fact.from_metadata(d.id, d.metadata) for d in documents]
        self._by_key: dict[tuple[str, str], list[int]] | None = None
        self._by_entity: dict[str, list[int]] | None = None
        self._objects: dict[str, RelationObjects] | None = None

    def _index(self) -> dict[tuple[str, str], list[int]]:
        if self._by_key is None:
            by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
            for i, f in enumerate(self.facts):
                if f is not None:
                    by_key[(f.subject, f.relation)].append(i)
                    if f.object != f.subject:
                        by_key[(f.object, f.relation)].append(i)
            self._by_key = dict(by_key)
        return self._by_key

    def about(self, entity: str) -> list[Fact]:
        """Every fact with ``entity`` as subject or object (its history, for the reasoner)."""
        if self._by_entity is None:
            by_entity: dict[str, list[int]] = defaultdict(list)
            for i, f in enumerate(self.facts):
                if f is not None:
                    by_entity[f.subject].append(i)
                    if f.object != f.subject:
                        by_entity[f.object].append(i)
            self._by_entity = dict(by_entity)
        return [self.facts[i] for i in self._by_entity.get(entity, [])]

    def objects_of(self, relation: str) -> RelationObjects:
        """The objects (and times) of every fact with ``relation`` (the reasoner's relation prior)."""
        if self._objects is None:
            grouped: dict[str, list[Fact]] = defaultdict(list)
            for f in self.facts:
                if f is not None:
                    grouped[f.relation].append(f)
            objects = {}
            for rel, facts in grouped.items():
                names = sorted({f.object for f in facts})
                code = {n: i for i, n in enumerate(names)}
                times = [time_value(f.time) for f in facts]
                objects[rel] = RelationObjects(names, np.array([code[f.object] for f in facts], dtype=np.int64),
                                               np.array([np.nan if t is None else t for t in times], dtype=np.float64))
            self._objects = objects
        return self._objects.get(relation) or RelationObjects([], np.zeros(0, dtype=np.int64), np.zeros(0))

    def lookup(self, entity: str, relation: str) -> list[Fact]:
        """Facts with ``relation`` that have ``entity`` as subject or object."""
        return [self.facts[i] for i in self._index().get((entity, relation), [])]

    def facts_at(self, positions: Iterable[int]) -> list[Fact]:
        """The facts of the documents at ``positions`` (documents without fact metadata skipped)."""
        return [f for f in (self.facts[p] for p in positions) if f is not None]
