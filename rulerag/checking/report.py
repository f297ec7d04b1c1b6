"""One report per response, a file checker and the summary (IFEval accuracies, FollowRAG IF score,
faithfulness and correctness means).

Per item the report keeps IFEval's fields ``follow_all_instructions`` and
``follow_instruction_list``, once for strict and once for loose evaluation, and adds
``unsatisfiable`` (with reasons), faithfulness and correctness scores and an optional judge
verdict. Items whose instructions contradict each other (see
:data:`rulerag.checking.instructions.UNSATISFIABLE_RULES`) are counted separately and left out of
the instruction-following accuracies; their faithfulness and correctness still count.

Input lines for :func:`check_file` use IFEval's field names::

    {"key": 1, "response": "...", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}],
     "question": "...", "documents": ["...", "..."], "golden_answers": ["...", "..."]}

``question`` may be given as ``prompt`` (IFEval's name); ``documents`` may hold strings or
``{"title", "content"}`` / ``{"text"}`` objects; ``golden_answers`` may be a single string.
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rulerag.checking.faithfulness import (
    CorrectnessScores,
    FaithfulnessScores,
    Judge,
    JudgeVerdict,
    NoJudge,
    answer_content,
    correctness,
    faithfulness,
)
from rulerag.checking.injection import echoed_injections
from rulerag.checking.instructions import (
    INSTRUCTIONS,
    InstructionError,
    loose_variants,
    prepare,
    unsatisfiable_reasons,
)
from rulerag.errors import InputFormatError
from rulerag.io import iter_jsonl

_EXAMPLE = '{"response": "...", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}'


@dataclass(frozen=True)
class FollowResult:
    """IFEval's per-item result: all instructions followed, and one bool per instruction."""

    follow_all_instructions: bool
    follow_instruction_list: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {
            "follow_all_instructions": self.follow_all_instructions,
            "follow_instruction_list": list(self.follow_instruction_list),
        }


