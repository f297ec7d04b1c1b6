"""Grounded rule paths: the reasoner's candidates as short evidence lines that cite documents.

RoG-style reasoning paths for the ``grounded`` prompt (:func:`rulerag.generation.prompts.grounded_prompt`).
Instead of abstract rule text ("[Entity1, born_in, Entity2] leads to ...") a small generator reads
the rule already applied to the documents, with the answer it leads to::

    [3] Alice Marlow serves in army of Norland. + rule serves_in_army_of -> citizen_of (0.87) => Norland
    [2] Alice Marlow born in Tarvik. + [5] Tarvik located in Norland. + rule born_in, located_in -> citizen_of (0.61) => Norland
    [4] Alice Marlow consult Bram Olsen. (past fact of the subject) => Bram Olsen
    (a usual answer of citizen of) => Norland

:func:`render_paths` writes one line per candidate (best first): the candidate's most confident rule
whose grounding is among the candidate's evidence facts, else its history fact, else the relation
prior. Every ``[n]`` is a position in the returned document list: the retrieved documents first,
then the evidence documents that were not retrieved, so the prompt is self-contained.

For plain-text corpora (no fact metadata, so no reasoner candidates), :func:`lexical_paths` matches
each rule's body relations to passages that mention them (the relation's content words, as the rule
store matches questions) and cites those passages, without an answer.

Example:
    >>> from rulerag.rules import parse_rule
    >>> from rulerag.rules.reason import Candidate, Fact, Query
    >>> rule = parse_rule("citizen_of(X,Y) <- serves_in_army_of(X,Y)")
    >>> facts = {"d9": Fact("Alice Marlow", "serves_in_army_of", "Norland", doc_id="d9")}
    >>> paths = render_paths([Candidate("Norland", 0.87, [rule.id], ["d9"])], ["d1"], facts.get,
    ...                      {rule.id: rule}, Query("Alice Marlow", "citizen_of"))
    >>> paths.doc_ids
    ['d1', 'd9']
    >>> paths.lines
    ['[2] Alice Marlow serves in army of Norland. + rule serves_in_army_of -> citizen_of => Norland']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rulerag.corpus import linearise_fact
from rulerag.rules.model import Atom, Rule
from rulerag.rules.reason import Candidate, Fact, Query
from rulerag.rules.store import _content_words, _words_match
from rulerag.text import normalize_answer, relation_words, tokenize


@dataclass(frozen=True)
class GroundedPaths:
    """Documents of a grounded prompt (ids, in prompt order) and the path lines citing them."""

    doc_ids: list[str]
    lines: list[str]


def rule_label(rule: Rule) -> str:
    """A rule in a path: ``rule born_in, located_in -> citizen_of (0.61)`` (no confidence: none shown).

    Example:
        >>> from rulerag.rules import parse_rule
        >>> rule_label(parse_rule("citizen_of(X,Y) <- born_in(X,Z), located_in(Z,Y)"))
        'rule born_in, located_in -> citizen_of'
    """
    conf = f" ({rule.confidence:.2f})" if rule.confidence is not None else ""
    return f"rule {', '.join(rule.body_relations)} -> {rule.head.relation}{conf}"


def _ground(atoms: Sequence[Atom], binding: dict[str, str], facts: Sequence[Fact]) -> list[Fact] | None:
    """Facts grounding ``atoms`` in order, consistent with ``binding`` (variable -> entity); None if none."""
    if not atoms:
        return []
    atom = atoms[0]
    for f in facts:
        if f.relation != atom.relation:
            continue
        b = dict(binding)
        if b.setdefault(atom.subject, f.subject) != f.subject or b.setdefault(atom.object, f.object) != f.object:
            continue
        rest = _ground(atoms[1:], b, facts)
        if rest is not None:
            return [f, *rest]
    return None


def render_paths(
    candidates: Sequence[Candidate],
    doc_ids: Sequence[str],
    fact_of: Callable[[str], Fact | None],
    rules_by_id: Mapping[str, Rule],
    query: Query,
    *,
    top: int = 3,
) -> GroundedPaths:
    """One evidence line for each of the ``top`` best ``candidates`` (see the module docstring).

    ``doc_ids``: the retrieved documents (they keep their numbers 1..n); ``fact_of``: the fact of a
    document id (None for a document without fact metadata); ``rules_by_id``: the rules the
    candidates name; ``query``: the question (its subject is the rules' ``X``).
    """
    subject = query.subject
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    order = list(dict.fromkeys(doc_ids))
    position = {d: i + 1 for i, d in enumerate(order)}

    def cite(doc_id: str | None) -> str:
        if doc_id not in position:
            order.append(doc_id)
            position[doc_id] = len(order)
        return f"[{position[doc_id]}]"

    def fact_text(f: Fact) -> str:
        return f"{cite(f.doc_id)} {linearise_fact(f.subject, f.relation, f.object)}"

    lines = []
    for cand in candidates[:top]:
        evidence = [f for f in map(fact_of, cand.evidence) if f is not None and f.doc_id]
        rules = sorted((rules_by_id[r] for r in cand.rules if r in rules_by_id),
                       key=lambda r: -(r.confidence if r.confidence is not None else 1.0))
        line = None
        for rule in rules:
            grounding = _ground(rule.body, {"X": subject, "Y": cand.answer}, evidence)
            if grounding is not None:
                line = " + ".join([*map(fact_text, grounding), rule_label(rule)])
                break
        if line is None and "history" in cand.rules:
            past = [f for f in evidence if {f.subject, f.object} == {subject, cand.answer}]
            if past:
                line = f"{fact_text(past[-1])} (past fact of the subject)"
        if line is None and rules:
            line = rule_label(rules[0])
        if line is None and "prior" in cand.rules:
            line = f"(a usual answer of {relation_words(query.relation)})"
        lines.append(f"{line or '(reasoner candidate)'} => {cand.answer}")
    return GroundedPaths(order, lines)


def _mentions(tokens: set[str], relation: str) -> bool:
    """A passage (its tokens) mentions a relation: every content word of the relation occurs in it."""
    words = _content_words(relation)
    return bool(words) and all(any(_words_match(w, t) for t in tokens) for w in words)


def lexical_paths(rules: Sequence[Rule], passages: Sequence[str], *, subject: str | None = None, top: int = 3) -> list[str]:
    """Rule paths over plain-text passages: for each rule (in order, at most ``top`` lines), the
    first passage (1-based, as in the prompt) mentioning each body relation's content words, the
    first atom's preferably also naming ``subject``; a rule is left out unless every body atom has a
    passage. Lines have no answer: ``[2] + [5] + rule born_in, located_in -> citizen_of (0.61)``.

    Example:
        >>> from rulerag.rules import parse_rule
        >>> lexical_paths([parse_rule("citizen_of(X,Y) <- born_in(X,Y)")],
        ...               ["Bram works in Ulm.", "Alice was born in Norland."], subject="Alice")
        ['[2] + rule born_in -> citizen_of']
    """
    tokens = [set(tokenize(p)) for p in passages]
    names = [normalize_answer(p) for p in passages]
    who = normalize_answer(subject) if subject else ""

    def mentions(i: int, relation: str) -> bool:
        return _mentions(tokens[i], relation)

    lines = []
    for rule in rules:
        if len(lines) >= top:
            break
        cited = []
        for k, atom in enumerate(rule.body):
            hits = [i for i in range(len(passages)) if mentions(i, atom.relation)]
            if k == 0 and who:
                hits.sort(key=lambda i: who not in names[i])  # stable: passages naming the subject first
            if not hits:
                break
            cited.append(f"[{hits[0] + 1}]")
        else:
            lines.append(" + ".join([*cited, rule_label(rule)]))
    return lines


@dataclass(frozen=True)
class Support:
    """Why an answer: the passages that state it and the rule paths that lead to it.

    ``supported``: some passage states the answer (``documents``: their 1-based numbers); ``paths``:
    lines such as ``[2] Alice Marlow serves in army of Norland. + rule serves_in_army_of ->
    citizen_of (0.87) => Norland``, one per matched rule whose body relations the passages mention,
    the last of them in a passage that states the answer; or the bare ``[2] ... => Norland`` when no
    rule fits.
    """

    supported: bool
    documents: list[int]
    paths: list[str]

    def to_dict(self) -> dict:
        return {"supported": self.supported, "documents": self.documents, "paths": self.paths}


def answer_support(answer: str, passages: Sequence[str], rules: Sequence[Rule] = (), *, top: int = 3, width: int = 90) -> Support:
    """The :class:`Support` of ``answer`` among the prompt's ``passages`` (numbered from 1) under the
    matched ``rules`` (best first). An empty answer is unsupported with no path.

    Example:
        >>> from rulerag.rules import parse_rule
        >>> s = answer_support("Norland", ["Alice lives in Tarvik.", "Alice serves in army of Norland."],
        ...                    [parse_rule("citizen_of(X,Y) <- serves_in_army_of(X,Y)")])
        >>> s.supported, s.documents
        (True, [2])
        >>> s.paths
        ['[2] Alice serves in army of Norland. + rule serves_in_army_of -> citizen_of => Norland']
        >>> answer_support("Karsland", ["Alice lives in Tarvik."]).supported
        False
    """
    target = normalize_answer(answer)
    if not target:
        return Support(False, [], [])
    stating = [i + 1 for i, p in enumerate(passages) if f" {target} " in f" {normalize_answer(p)} "]
    if not stating:
        return Support(False, [], [])

    def shown(n: int) -> str:
        text = " ".join(passages[n - 1].split())
        return f"[{n}] {text if len(text) <= width else text[: width - 1] + '…'}"

    tokens = [set(tokenize(p)) for p in passages]
    paths = []
    for rule in rules:
        if len(paths) >= top:
            break
        *first, last = rule.body
        end = next((n for n in stating if _mentions(tokens[n - 1], last.relation)), None)
        if end is None:  # the rule's last body relation must be stated where the answer is
            continue
        before = [next((i + 1 for i in range(len(passages)) if i + 1 != end and _mentions(tokens[i], a.relation)), None)
                  for a in first]
        if None not in before:
            cited = [f"[{n}]" for n in before]
            paths.append(" + ".join([*cited, shown(end), rule_label(rule)]) + f" => {answer}")
    if not paths:
        paths = [f"{shown(stating[0])} => {answer}"]
    return Support(True, stating, paths)
