"""Rule-guided retrieval (RuleRAG): the question plus one query per matched rule, merged.

For each question, rules are matched (by head relation for structured queries, by mention and
embedding similarity for free text); each rule gives one more query (``settings.rule_query``:
the question plus the rule body's relations, or plus the whole rule text as in the paper).
The plain question's list and the per-rule lists are merged by ``settings.merge``
(reciprocal rank fusion or round-robin) and cut to ``k``. In ``standard`` mode only the plain
question is searched.

Example:
    >>> retriever = RuleGuidedRetriever(searcher, index.docs, rule_store)    # doctest: +SKIP
    >>> result = retriever.retrieve("Which country is Alice Marlow a citizen of?", k=3)  # doctest: +SKIP
    >>> result.rules[0].rule.text                                          # doctest: +SKIP
    '[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rulerag.config import Dedup, EvidenceMerge, MergePolicy, Mode, ReasonerSettings, RetrievalSettings, RuleQuery, RuleSettings
from rulerag.corpus import Document
from rulerag.retrieval.fusion import round_robin, rrf
from rulerag.retrieval.hits import Hit, ScoredDocument
from rulerag.retrieval.search import Searcher
from rulerag.rules import RuleMatch, RuleStore
from rulerag.rules.reason import FactIndex, Query, RuleReasoner
from rulerag.text import relation_words


@dataclass
class RetrievalResult:
    """Documents for one question, with the rules and queries that produced them."""

    question: str
    mode: Mode
    documents: list[ScoredDocument]
    rules: list[RuleMatch] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "mode": self.mode.value,
            "rules": [m.to_dict() for m in self.rules],
            "queries": self.queries,
            "documents": [d.to_dict() for d in self.documents],
        }


def rule_query(question: str, match: RuleMatch, style: RuleQuery = RuleQuery.body, relation: str | None = None) -> str:
    """The retrieval query for one rule.

    ``rule``: the question followed by the rule's text form (the paper's RuleRAG-ICL retriever
    input). ``body``: the question followed by the rule body's relations as words, which points
    the query at the facts the rule needs (the head relation is already in the question).
    ``rewrite``: the question with the words of its relation (``relation``, else the rule's head)
    replaced by the body's relations; falls back to ``body`` when they do not occur in it.

    Example:
        >>> from rulerag.rules import RuleMatch, parse_rule
        >>> m = RuleMatch(parse_rule("citizen_of(X,Y) <- born_in(X,Y)"), 1.0, 1.0, None, "")
        >>> rule_query("Which country is Alice a citizen of?", m)
        'Which country is Alice a citizen of? born in'
    """
    if style == RuleQuery.rule:
        return f"{question} {match.rule.text}"
    body = " ".join(relation_words(a.relation) for a in match.rule.body)
    if style == RuleQuery.rewrite:
        head = relation_words(relation or match.rule.head.relation)
        at = question.lower().find(head.lower())
        if head and at >= 0:
            return question[:at] + body + question[at + len(head) :]
    return f"{question} {body}"


class RuleGuidedRetriever:
    """Standard or rule-guided retrieval over a :class:`Searcher`, single or batched."""

    def __init__(
        self,
        searcher: Searcher,
        docs: Sequence[Document],
        rules: RuleStore | None = None,
        settings: RetrievalSettings | None = None,
        rule_settings: RuleSettings | None = None,
        facts: FactIndex | None = None,
        reasoner: ReasonerSettings | None = None,
    ) -> None:
        self.searcher = searcher
        self.docs = docs
        self.rules = rules
        self.settings = settings or searcher.settings
        self.rule_settings = rule_settings or RuleSettings()
        self._times: list[str | None] | None = None
        self._facts: FactIndex | None = facts  # built on first use when not given
        self.reasoner = RuleReasoner.from_settings(reasoner)
        self._pos: dict[str, int] = {}
        self._keys: dict[Dedup, list] = {}

    def match_rules(self, questions: list[str], relations: Sequence[str | None] | None = None) -> list[list[RuleMatch]]:
        """Matched rules per question: by head relation when given, else by text."""
        n = self.settings.max_rules
        if self.rules is None or len(self.rules) == 0 or n == 0:
            return [[] for _ in questions]
        relations = relations or [None] * len(questions)
        out: list[list[RuleMatch] | None] = [None] * len(questions)
        free = [i for i, r in enumerate(relations) if r is None]
        for i, rel in enumerate(relations):
            if rel is not None:
                out[i] = self.rules.match_relation(rel, top_n=n)
        if free:
            texts = [questions[i] for i in free]
            # the masked questions for rule matching, and the questions themselves (searched next),
            # in one encoder call through the searcher's cache
            vectors = self.searcher.encode(self.rules.embedding_texts(texts), also=texts)
            matched = self.rules.match_many(
                texts,
                encoder=self.searcher.encoder,
                question_vectors=vectors,
                top_n=n,
                min_score=self.rule_settings.min_score,
                mention_weight=self.rule_settings.mention_weight,
            )
            for i, m in zip(free, matched):
                out[i] = m
        return [m or [] for m in out]

    def retrieve(
        self, question: str, *, k: int | None = None, mode: Mode | str | None = None, relation: str | None = None, time: str | None = None
    ) -> RetrievalResult:
        """Retrieve for one question (see :meth:`retrieve_many`)."""
        return self.retrieve_many([question], k=k, mode=mode, relations=[relation], times=[time])[0]

    def retrieve_many(
        self,
        questions: list[str],
        *,
        k: int | None = None,
        mode: Mode | str | None = None,
        relations: Sequence[str | None] | None = None,
        times: Sequence[str | None] | None = None,
        subjects: Sequence[str | None] | None = None,
    ) -> list[RetrievalResult]:
        """Retrieve for many questions; all queries of the batch are encoded and searched together.

        ``relations``: structured queries' relations (rules are then matched by head relation).
        ``times``: the questions' times; with ``settings.time_filter`` documents dated on or after
        them are dropped (``YYYY-MM-DD`` or years, compared with the documents' ``time`` field).
        ``subjects``: structured queries' subjects; with ``settings.rule_evidence = n > 0`` (rulerag
        mode, documents with fact metadata) the rules of the question's relation are applied to the
        retrieved facts by :class:`~rulerag.rules.reason.RuleReasoner`, each body atom looked up with
        its bound entity (iterative rule-guided retrieval; with ``reasoner.history_weight > 0`` the
        subject's own past facts are read too), and one document stating each of the ``n`` best
        candidate answers goes into the list (``found_by``: ``reasoner``), interleaved with the
        merged list or ahead of it (``settings.evidence_merge``).
        """
        s = self.settings
        k = k or s.k
        mode = Mode(mode or s.mode)
        relations = relations or [None] * len(questions)
        times = times or [None] * len(questions)
        subjects = subjects or [None] * len(questions)
        matches = self.match_rules(questions, relations) if mode == Mode.rulerag else [[] for _ in questions]
        queries: list[list[str]] = [
            [q] + [rule_query(q, m, s.rule_query, rel) for m in ms] for q, ms, rel in zip(questions, matches, relations)
        ]
        flat = [q for qs in queries for q in qs]
        widen = 4 if (s.dedup != Dedup.none or any(times)) else 1  # room for collapsed and filtered hits
        lists = self.searcher.search_many(flat, retriever=s.retriever, depth=max(s.depth, k) * widen)
        results = []
        start = 0
        for question, ms, qs, when, subject, relation in zip(questions, matches, queries, times, subjects, relations):
            own = lists[start : start + len(qs)]
            start += len(qs)
            if when is not None and s.time_filter:
                own = [self._before(hits, when) for hits in own]
            labels = ["question"] + [f"rule:{m.rule.id}" for m in ms]
            merged = self._merge(own)
            if s.rule_evidence and mode == Mode.rulerag and subject and relation and self.rules is not None:
                evidence = self._evidence(merged, subject, relation, when)
                if evidence:
                    own, labels = own + [evidence], labels + ["reasoner"]
                    first = s.evidence_merge == EvidenceMerge.first
                    merged = round_robin([evidence + merged] if first else [merged, evidence])  # a document's first place wins
            merged = self._collapse(merged)[:k]
            docs = [
                ScoredDocument.from_document(self.docs[h.pos], h.score, rank, self._found_by(h.pos, own, labels))
                for rank, h in enumerate(merged, start=1)
            ]
            results.append(RetrievalResult(question, mode, docs, ms, qs))
        return results

    def _evidence(self, merged: list[Hit], subject: str, relation: str, when: str | None) -> list[Hit]:
        """One document stating each of the reasoner's best candidates, best candidate first."""
        if self._facts is None:
            self._facts = FactIndex(self.docs)
        if not self._pos:
            self._pos = {d.id: i for i, d in enumerate(self.docs)}
        facts = self._facts.facts_at(h.pos for h in merged[: self.settings.depth])
        candidates = self.reasoner.reason_with(Query(subject, relation, when), self.rules.by_head(relation), facts, self._facts)
        out: list[Hit] = []
        for cand in candidates[: self.settings.rule_evidence]:
            for doc_id in cand.evidence:
                pos = self._pos.get(doc_id)
                fact = self._facts.facts[pos] if pos is not None else None
                if fact is not None and cand.answer in (fact.subject, fact.object):
                    out.append(Hit(pos, cand.score))
                    break
        return out

    def _doc_times(self) -> list[str | None]:
        if self._times is None:
            self._times = [d.metadata.get("time") if isinstance(d.metadata.get("time"), str) else None for d in self.docs]
        return self._times

    def _before(self, hits: list[Hit], when: str) -> list[Hit]:
        # ISO dates and 4-digit years both order correctly as strings
        times = self._doc_times()
        return [h for h in hits if times[h.pos] is None or times[h.pos] < when]

    def _collapse(self, hits: list[Hit]) -> list[Hit]:
        dedup = self.settings.dedup
        if dedup == Dedup.none:
            return hits
        if self._keys.get(dedup) is None:
            fields = ("subject", "relation", "object") if dedup == Dedup.fact else ("subject", "object")
            self._keys[dedup] = [
                tuple(d.metadata.get(f) for f in fields) if all(f in d.metadata for f in fields) else ("doc", i)
                for i, d in enumerate(self.docs)
            ]
        keys = self._keys[dedup]
        seen: set = set()
        out = []
        for h in hits:
            if keys[h.pos] not in seen:
                seen.add(keys[h.pos])
                out.append(h)
        return out

    def _merge(self, lists: list[list[Hit]]) -> list[Hit]:
        if len(lists) == 1:
            return lists[0]
        if self.settings.merge == MergePolicy.round_robin:
            return round_robin(lists)
        return rrf(lists, rrf_k=self.settings.rrf_k)

    @staticmethod
    def _found_by(pos: int, lists: list[list[Hit]], labels: list[str]) -> tuple[str, ...]:
        return tuple(label for label, hits in zip(labels, lists) if any(h.pos == pos for h in hits))
