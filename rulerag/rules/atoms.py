"""Atoms and the rule grammar: the :class:`Atom` type, :class:`InvalidRule`, and :func:`parse_atoms`,
which splits a rule written in either text form into its head and body atoms.

Text form (variables are any identifiers; atoms joined by ``&``, ``,``, ``and`` or ``^``)::

    [Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]
    [Entity1, r1, Entity3] & [Entity3, r3, Entity2] leads to [Entity1, r2, Entity2]

Datalog form (``<-``, ``:-`` or ``<=``; atoms joined by ``,``, ``&``, ``and`` or ``^``)::

    r2(X,Y) <- r1(X,Z), r3(Z,Y)

Relation names may hold spaces, ``_``, ``/``, ``.``, balanced parentheses and even commas: in the
text form the subject is before the first comma and the object after the last one; in the datalog
form the arguments are the last ``(X,Y)`` group of each atom.

Example:
    >>> parse_atoms("[X, born_in, Y] leads to [X, citizen_of, Y]")
    (Atom(relation='citizen_of', subject='X', object='Y'), (Atom(relation='born_in', subject='X', object='Y'),))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A rule in each text form, quoted in error messages' fixes.
RULE_EXAMPLE = "[Entity1, r1, Entity2] leads to [Entity1, r2, Entity2] or r2(X,Y) <- r1(X,Y)"
_FIX = f"write {RULE_EXAMPLE}"


class InvalidRule(ValueError):
    """A rule that breaks a structural or numeric constraint; ``fix`` says how to repair it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}" if fix else problem)


@dataclass(frozen=True)
class Atom:
    """One triple pattern ``relation(subject, object)``; subject and object are variables.

    Example:
        >>> Atom("born_in", "X", "Y").variables
        ('X', 'Y')
    """

    relation: str
    subject: str
    object: str

    @property
    def variables(self) -> tuple[str, str]:
        return (self.subject, self.object)

    def to_dict(self) -> dict[str, str]:
        return {"relation": self.relation, "subject": self.subject, "object": self.object}


_VAR = re.compile(r"\??[A-Za-z_][A-Za-z0-9_]*\Z")
_ARROW = re.compile(r"<-|:-|<=")
_LEADS = re.compile(r"\bleads\s+to\b", re.IGNORECASE)
_JOINER = re.compile(r"(?:&|,|\^|∧|and)\Z", re.IGNORECASE)
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_DL_ARGS = re.compile(r"\(\s*[^\s(),]+\s*,\s*[^\s(),]+\s*\)")
_DL_ATOM = re.compile(
    r"\s*(?P<rel>.*?)\s*\(\s*(?P<s>[^\s(),]+)\s*,\s*(?P<o>[^\s(),]+)\s*\)\s*(?:(?P<sep>,|&|\^|∧|\band\b)|\Z)",
    re.DOTALL | re.IGNORECASE,
)


def _atom(relation: str, subject: str, obj: str) -> Atom:
    relation, subject, obj = relation.strip(), subject.strip(), obj.strip()
    if not relation:
        raise InvalidRule("an atom has an empty relation name", "write the relation between the two variables")
    for var in (subject, obj):
        if not _VAR.match(var):
            raise InvalidRule(f"{var!r} in atom with relation {relation!r} is not a variable name",
                              "use identifiers such as Entity1, X or A (constants are not supported)")
    return Atom(relation, subject, obj)


def _text_atoms(part: str, what: str) -> list[Atom]:
    atoms, pos = [], 0
    for m in _BRACKET.finditer(part):
        gap = part[pos : m.start()].strip()
        if "[" in gap or "]" in gap:
            raise InvalidRule(f"unbalanced bracket in the {what}", "close every '[' with one ']'")
        if atoms and not _JOINER.match(gap) or not atoms and gap:
            problem = f"unexpected text {gap!r} in the {what}" if gap else f"atoms without a joiner in the {what}"
            raise InvalidRule(problem, "join body atoms with ' & '")
        inner = m.group(1)
        if inner.count(",") < 2:
            raise InvalidRule(f"atom [{inner}] does not have three comma-separated parts",
                              "write atoms as [Entity1, relation, Entity2]")
        subject, rest = inner.split(",", 1)
        relation, obj = rest.rsplit(",", 1)
        atoms.append(_atom(relation, subject, obj))
        pos = m.end()
    tail = part[pos:].strip()
    if "[" in tail or "]" in tail:
        raise InvalidRule(f"unbalanced bracket in the {what}", "close every '[' with one ']'")
    if tail or not atoms:
        raise InvalidRule(f"expected [subject, relation, object] atoms in the {what}, found {part.strip()!r}", _FIX)
    return atoms


def _datalog_atoms(part: str, what: str) -> list[Atom]:
    atoms, pos, part = [], 0, part.strip()
    if not part:
        raise InvalidRule(f"the {what} is empty", _FIX)
    while pos < len(part) or not atoms:
        m = _DL_ATOM.match(part, pos)
        if not m or not m.group("rel").strip():
            raise InvalidRule(f"cannot read a relation(X,Y) atom in the {what} at {part[pos:]!r}",
                              "write atoms as relation(X,Y), separated by commas")
        relation = m.group("rel")
        depth = 0
        for c in relation:
            depth += {"(": 1, ")": -1}.get(c, 0)
            if depth < 0:
                break
        if depth:
            raise InvalidRule(f"unbalanced parenthesis in the {what} near {relation.strip()!r}",
                              "close every '(' with one ')'")
        if _DL_ARGS.search(relation):
            raise InvalidRule(f"missing separator between atoms in the {what} near {relation.strip()!r}",
                              "separate atoms with ', '")
        atoms.append(_atom(relation, m.group("s"), m.group("o")))
        pos = m.end()
        if m.group("sep") and pos >= len(part):
            raise InvalidRule(f"the {what} ends with {m.group('sep')!r}", "remove the trailing separator")
    return atoms


def parse_atoms(text: str) -> tuple[Atom, tuple[Atom, ...]]:
    """Split a rule in either form into ``(head, body)`` without validating it.

    Raises :class:`InvalidRule` (a ``ValueError``).

    Example:
        >>> parse_atoms("r2(X,Y) :- r1(X,Y)")[0]
        Atom(relation='r2', subject='X', object='Y')
    """
    s = text.strip()
    if s.startswith("[") or (not _ARROW.search(s) and _LEADS.search(s)):
        parts = _LEADS.split(s)
        if len(parts) == 2:
            head = _text_atoms(parts[1], "head")
            if len(head) != 1:
                raise InvalidRule(f"the head has {len(head)} atoms; it must have exactly one", _FIX)
            return head[0], tuple(_text_atoms(parts[0], "body"))
        if len(parts) > 2:
            raise InvalidRule("the rule has more than one 'leads to'", _FIX)
    elif _ARROW.search(s):
        parts = _ARROW.split(s)
        if len(parts) != 2:
            raise InvalidRule("the rule has more than one '<-'", _FIX)
        head = _datalog_atoms(parts[0], "head")
        if len(head) != 1:
            raise InvalidRule(f"the head has {len(head)} atoms; it must have exactly one", _FIX)
        return head[0], tuple(_datalog_atoms(parts[1], "body"))
    raise InvalidRule(f"expected 'leads to' or '<-' in {s!r}" if s else "empty rule", _FIX)
