"""Read FollowRAG evaluation items (arXiv 2410.09584) and split them into generator inputs.

A FollowRAG file (``followRAG_ifnq.json`` / ``followRAG_iftq.json``) is a JSON array of objects
with ``key``, ``type`` (``ifnq`` / ``iftq``), ``prompt`` (FollowRAG's full prompt),
``question`` (the original NQ / TriviaQA question), ``answer_gold`` (aliases joined by ``/``),
``question_with_instrs`` (a rewritten question followed by the instructions),
``instruction_id_list`` (FollowRAG ids), ``kwargs`` (one object per instruction) and
``passages`` (``{"title", "content"}`` objects). A ``.jsonl`` file with the same objects one per
line is read too. The data is CC BY-NC 4.0: evaluation only, never copied into this repository.

This module calls no model: :func:`followrag_prompt_parts` gives a generator what it needs and
:func:`followrag_record` turns the generator's response into a :func:`~rulerag.checking.check_file`
line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rulerag.checking.instructions import InstructionError, canonical_id, validate_kwargs
from rulerag.errors import InputFormatError
from rulerag.io import iter_jsonl
from rulerag.text import tokenize

#: The FollowRAG item files in ``shared/data/followrag``.
FOLLOWRAG_FILES: tuple[str, ...] = ("followRAG_ifnq.json", "followRAG_iftq.json")

_REQUIRED = ("question", "question_with_instrs", "instruction_id_list", "kwargs", "passages", "answer_gold")
_FIX = (
    "pass a FollowRAG item file (followRAG_ifnq.json or followRAG_iftq.json): a JSON array of objects with "
    + ", ".join(_REQUIRED)
)


@dataclass(frozen=True)
class Passage:
    """One retrieved Wikipedia passage of a FollowRAG item."""

    title: str
    content: str

    @property
    def text(self) -> str:
        """``"title: content"`` (just the content when there is no title)."""
        return f"{self.title}: {self.content}" if self.title else self.content


@dataclass(frozen=True)
class FollowRAGItem:
    """One FollowRAG item. ``instruction_id_list`` keeps FollowRAG's ids (the checkers accept them)."""

    key: Any
    source: str
    question: str
    question_with_instructions: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]
    passages: tuple[Passage, ...]
    golden_answers: tuple[str, ...]
    prompt: str = ""

    @property
    def documents(self) -> list[str]:
        """The passages as document strings (:attr:`Passage.text`)."""
        return [p.text for p in self.passages]


def default_followrag_dir() -> Path | None:
    """``followrag/`` under :func:`rulerag.kg.loaders.default_data_root` (``$RULERAG_DATA`` or
    ``shared/data`` beside the repository), or None when absent."""
    from rulerag.kg.loaders import default_data_root

    root = default_data_root()
    if root is None:
        return None
    folder = root / "followrag"
    return folder if folder.is_dir() else None


def split_gold(answer_gold: str | Sequence[str]) -> tuple[str, ...]:
    """Gold aliases: FollowRAG joins them with ``/`` (so an alias holding ``/`` is split too).

    Example:
        >>> split_gold("Gravity/Gravity, or gravitation/ Gravity")
        ('Gravity', 'Gravity, or gravitation')
    """
    parts = answer_gold.split("/") if isinstance(answer_gold, str) else list(answer_gold)
    return tuple(dict.fromkeys(p.strip() for p in parts if isinstance(p, str) and p.strip()))


def _records(path: Path) -> list[tuple[str, dict[str, Any] | Any]]:
    """(where, object) pairs: ``item N`` for a JSON array, ``line N`` for JSONL."""
    if not path.is_file():
        raise InputFormatError(path, None, "file not found", _FIX)
    raw = path.read_bytes()
    if path.suffix == ".jsonl":
        return [(f"line {n}", obj) for n, obj in iter_jsonl(path, '{"question": "...", ...}')]
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputFormatError(path, None, f"not valid JSON ({exc})", _FIX) from exc
    if isinstance(data, dict):
        hint = (
            "this looks like atom_instruction.json (instruction templates), not FollowRAG items"
            if all(isinstance(v, dict) and "instruction_description" in v for v in data.values())
            else "the file holds a JSON object, not an array of items"
        )
        raise InputFormatError(path, None, hint, _FIX)
    if not isinstance(data, list):
        raise InputFormatError(path, None, f"the file holds a JSON {type(data).__name__}, not an array of items", _FIX)
    return [(f"item {i}", obj) for i, obj in enumerate(data)]