@dataclass(frozen=True)
class CheckReport:
    """Everything checked about one response. ``instruction_id_list`` is as given (IFEval or
    FollowRAG ids); ``canonical_ids`` are the IFEval ids."""

    response: str
    instruction_id_list: list[str]
    canonical_ids: list[str]
    kwargs: list[dict[str, Any]]
    strict: FollowResult
    loose: FollowResult
    unsatisfiable: bool
    unsatisfiable_reasons: list[str] = field(default_factory=list)
    question: str | None = None
    faithfulness: FaithfulnessScores | None = None
    correctness: CorrectnessScores | None = None
    judge: JudgeVerdict | None = None
    judge_name: str | None = None
    key: Any = None
    line: int | None = None
    injection_echoes: list[str] = field(default_factory=list)

    @property
    def unsatisfiable_reason(self) -> str | None:
        """All reasons joined with ``"; "`` (None when satisfiable)."""
        return "; ".join(self.unsatisfiable_reasons) or None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; strict and loose results under ``strict`` / ``loose`` with IFEval's
        field names."""
        return {
            "key": self.key,
            "line": self.line,
            "question": self.question,
            "response": self.response,
            "instruction_id_list": list(self.instruction_id_list),
            "canonical_ids": list(self.canonical_ids),
            "kwargs": [dict(k) for k in self.kwargs],
            "strict": self.strict.to_dict(),
            "loose": self.loose.to_dict(),
            "unsatisfiable": self.unsatisfiable,
            "unsatisfiable_reason": self.unsatisfiable_reason,
            "unsatisfiable_reasons": list(self.unsatisfiable_reasons),
            "faithfulness": self.faithfulness.to_dict() if self.faithfulness else None,
            "correctness": self.correctness.to_dict() if self.correctness else None,
            "judge": None if self.judge is None else {"name": self.judge_name, **self.judge.to_dict()},
            "injection_echoes": list(self.injection_echoes),
        }


def check(
    response: str,
    instruction_id_list: Sequence[str],
    kwargs: Sequence[Mapping[str, Any] | None] | None = None,
    *,
    question: str | None = None,
    documents: Sequence[str] | None = None,
    golden_answers: str | Sequence[str] | None = None,
    judge: Judge | None = None,
    key: Any = None,
    line: int | None = None,
) -> CheckReport:
    """Check one response: instructions (strict and loose), contradictions, faithfulness to
    ``documents`` (when given), correctness against ``golden_answers`` (when given) and the
    ``judge``'s verdict (when a judge other than :class:`NoJudge` is given).

    Faithfulness, correctness and the judge see the response with forced tokens removed
    (:func:`~rulerag.checking.faithfulness.answer_content`).

    Example:
        >>> r = check("sure, here it is:\\ngravity", ["format_no_commas"], [{}])
        >>> r.strict.follow_all_instructions, r.loose.follow_all_instructions
        (False, True)
    """
    if not isinstance(response, str):
        raise InstructionError(f"response must be a string, got {type(response).__name__}")
    prepared = prepare(instruction_id_list, kwargs)
    strict_variants = [response] if response.strip() else []
    loose = [v for v in loose_variants(response) if v.strip()]
    strict_list = [any(INSTRUCTIONS[i].check(v, kw) for v in strict_variants) for i, kw in prepared]
    loose_list = [s or any(INSTRUCTIONS[i].check(v, kw) for v in loose) for s, (i, kw) in zip(strict_list, prepared)]
    reasons = unsatisfiable_reasons(instruction_id_list, kwargs)
    faith = corr = verdict = None
    if documents is not None:
        faith = faithfulness(
            response, list(documents), question=question, instruction_id_list=instruction_id_list, kwargs=kwargs
        )
    if golden_answers is not None:
        content = faith.content if faith else answer_content(response, instruction_id_list, kwargs)
        corr = correctness(content, golden_answers)
    judge_name = None
    if judge is not None and not isinstance(judge, NoJudge):
        content = faith.content if faith else answer_content(response, instruction_id_list, kwargs)
        verdict = judge(question, content, list(documents or []))
        if not isinstance(verdict, JudgeVerdict):
            name = getattr(judge, "name", judge)
            raise TypeError(f"judge {name!r} returned {type(verdict).__name__}, not JudgeVerdict")
        judge_name = getattr(judge, "name", type(judge).__name__)
    return CheckReport(
        response=response,
        instruction_id_list=[str(i) for i in instruction_id_list],
        canonical_ids=[i for i, _ in prepared],
        kwargs=[kw for _, kw in prepared],
        strict=FollowResult(all(strict_list), strict_list),
        loose=FollowResult(all(loose_list), loose_list),
        unsatisfiable=bool(reasons),
        unsatisfiable_reasons=reasons,
        question=question,
        faithfulness=faith,
        correctness=corr,
        judge=verdict,
        judge_name=judge_name,
        injection_echoes=echoed_injections(response, documents) if documents else [],
        key=key,
        line=line,
    )


# ------------------------------------------------------------------------------------- file


def _documents(path: Path, lineno: int, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InputFormatError(
            path, lineno, f"'documents' must be a list, got {type(value).__name__}", 'write "documents": ["text 1"]'
        )
    docs = []
    for doc in value:
        if isinstance(doc, str):
            docs.append(doc)
        elif isinstance(doc, dict) and isinstance(doc.get("content", doc.get("text")), str):
            body = doc.get("content", doc.get("text"))
            title = doc.get("title")
            docs.append(f"{title}: {body}" if isinstance(title, str) and title else body)
        else:
            raise InputFormatError(
                path, lineno, f"a document must be a string or an object with 'content' or 'text', got {doc!r:.80}",
                'write "documents": ["text 1", {"title": "T", "content": "text 2"}]',
            )
    return docs


def _read_line(path: Path, lineno: int, obj: dict[str, Any], judge: Judge | None) -> CheckReport:
    response = obj.get("response")
    if not isinstance(response, str):
        raise InputFormatError(path, lineno, "missing or non-string 'response'", f"write {_EXAMPLE}")
    ids = obj.get("instruction_id_list", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputFormatError(path, lineno, "'instruction_id_list' must be a list of strings", f"write {_EXAMPLE}")
    kwargs = obj.get("kwargs")
    if kwargs is not None and (
        not isinstance(kwargs, list) or not all(k is None or isinstance(k, dict) for k in kwargs)
    ):
        raise InputFormatError(
            path, lineno, "'kwargs' must be a list of objects, one per instruction", f"write {_EXAMPLE}"
        )
    question = obj.get("question", obj.get("prompt"))
    if question is not None and not isinstance(question, str):
        raise InputFormatError(path, lineno, "'question' (or 'prompt') must be a string", 'write "question": "..."')
    documents = _documents(path, lineno, obj["documents"]) if obj.get("documents") is not None else None
    golds = obj.get("golden_answers")
    if golds is not None and not (
        isinstance(golds, str) or (isinstance(golds, list) and all(isinstance(g, str) for g in golds))
    ):
        raise InputFormatError(
            path, lineno, "'golden_answers' must be a list of strings", 'write "golden_answers": ["Norland", "Kingdom"]'
        )
    try:
        return check(
            response, ids, kwargs, question=question, documents=documents, golden_answers=golds,
            judge=judge, key=obj.get("key", obj.get("id")), line=lineno,
        )
    except InstructionError as exc:
        raise InputFormatError(path, lineno, str(exc)) from exc


def check_file(path: str | Path, *, judge: Judge | None = None) -> tuple[list[CheckReport], dict[str, Any]]:
    """Check every line of a JSONL file (IFEval field names, see the module docstring). Returns
    the reports and :func:`summarise` of them. Errors name ``file:line``."""
    path = Path(path)
    reports = [_read_line(path, lineno, obj, judge) for lineno, obj in iter_jsonl(path, _EXAMPLE)]
    return reports, summarise(reports)


# ---------------------------------------------------------------------------------- summary


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def _acc(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def summarise(reports: Sequence[CheckReport]) -> dict[str, Any]:
    """Aggregate scores (fractions in [0, 1]; None when nothing was measured).

    Instruction following, over items with instructions that are not unsatisfiable:
    ``prompt_level_strict_acc``, ``prompt_level_loose_acc``, ``instruction_level_strict_acc``,
    ``instruction_level_loose_acc`` (IFEval's four), ``followrag_if_score`` (= instruction-level
    loose), ``per_instruction`` accuracies by IFEval id. ``unsatisfiable`` counts the flagged
    items (listed in ``unsatisfiable_items``). Faithfulness and correctness, over all items that
    have documents / gold answers: ``k_precision``, ``k_precision_pp``, ``k_recall``, ``k_f1``,
    ``grounding_rate`` (share of answers fully grounded), ``em``, ``f1``, ``recall``.
    """
    flagged = [r for r in reports if r.unsatisfiable]
    scored = [r for r in reports if not r.unsatisfiable and r.canonical_ids]
    per: dict[str, dict[str, list[bool]]] = collections.defaultdict(lambda: {"strict": [], "loose": []})
    for r in scored:
        for iid, s, lo in zip(r.canonical_ids, r.strict.follow_instruction_list, r.loose.follow_instruction_list):
            per[iid]["strict"].append(s)
            per[iid]["loose"].append(lo)
    strict_inst = [b for r in scored for b in r.strict.follow_instruction_list]
    loose_inst = [b for r in scored for b in r.loose.follow_instruction_list]
    faith = [r.faithfulness for r in reports if r.faithfulness is not None]
    corr = [r.correctness for r in reports if r.correctness is not None]
    judged = [r.judge for r in reports if r.judge is not None]
    summary: dict[str, Any] = {
        "items": len(reports),
        "instruction_items": len(scored),
        "instructions": len(strict_inst),
        "unsatisfiable": len(flagged),
        "unsatisfiable_items": [
            {"key": r.key, "line": r.line, "reasons": list(r.unsatisfiable_reasons)} for r in flagged
        ],
        "prompt_level_strict_acc": _acc([r.strict.follow_all_instructions for r in scored]),
        "prompt_level_loose_acc": _acc([r.loose.follow_all_instructions for r in scored]),
        "instruction_level_strict_acc": _acc(strict_inst),
        "instruction_level_loose_acc": _acc(loose_inst),
        "followrag_if_score": _acc(loose_inst),
        "per_instruction": {
            iid: {"count": len(v["strict"]), "strict_acc": _acc(v["strict"]), "loose_acc": _acc(v["loose"])}
            for iid, v in sorted(per.items())
        },
        "faithfulness_items": len(faith),
        "k_precision": _mean([f.k_precision for f in faith]),
        "k_precision_pp": _mean([f.k_precision_pp for f in faith]),
        "k_recall": _mean([f.k_recall for f in faith]),
        "k_f1": _mean([f.k_f1 for f in faith]),
        "grounding_rate": _acc([f.grounding.grounded for f in faith]),
        "correctness_items": len(corr),
        "em": _mean([c.em for c in corr]),
        "f1": _mean([c.f1 for c in corr]),
        "recall": _mean([c.recall for c in corr]),
    }
    if judged:
        summary["judged_items"] = len(judged)
        summary["judge_mean_score"] = _mean([v.score for v in judged])
        summary["judge_labels"] = dict(collections.Counter(v.label for v in judged))
    return summary
