"""Verify-and-refine: check an answer against verifiable constraints and re-ask while some fail.

With ``repair=True`` every answer (the first and each re-asked one) first goes through the
deterministic repairs of :mod:`rulerag.checking.repair` (mechanical fixes for the failed
constraints, each kept only when it breaks nothing that passed), and the model is re-asked only
for what still fails.

Example:
    >>> from rulerag.generation import FixedBackend, standard_prompt
    >>> result = verify_and_refine(FixedBackend("norland"), standard_prompt("q?", ["d"]),
    ...                            [Constraint("format_no_commas")], max_new_tokens=8)
    >>> result.answer, result.report.strict.follow_all_instructions, len(result.rounds)
    ('norland', True, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rulerag.checking import CheckReport, check
from rulerag.checking.repair import repair_answer
from rulerag.generation import Generator, Prompt, echoes_prompt, refine_prompt


@dataclass(frozen=True)
class Constraint:
    """A verifiable output constraint: an IFEval or FollowRAG instruction id and its kwargs.

    Example:
        >>> Constraint("length_words", {"relation": "less than", "num_words": 20}).describe()
        'length_constraints:number_words (< N / >= N words; num_words=20, relation=less than)'
    """

    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """The constraint in words, as the generator sees it when it failed."""
        from rulerag.checking.instructions import canonical_id, get_spec

        cid = canonical_id(self.id)
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.kwargs.items()))
        return f"{cid} ({get_spec(cid).description}" + (f"; {args})" if args else ")")


@dataclass
class RefineResult:
    """The kept answer, its check report, and every attempt (``answer``, ``followed``, ``kept``)."""

    answer: str
    report: CheckReport
    rounds: list[dict[str, Any]]
    first_answer: str
    first_report: CheckReport


def verify_and_refine(
    generator: Generator,
    prompt: Prompt,
    constraints: Sequence[Constraint],
    *,
    rounds: int = 2,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    question: str | None = None,
    documents: Sequence[str] | None = None,
    golden_answers: Sequence[str] | None = None,
    first_answer: str | None = None,
    repair: bool = False,
) -> RefineResult:
    """Generate (or take ``first_answer``), check, and while constraints fail re-prompt with the
    failed ones named, up to ``rounds`` extra times. Keeps the answer that follows the most
    constraints (strict), the earliest on ties. Unsatisfiable constraint sets stop at once.

    ``repair``: repair each answer by code before checking it (see the module docstring). Each
    ``rounds`` entry then holds ``repairs`` (the repaired instruction ids) and, when a repair was
    kept, ``generated`` (the text as the model wrote it); ``first_answer`` of the result stays
    the unrepaired first answer. A re-asked answer that copies the prompt's tags
    (:func:`~rulerag.generation.echoes_prompt`) is recorded with ``echo`` and never kept; with
    ``question`` given, the forbidden-words repair deletes only words the question uses."""
    ids = [c.id for c in constraints]
    kwargs = [dict(c.kwargs) for c in constraints]

    def score(answer: str) -> CheckReport:
        return check(answer, ids, kwargs, question=question, documents=documents, golden_answers=golden_answers)

    def attempt(raw: str) -> tuple[str, CheckReport, dict[str, Any]]:
        row: dict[str, Any] = {}
        answer = raw
        if repair:
            fixed = repair_answer(raw, ids, kwargs, question=question)
            answer, row["repairs"] = fixed.answer, fixed.applied
            if fixed.applied:
                row["generated"] = raw
        report = score(answer)
        row.update(answer=answer, followed=sum(report.strict.follow_instruction_list), of=len(ids))
        return answer, report, row

    raw = first_answer if first_answer is not None else generator.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature)
    answer, report, row = attempt(raw)
    first = (raw, report if answer == raw else score(raw))
    best = (answer, report, row["followed"], 0)
    history = [row]
    for n in range(1, rounds + 1):
        if best[1].strict.follow_all_instructions or best[1].unsatisfiable:
            break
        failed = [c.describe() for c, ok in zip(constraints, best[1].strict.follow_instruction_list) if not ok]
        raw = generator.generate(refine_prompt(prompt, best[0], failed), max_new_tokens=max_new_tokens, temperature=temperature)
        answer, report, row = attempt(raw)
        history.append(row)
        if echoes_prompt(raw):  # the model repeated its prompt: not an answer, whatever it passes
            row["echo"] = True
        elif row["followed"] > best[2]:
            best = (answer, report, row["followed"], n)
    for i, row in enumerate(history):
        row["kept"] = i == best[3]
    return RefineResult(best[0], best[1], history, first[0], first[1])
