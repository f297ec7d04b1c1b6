"""Read and write rule files: :func:`parse_rule` for one rule, :func:`load_rules` for JSONL, text
(one rule per line) and AnyBURL output, :func:`save_rules` for JSONL. The two text forms a rule may
be written in are described in :mod:`rulerag.rules.atoms`.

Example:
    >>> parse_rule("r2(A,B) <- r1(B,A)") == parse_rule("[Entity2, r1, Entity1] leads to [Entity1, r2, Entity2]")
    True
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from rulerag.errors import RuleFormatError
from rulerag.io import atomic_file
from rulerag.rules.atoms import RULE_EXAMPLE, InvalidRule, parse_atoms
from rulerag.rules.model import Rule

log = logging.getLogger(__name__)


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
        raise RuleFormatError(path, None, "no rules found", f"add one rule per line: {RULE_EXAMPLE}")
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
