"""Rules as data: :class:`Atom` and :class:`Rule`, with the two text forms RuleRAG uses.

A rule ``r2(X,Y) <- r1(X,Z), r3(Z,Y)`` says: if the body holds, the head holds. Variables are
renamed on construction (head ``X, Y``; other variables ``Z, W, ...`` in order of first appearance
in the body), so the same rule written with other variable names compares equal. Body order is
kept as written: it is how people read chains.

Rules are *closed* and small: at most :data:`MAX_BODY` body atoms, connected through shared
variables, each variable in at least two atoms, both head variables in the body, and no atom with
the same variable twice (``r(X,X)`` is rejected: mined path rules never need it and it makes the
text form ambiguous). Constants are not supported; every argument is a variable.

Example:
    >>> rule = Rule(Atom("citizen_of", "A", "B"), (Atom("born_in", "A", "B"),), confidence=0.8)
    >>> rule.text
    '[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]'
    >>> rule.datalog
    'citizen_of(X,Y) <- born_in(X,Y)'
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from rulerag.rules.atoms import RULE_EXAMPLE, Atom, InvalidRule, parse_atoms

#: Longest body accepted. Mined path rules (AMIE, AnyBURL, RuleRAG's RuleQA) use 1 to 3 atoms.
MAX_BODY = 3
#: The joiner written between body atoms in the text form (``&``, ``,``, ``and``, ``^`` parse).
TEXT_JOINER = " & "

_HEAD_VARS = ("X", "Y")
_EXTRA_VARS = ("Z", "W", "V", "U")
_METRICS = ("confidence", "head_coverage", "pca_confidence")


def _canonical_names(head: Atom, body: tuple[Atom, ...]) -> dict[str, str]:
    names = {head.subject: _HEAD_VARS[0], head.object: _HEAD_VARS[1]}
    for atom in body:
        for var in atom.variables:
            if var not in names:
                k = len(names) - 2
                names[var] = _EXTRA_VARS[k] if k < len(_EXTRA_VARS) else f"V{k}"
    return names


def _text_var(var: str) -> str:
    order = _HEAD_VARS + _EXTRA_VARS
    return f"Entity{order.index(var) + 1}" if var in order else f"Entity{int(var[1:]) + 1}"


@dataclass(frozen=True)
class Rule:
    """A Horn rule ``head <- body`` with optional mining statistics.

    Equality and hashing use the logic only (head and body): the same rule with other statistics
    or another ``id`` is equal. ``id`` defaults to a short hash of :attr:`datalog`.

    Example:
        >>> a = Rule(Atom("r2", "X", "Y"), (Atom("r1", "X", "Z"), Atom("r3", "Z", "Y")))
        >>> b = Rule(Atom("r2", "A", "B"), (Atom("r1", "A", "C"), Atom("r3", "C", "B")), confidence=0.5)
        >>> a == b, a.id == b.id, a.length
        (True, True, 2)
    """

    head: Atom
    body: tuple[Atom, ...]
    confidence: float | None = field(default=None, compare=False)
    support: int | None = field(default=None, compare=False)
    head_coverage: float | None = field(default=None, compare=False)
    pca_confidence: float | None = field(default=None, compare=False)
    id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "body", tuple(self.body) if isinstance(self.body, (list, tuple)) else self.body)
        self.validate()
        for name in _METRICS:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        names = _canonical_names(self.head, self.body)
        rename = lambda a: Atom(a.relation, names[a.subject], names[a.object])  # noqa: E731
        object.__setattr__(self, "head", rename(self.head))
        object.__setattr__(self, "body", tuple(rename(a) for a in self.body))
        if not self.id:
            object.__setattr__(self, "id", hashlib.sha1(self.datalog.encode("utf-8")).hexdigest()[:12])

    def validate(self) -> Rule:
        """Check structure and statistics; raise :class:`InvalidRule` (a ``ValueError``) if broken.

        Example:
            >>> try:
            ...     Rule(Atom("r2", "X", "Y"), (Atom("r1", "X", "Z"),))
            ... except ValueError as exc:
            ...     print(exc.problem)
            head variable 'Y' does not occur in the body
        """
        if not isinstance(self.body, tuple) or not self.body:
            raise InvalidRule("the rule has no body atoms", f"write at least one body atom: {RULE_EXAMPLE}")
        if len(self.body) > MAX_BODY:
            raise InvalidRule(f"the body has {len(self.body)} atoms; at most {MAX_BODY} are supported",
                              "split the rule or drop it")
        atoms = (self.head, *self.body)
        for atom in atoms:
            if not isinstance(atom, Atom):
                raise InvalidRule(f"expected an Atom, got {type(atom).__name__}", "build rules from Atom objects")
            for value in (atom.relation, atom.subject, atom.object):
                if not isinstance(value, str) or not value:
                    raise InvalidRule(f"empty or non-text part in atom {atom}", "give every atom a relation and two variables")
            if any(c in atom.relation for c in "[]\n"):
                raise InvalidRule(f"relation {atom.relation!r} contains '[', ']' or a newline",
                                  "rename the relation without brackets")
            if atom.subject == atom.object:
                raise InvalidRule(f"atom {atom.relation}({atom.subject},{atom.object}) uses the same variable twice",
                                  "use two different variables in every atom")
        body_vars = {v for a in self.body for v in a.variables}
        for var in self.head.variables:
            if var not in body_vars:
                raise InvalidRule(f"head variable {var!r} does not occur in the body",
                                  "use both head variables in the body, e.g. r2(X,Y) <- r1(X,Z), r3(Z,Y)")
        reached, todo = set(self.body[0].variables), list(self.body[1:])
        while todo:
            linked = [a for a in todo if reached & set(a.variables)]
            if not linked:
                raise InvalidRule(f"body atom {todo[0].relation}({todo[0].subject},{todo[0].object}) shares no "
                                  "variable with the rest of the body",
                                  "chain body atoms through shared variables, e.g. r1(X,Z), r3(Z,Y)")
            for a in linked:
                reached.update(a.variables)
                todo.remove(a)
        counts: dict[str, int] = {}
        for atom in atoms:
            for var in atom.variables:
                counts[var] = counts.get(var, 0) + 1
        for var, n in counts.items():
            if n < 2:
                raise InvalidRule(f"variable {var!r} occurs only once (rules must be closed)",
                                  "use every variable in at least two atoms, or drop the dangling atom")
        for name in _METRICS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or math.isnan(value) or not 0.0 <= value <= 1.0):
                raise InvalidRule(f"{name} must be a number in [0, 1], got {value!r}", f"set {name} between 0 and 1")
        if self.support is not None and (isinstance(self.support, bool) or not isinstance(self.support, int)
                                         or self.support < 0):
            raise InvalidRule(f"support must be a non-negative integer, got {self.support!r}",
                              "set support to a count such as 12")
        return self

    @property
    def length(self) -> int:
        return len(self.body)

    @property
    def body_relations(self) -> tuple[str, ...]:
        return tuple(a.relation for a in self.body)

    @property
    def datalog(self) -> str:
        """``r2(X,Y) <- r1(X,Z), r3(Z,Y)``."""
        fmt = lambda a: f"{a.relation}({a.subject},{a.object})"  # noqa: E731
        return f"{fmt(self.head)} <- {', '.join(fmt(a) for a in self.body)}"

    @property
    def text(self) -> str:
        """RuleRAG's form: ``[Entity1, r1, Entity3] & [Entity3, r3, Entity2] leads to [Entity1, r2, Entity2]``."""
        fmt = lambda a: f"[{_text_var(a.subject)}, {a.relation}, {_text_var(a.object)}]"  # noqa: E731
        return f"{TEXT_JOINER.join(fmt(a) for a in self.body)} leads to {fmt(self.head)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; statistics that are ``None`` are left out, ``text`` is for humans.

        Example:
            >>> Rule.from_dict(Rule(Atom("r2", "X", "Y"), (Atom("r1", "Y", "X"),), support=3).to_dict()).support
            3
        """
        out: dict[str, Any] = {"id": self.id, "text": self.text, "head": self.head.to_dict(),
                               "body": [a.to_dict() for a in self.body]}
        for name in ("confidence", "support", "head_coverage", "pca_confidence"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        """Build a rule from ``{"head": {...}, "body": [...]}`` or ``{"rule"|"text": "<either form>"}``
        plus optional statistics and ``id``. Unknown keys are ignored. Raises ``ValueError``.
        """
        if not isinstance(data, dict):
            raise InvalidRule(f"expected a JSON object, got {type(data).__name__}", 'write {"rule": "..."} per line')
        stats = {k: data[k] for k in ("confidence", "support", "head_coverage", "pca_confidence") if k in data}
        if isinstance(stats.get("support"), float) and stats["support"].is_integer():
            stats["support"] = int(stats["support"])
        rule_id = data.get("id", "")
        if not isinstance(rule_id, str):
            raise InvalidRule(f"id must be a string, got {rule_id!r}", 'write "id": "r1" or leave it out')
        if "head" in data:
            head = _atom_from_dict(data["head"], "head")
            body = data.get("body")
            if not isinstance(body, list):
                raise InvalidRule('"body" must be a list of atoms', 'write "body": [{"relation": ..., "subject": ..., "object": ...}]')
            return cls(head, tuple(_atom_from_dict(a, "body atom") for a in body), id=rule_id, **stats)
        for key in ("rule", "text"):
            if key in data:
                if not isinstance(data[key], str):
                    raise InvalidRule(f'"{key}" must be a string', f'write "{key}": "{RULE_EXAMPLE.split(" or ")[0]}"')
                head, body = parse_atoms(data[key])
                return cls(head, body, id=rule_id, **stats)
        raise InvalidRule('the object has none of "head", "rule" or "text"',
                          'write {"rule": "r2(X,Y) <- r1(X,Y)"} or {"head": {...}, "body": [...]}')


def _atom_from_dict(data: Any, what: str) -> Atom:
    keys = ("relation", "subject", "object")
    if not isinstance(data, dict) or any(not isinstance(data.get(k), str) for k in keys):
        raise InvalidRule(f"{what} {data!r} is not an object with string relation, subject and object",
                          'write {"relation": "born_in", "subject": "X", "object": "Y"}')
    return Atom(*(data[k].strip() for k in keys))