@dataclass(frozen=True)
class SkippedItem:
    """A malformed item a lenient read (:func:`read_followrag`) left out: its 0-based ``index``
    in the file, ``where`` (``item N`` / ``line N``), its ``key`` when it has one, the ``field``
    at fault, the ``problem`` and the ``fix``.

    Example:
        >>> print(SkippedItem(3, "item 3", 7, "passages", "'passages' must be a list", 'write "passages": [...]'))
        item 3 (key 7): passages: 'passages' must be a list. Fix: write "passages": [...]
    """

    index: int
    where: str
    key: Any
    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        key = f" (key {self.key!r})" if self.key is not None else ""
        return f"{self.where}{key}: {self.field}: {self.problem}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "where": self.where, "key": self.key, "field": self.field,
                "problem": self.problem, "fix": self.fix}


class _ItemProblem(Exception):
    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.field, self.problem, self.fix = field, problem, fix


def _instruction_problem(field: str, exc: InstructionError) -> _ItemProblem:
    problem, _, fix = str(exc).partition(". Fix: ")
    return _ItemProblem(field, problem, fix or "use a FollowRAG or IFEval instruction id with its kwargs")


_PASSAGE_FIX = 'write "passages": [{"title": "...", "content": "..."}]'
_GOLD_FIX = 'write "answer_gold": "Gravity/gravitation" (aliases joined by "/")'


