"""Read and write rules: RuleRAG's text form, a datalog-like form, and JSONL.

Text form (variables are any identifiers; atoms joined by ``&``, ``,``, ``and`` or ``^``)::

    [Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]
    [Entity1, r1, Entity3] & [Entity3, r3, Entity2] leads to [Entity1, r2, Entity2]

Datalog form (``<-``, ``:-`` or ``<=``; atoms joined by ``,``, ``&``, ``and`` or ``^``)::

    r2(X,Y) <- r1(X,Z), r3(Z,Y)

Relation names may hold spaces, ``_``, ``/``, ``.``, balanced parentheses and even commas: in the
text form the subject is before the first comma and the object after the last one; in the datalog
form the arguments are the last ``(X,Y)`` group of each atom.

Example:
    >>> parse_rule("r2(A,B) <- r1(B,A)") == parse_rule("[Entity2, r1, Entity1] leads to [Entity1, r2, Entity2]")
    True
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from rulerag.errors import RuleFormatError
from rulerag.io import atomic_file
from rulerag.rules.model import Atom, InvalidRule, Rule

log = logging.getLogger(__name__)

_FIX = "write [Entity1, r1, Entity2] leads to [Entity1, r2, Entity2] or r2(X,Y) <- r1(X,Y)"
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

    Raises :class:`~rulerag.rules.model.InvalidRule` (a ``ValueError``).

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


def parse_rule(text: str, *, source: str | Path = "<rule>", line: int | None = None) -> Rule:
    """Parse and validate one rule in the text or datalog form.

    Raises :class:`~rulerag.errors.RuleFormatError` naming ``source:line``.

    Example:
        >>> parse_rule("[X, r1, Z] & [Z, r3, Y] leads to [X, r2, Y]").datalog
        'r2(X,Y) <- r1(X,Z), r3(Z,Y)'
    """
    try:
        head, body = parse_atoms(text)
        return Rule(head, body)
    except InvalidRule as exc:
        raise RuleFormatError(source, line, exc.problem, exc.fix) from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _from_text_line(line: str) -> Rule:
    # AnyBURL output: "<predictions>\t<correct>\t<confidence>\t<rule>"; correct predictions -> support.
    cols = line.split("\t")
    if len(cols) == 4 and all(_number(c) is not None for c in cols[:3]):
        support = _number(cols[1])
        head, body = parse_atoms(cols[3])
        return Rule(head, body, confidence=_number(cols[2]),
                    support=int(support) if support is not None and support.is_integer() else support)
    return Rule(*parse_atoms(line))


def _from_json_line(line: str) -> Rule:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidRule(f"invalid JSON ({exc.msg} at column {exc.colno})", "write one JSON object per line") from None
    return Rule.from_dict(data)


def load_rules(path: str | Path) -> list[Rule]:
    """Load rules from ``.jsonl`` (one JSON object per line) or plain text (one rule per line).

    Blank lines and lines starting with ``#`` are skipped. A rule equal to an earlier one (same
    logic, whatever its statistics) is dropped with a logged warning; the first one is kept. Text
    files also accept AnyBURL's tab-separated ``predictions, correct, confidence, rule`` lines.
    Every problem raises :class:`~rulerag.errors.RuleFormatError` with ``file:line``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "rules.txt"
        >>> _ = p.write_text("# demo\\n[A, born_in, B] leads to [A, citizen_of, B]\\n")
        >>> [r.datalog for r in load_rules(p)]
        ['citizen_of(X,Y) <- born_in(X,Y)']
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a directory, not a rule file" if path.is_dir() else "rule file not found"
        raise RuleFormatError(path, None, problem, "pass the path of a .jsonl or .txt rule file")
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError:
        raise RuleFormatError(path, None, "the file is not UTF-8 text", "save it as UTF-8") from None
    reader = _from_json_line if path.suffix.lower() in (".jsonl", ".ndjson") else _from_text_line
    first_seen: dict[Rule, int] = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rule = reader(line)
        except InvalidRule as exc:
            raise RuleFormatError(path, lineno, exc.problem, exc.fix) from None
        if rule in first_seen:
            log.warning("%s:%d: duplicate of the rule on line %d (%s); keeping the first",
                        path, lineno, first_seen[rule], rule.datalog)
            continue
        first_seen[rule] = lineno
    if not first_seen:
        raise RuleFormatError(path, None, "no rules found", f"add one rule per line: {_FIX.removeprefix('write ')}")
    return list(first_seen)


def save_rules(rules: Iterable[Rule], path: str | Path) -> int:
    """Write rules as JSONL (atomically) and return how many were written.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "rules.jsonl"
        >>> save_rules([parse_rule("r2(X,Y) <- r1(X,Y)")], p)
        1
    """
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise ValueError(f"{path}: save_rules writes JSONL. Fix: use a path ending in .jsonl")
    n = 0
    with atomic_file(path) as fh:
        for rule in rules:
            fh.write(json.dumps(rule.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n
