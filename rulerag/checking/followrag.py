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

from rulerag.checking.instructions import InstructionError, prepare
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


def _item(path: Path, where: str, index: int, obj: Any) -> FollowRAGItem:
    def bad(problem: str) -> InputFormatError:
        key = f" (key {obj.get('key')!r})" if isinstance(obj, dict) and "key" in obj else ""
        return InputFormatError(path, None, f"{where}{key}: {problem}", _FIX)

    if not isinstance(obj, dict):
        raise bad(f"not an object but {type(obj).__name__}")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise bad(f"missing field(s) {', '.join(missing)}")
    for name in ("question", "question_with_instrs"):
        if not isinstance(obj[name], str):
            raise bad(f"{name!r} must be a string")
    ids = obj["instruction_id_list"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad("'instruction_id_list' must be a list of strings")
    kwargs = obj["kwargs"]
    if not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
        raise bad("'kwargs' must be a list of objects")
    try:
        prepare(ids, kwargs)
    except InstructionError as exc:
        raise bad(str(exc)) from exc
    passages = []
    raw_passages = obj["passages"]
    if not isinstance(raw_passages, list):
        raise bad("'passages' must be a list")
    for p in raw_passages:
        if isinstance(p, str):
            passages.append(Passage("", p))
        elif isinstance(p, dict) and isinstance(p.get("content", p.get("text")), str):
            passages.append(Passage(str(p.get("title") or ""), p.get("content", p.get("text"))))
        else:
            raise bad(f"a passage must be an object with 'title' and 'content', got {p!r:.80}")
    gold = obj["answer_gold"]
    if not isinstance(gold, str) and not (isinstance(gold, list) and all(isinstance(g, str) for g in gold)):
        raise bad("'answer_gold' must be a string (aliases joined by '/') or a list of strings")
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


def load_followrag(path: str | Path, limit: int | None = None) -> list[FollowRAGItem]:
    """The items of a FollowRAG file (the first ``limit`` when given). Instruction ids and kwargs
    are validated; a wrong file raises :class:`~rulerag.errors.InputFormatError` naming the item."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    path = Path(path)
    records = _records(path)
    if limit is not None:
        records = records[:limit]
    return [_item(path, where, i, obj) for i, (where, obj) in enumerate(records)]


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