def _item(index: int, obj: Any) -> FollowRAGItem:
    """One item; a malformed one raises :class:`_ItemProblem` naming the field and the fix."""
    if not isinstance(obj, dict):
        raise _ItemProblem("(item)", f"not an object but {type(obj).__name__}", "each item must be a JSON object")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise _ItemProblem(missing[0], f"missing field(s) {', '.join(missing)}", f"add {', '.join(missing)}")
    for name in ("question", "question_with_instrs"):
        if not isinstance(obj[name], str):
            raise _ItemProblem(name, f"{name!r} must be a string", f'write "{name}": "..."')
    ids = obj["instruction_id_list"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise _ItemProblem("instruction_id_list", "'instruction_id_list' must be a list of strings",
                           'write "instruction_id_list": ["format_no_commas"]')
    kwargs = obj["kwargs"]
    if not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
        raise _ItemProblem("kwargs", "'kwargs' must be a list of objects", 'write "kwargs": [{}], one object per instruction')
    for iid in ids:
        try:
            canonical_id(iid)
        except InstructionError as exc:
            raise _instruction_problem("instruction_id_list", exc) from exc
    if len(kwargs) != len(ids):
        raise _ItemProblem("kwargs", f"{len(ids)} instruction ids but {len(kwargs)} kwargs objects",
                           "give one kwargs object per instruction ({} when it takes none)")
    for i, (iid, kw) in enumerate(zip(ids, kwargs)):
        try:
            validate_kwargs(iid, kw)
        except InstructionError as exc:
            raise _instruction_problem(f"kwargs[{i}]", exc) from exc
    passages = []
    raw_passages = obj["passages"]
    if not isinstance(raw_passages, list):
        raise _ItemProblem("passages", "'passages' must be a list", _PASSAGE_FIX)
    for p in raw_passages:
        if isinstance(p, str):
            passages.append(Passage("", p))
        elif isinstance(p, dict) and isinstance(p.get("content", p.get("text")), str):
            passages.append(Passage(str(p.get("title") or ""), p.get("content", p.get("text"))))
        else:
            raise _ItemProblem("passages", f"a passage must be an object with 'title' and 'content', got {p!r:.80}",
                               _PASSAGE_FIX)
    gold = obj["answer_gold"]
    if not isinstance(gold, str) and not (isinstance(gold, list) and all(isinstance(g, str) for g in gold)):
        raise _ItemProblem("answer_gold", "'answer_gold' must be a string (aliases joined by '/') or a list of strings",
                           _GOLD_FIX)
    if not split_gold(gold):
        raise _ItemProblem("answer_gold", "'answer_gold' holds no answer", _GOLD_FIX)
    return FollowRAGItem(
        key=obj.get("key", index),
        source=str(obj.get("type", "")),
        question=obj["question"],
        question_with_instructions=obj["question_with_instrs"],
        instruction_id_list=tuple(ids),
        kwargs=tuple(dict(k) for k in kwargs),
        passages=tuple(passages),
        golden_answers=split_gold(gold),
        prompt=obj.get("prompt", "") if isinstance(obj.get("prompt", ""), str) else "",
    )


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")


def load_followrag(path: str | Path, limit: int | None = None) -> list[FollowRAGItem]:
    """The items of a FollowRAG file (the first ``limit`` when given). Instruction ids and kwargs
    are validated; a wrong file raises :class:`~rulerag.errors.InputFormatError` naming the item.
    :func:`read_followrag` skips malformed items instead."""
    _check_limit(limit)
    path = Path(path)
    items = []
    for i, (where, obj) in enumerate(_records(path)[:limit]):
        try:
            items.append(_item(i, obj))
        except _ItemProblem as exc:
            key = f" (key {obj.get('key')!r})" if isinstance(obj, dict) and "key" in obj else ""
            raise InputFormatError(path, None, f"{where}{key}: {exc.problem}", _FIX) from None
    return items


def read_followrag(path: str | Path, limit: int | None = None) -> tuple[list[FollowRAGItem], list[SkippedItem]]:
    """The well-formed items among the first ``limit`` records of a FollowRAG-format file, and a
    :class:`SkippedItem` for each malformed one (missing or mistyped field, unknown instruction
    id, invalid kwargs, a kwargs list of the wrong length, no gold answer, a key seen before).
    Only a file that is not a FollowRAG file at all (not JSON, not an array) raises
    :class:`~rulerag.errors.InputFormatError`.

    Example:
        >>> import json, tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        ...     json.dump([{"key": 1}], fh)
        >>> items, skipped = read_followrag(fh.name)
        >>> items, skipped[0].index, skipped[0].field
        ([], 0, 'question')
    """
    _check_limit(limit)
    items: list[FollowRAGItem] = []
    skipped: list[SkippedItem] = []
    seen: set[str] = set()
    for i, (where, obj) in enumerate(_records(Path(path))[:limit]):
        key = obj.get("key") if isinstance(obj, dict) else None
        try:
            item = _item(i, obj)
            if str(item.key) in seen:
                raise _ItemProblem("key", f"key {item.key!r} is used by an earlier item", "give every item its own key")
        except _ItemProblem as exc:
            skipped.append(SkippedItem(i, where, key, exc.field, exc.problem, exc.fix))
            continue
        seen.add(str(item.key))
        items.append(item)
    return items, skipped


_BOUNDARY = re.compile(r"[.?!\]][\"'”’)\]]*(?=\s)")


def _split_question(item: FollowRAGItem) -> tuple[str, str]:
    text = item.question_with_instructions.strip()
    for iid, kw in zip(item.instruction_id_list, item.kwargs):
        if iid in ("format_repeat_question", "combination:repeat_prompt"):
            prompt = str(kw.get("prompt_to_repeat") or "").strip()
            if prompt and text.lower().startswith(prompt.lower()) and len(prompt) < len(text):
                cut = len(prompt) + len(re.match(r"[?.!\"'”’)\]]*", text[len(prompt) :]).group(0))
                if text[cut:].strip():
                    return text[:cut].strip(), text[cut:].strip()
    cuts = [m.end() for m in _BOUNDARY.finditer(text) if text[m.end() :].strip()]
    if not cuts:
        return text, ""
    wanted = set(tokenize(item.question))
    if wanted:
        recalls = [len(wanted & set(tokenize(text[:c]))) / len(wanted) for c in cuts]
        best = max(recalls)
        if best >= 0.5:
            cut = cuts[recalls.index(best)]
            return text[:cut].strip(), text[cut:].strip()
    question_marks = [c for c in cuts if "?" in text[max(0, c - 4) : c]]
    cut = (question_marks or cuts)[0]
    return text[:cut].strip(), text[cut:].strip()


def followrag_prompt_parts(item: FollowRAGItem) -> tuple[str, str, list[str]]:
    """``(question, instructions_text, documents)`` for a generator.

    ``question`` and ``instructions_text`` split ``question_with_instrs`` (FollowRAG's rewritten
    question, then its instructions): ``question + " " + instructions_text`` is that text again
    (whitespace aside), so a generator that shows both shows exactly what FollowRAG asks. The
    split is after the repeated request when the item has ``format_repeat_question``, else at the
    earliest sentence end whose prefix best covers the original question's words.
    ``documents`` are the passages as ``"title: content"``.
    """
    question, instructions = _split_question(item)
    return question, instructions, item.documents


def followrag_record(item: FollowRAGItem, response: str) -> dict[str, Any]:
    """A :func:`~rulerag.checking.check_file` line for ``response`` to ``item``."""
    question, _, documents = followrag_prompt_parts(item)
    return {
        "key": item.key,
        "question": question,
        "response": response,
        "instruction_id_list": list(item.instruction_id_list),
        "kwargs": [dict(k) for k in item.kwargs],
        "documents": documents,
        "golden_answers": list(item.golden_answers),
    }
