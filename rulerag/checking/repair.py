"""Deterministic repairs: make an answer follow the mechanical output instructions it fails.

Many verifiable instructions can be satisfied by editing the answer, without asking the model
again: lower-casing it, cutting it after the allowed number of sentences, wrapping it in quotes.
:func:`repair_answer` applies one small function per instruction type, **only to the instructions
the answer fails**, re-checks the result with the real (strict) verifier after each repair, and
keeps a repair only when its instruction now passes and no instruction that passed before fails.
Repairs run in :data:`REPAIR_ORDER`: cuts first, then text that is added, then case, and the
structural wrappers (quotation, JSON) last, so a later repair does not undo an earlier one.

Repaired by code (instruction type: what the repair does):

- ``change_case:english_lowercase`` / ``english_capital``: lower-case / upper-case the whole
  answer (the language part of the check is left as it is);
- ``change_case:capital_word_frequency``: upper-case the first words that are not (at least N),
  or turn surplus ALL-CAPS words into Capitalised ones (less than N);
- ``length_constraints:number_words`` (less than N): cut at the last sentence end that fits,
  else at a word boundary; the cut leaves room (a quarter of the limit, at most 15 words) for
  text other repairs append;
- ``length_constraints:number_sentences`` (less than N): keep the first sentences (leaving room
  for one appended sentence when the limit allows);
- ``length_constraints:number_paragraphs``: regroup paragraphs (or sentences, or words) into
  exactly N parts separated by ``***``;
- ``length_constraints:nth_paragraph_first_word``: regroup into exactly N blank-line paragraphs
  and put the word at the start of paragraph i;
- ``detectable_format:number_bullet_lists``: rewrite the answer as exactly N ``* `` bullets
  (its sentences, merged or split at words);
- ``detectable_format:multiple_sections``: split into N parts headed ``SPLITTER 1`` ...;
- ``detectable_format:number_highlighted_sections``: wrap words in ``*...*``;
- ``detectable_format:title``: put a ``<<title>>`` (the answer's first words) on a line before it;
- ``detectable_format:json_format``: wrap the answer as ``{"answer": "..."}`` (a list of its
  lines when it has several), or, when that breaks another instruction (an end phrase, a
  quotation), as one JSON string;
- ``detectable_content:number_placeholders``: append ``[placeholder]`` tokens;
- ``detectable_content:postscript``: append ``MARKER This answer is based on the documents given.``
  on a new line of the last paragraph;
- ``startend:end_checker``: append the end phrase; ``startend:quotation``: wrap in double quotes;
- ``combination:repeat_prompt``: put the request before the answer; ``combination:two_responses``:
  the answer, ``******``, its first sentence;
- ``keywords:forbidden_words``: delete the forbidden words (whole words). Given the
  ``question``, only words the question itself uses are deleted (the answer restating the
  question); a forbidden word the question does not use is usually the answer's own content
  ("Mycology is the study of *fungi*" with "fungi" forbidden), and deleting it would empty the
  answer, so that is left to the model's re-ask;
- ``punctuation:no_comma``: delete commas (thousands separators joined, other commas made spaces).

Left to the model (they need language, not editing): ``keywords:existence``,
``keywords:frequency``, ``keywords:letter_frequency``, ``language:response_language``,
``detectable_format:constrained_response`` (:data:`MODEL_ONLY`), and ``number_words`` /
``number_sentences`` with ``at least`` (:func:`repaired_by` tells which).

Text a repair adds (placeholders, titles, postscripts, end phrases, the repeated request) is
tried as written, then in the answer's case when the answer is all lower or all upper case (so
it does not break a case instruction). An empty answer is never repaired (it follows nothing).

Example:
    >>> r = repair_answer("Gravity, the force.", ["format_no_commas", "cases_lowercase"], [{}, {}])
    >>> r.answer, r.applied
    ('gravity the force.', ['punctuation:no_comma', 'change_case:english_lowercase'])
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rulerag.checking.instructions import (
    _DIVIDER,
    INSTRUCTIONS,
    _capital_words,
    _highlight_count,
    _paragraphs_by_blank_line,
    _whole_word,
    canonical_id,
    count_words,
    first_word,
    prepare,
    split_sentences,
)

#: A repair: (answer, validated kwargs) -> the edited answer (unchanged when it cannot help), or
#: several candidates, tried in order until one is kept.
Repair = Callable[[str, Mapping[str, Any]], "str | list[str]"]

#: Sentence a postscript repair writes after the marker.
POSTSCRIPT_TEXT = "This answer is based on the documents given."

#: Token a placeholder repair appends.
PLACEHOLDER = "[placeholder]"


# ------------------------------------------------------------------------------------ helpers


def _same_case(text: str, addition: str) -> str:
    """``addition`` in ``text``'s case when ``text`` is all lower or all upper case."""
    if text.isupper():
        return addition.upper()
    if text.islower():
        return addition.lower()
    return addition


def _cased(text: str, make: Callable[[str], str], addition: str) -> list[str]:
    """``make(addition)`` as written, then with ``addition`` in ``text``'s case (kept when the
    first breaks a case instruction)."""
    return list(dict.fromkeys([make(addition), make(_same_case(text, addition))]))


def _sentence_ends(text: str) -> list[int]:
    """Offsets in ``text`` where each :func:`split_sentences` sentence ends."""
    ends, pos = [], 0
    for sentence in split_sentences(text):
        start = text.find(sentence, pos)
        if start < 0:  # pragma: no cover - sentences are stripped slices of text
            break
        pos = start + len(sentence)
        ends.append(pos)
    return ends


def _flat(text: str) -> str:
    return " ".join(text.split())


def _units(text: str, n: int) -> tuple[list[str], str]:
    """At least ``n`` pieces of ``text`` to regroup and how to join merged ones: its paragraphs
    (``***`` dividers and blank lines), else its sentences, else its words; ``[]`` when too short."""
    body = _DIVIDER.sub("\n\n", text)
    paragraphs = [p.strip() for p in _paragraphs_by_blank_line(body) if p.strip()]
    if len(paragraphs) >= n:
        return paragraphs, "\n"
    sentences = split_sentences(body)
    if len(sentences) >= n:
        return sentences, " "
    words = body.split()
    return (words, " ") if len(words) >= n else ([], " ")


def _regroup(text: str, n: int) -> list[str]:
    """``text`` as exactly ``n`` non-empty contiguous parts (``[]`` when it has too few words).

    Example:
        >>> _regroup("One. Two. Three.", 2)
        ['One. Two.', 'Three.']
    """
    units, joiner = _units(text, n)
    if n < 1 or not units:
        return []
    size, extra = divmod(len(units), n)
    parts, start = [], 0
    for i in range(n):
        stop = start + size + (1 if i < extra else 0)
        parts.append(joiner.join(units[start:stop]).strip())
        start = stop
    return parts


def _reserve(limit: int, share: int, most: int) -> int:
    """Room left under a ``less than`` limit for text later repairs append."""
    return min(most, max(limit - 1, 0) // share)


# ------------------------------------------------------------------------------------ repairs


def _lowercase(text: str, kw: Mapping[str, Any]) -> str:
    return text.lower()


def _uppercase(text: str, kw: Mapping[str, Any]) -> str:
    return text.upper()


_CAPITAL_TOKEN = re.compile(r"\w+(?:['’.\-]\w+)*")


def _capital_words_repair(text: str, kw: Mapping[str, Any]) -> str:
    have, bound = _capital_words(text), kw["capital_frequency"]
    if kw["capital_relation"] == "at least":
        need = bound - have

        def up(m: re.Match[str]) -> str:
            nonlocal need
            word = m.group(0)
            if need > 0 and not word.isupper() and any(c.isalpha() for c in word):
                need -= 1
                return word.upper()
            return word
    else:
        keep = bound - 1

        def up(m: re.Match[str]) -> str:
            nonlocal keep
            word = m.group(0)
            if not word.isupper():
                return word
            if keep > 0:
                keep -= 1
                return word
            return word.lower() if len(word) == 1 else word.capitalize()

    return _CAPITAL_TOKEN.sub(up, text)


def _truncate_words(text: str, kw: Mapping[str, Any]) -> str:
    if kw["relation"] != "less than" or count_words(text) < kw["num_words"]:
        return text
    limit = kw["num_words"] - 1 - _reserve(kw["num_words"], 4, 15)
    if limit < 1:
        return text
    fitting = [end for end in _sentence_ends(text) if count_words(text[:end]) <= limit]
    if fitting:
        return text[: fitting[-1]].rstrip()
    words = list(re.finditer(r"\w+", text))
    return text[: words[limit - 1].end()].rstrip(" ,;:-") + "."


def _truncate_sentences(text: str, kw: Mapping[str, Any]) -> str:
    if kw["relation"] != "less than":
        return text
    keep = kw["num_sentences"] - 1 - _reserve(kw["num_sentences"], 3, 1)
    ends = _sentence_ends(text)
    if keep < 1 or len(ends) <= keep:
        return text
    return text[: ends[keep - 1]].rstrip()


def _paragraphs(text: str, kw: Mapping[str, Any]) -> str:
    parts = _regroup(text, kw["num_paragraphs"])
    return "\n\n***\n\n".join(parts) if parts else text


def _nth_first_word(text: str, kw: Mapping[str, Any]) -> str:
    parts = _regroup(text, kw["num_paragraphs"])
    n, word = kw["nth_paragraph"], kw["first_word"]
    if not parts or n > len(parts):
        return text
    if first_word(parts[n - 1]) != word.lower():
        word = _same_case(text, word)
        if parts[n - 1][:1].isupper() and not text.isupper():
            word = word[:1].upper() + word[1:]
        parts[n - 1] = f"{word} {parts[n - 1]}"
    return "\n\n".join(parts)


def _bullets(text: str, kw: Mapping[str, Any]) -> str:
    n = kw["num_bullets"]
    if n == 0:
        return "\n".join(line for line in text.split("\n") if not re.match(r"\s*(?:[*\-]\s)", line))
    plain = "\n".join(re.sub(r"^\s*(?:[*\-]+\s+|\d+[.)]\s+)", "", line) for line in text.split("\n"))
    parts = _regroup(plain, n)
    return "\n".join(f"* {_flat(p)}" for p in parts) if parts else text


def _sections(text: str, kw: Mapping[str, Any]) -> str:
    parts = _regroup(text, kw["num_sections"])
    splitter = kw["section_spliter"].strip()
    return "\n\n".join(f"{splitter} {i}\n{p}" for i, p in enumerate(parts, start=1)) if parts else text


_HIGHLIGHT_WORDS = (  # longer words first, then any word
    re.compile(r"(?<![\w*])[^\W\d_][\w'’\-]{3,}(?![\w*])"),
    re.compile(r"(?<![\w*])\w[\w'’\-]*(?![\w*])"),
)


_BULLET_MARK = re.compile(r"\s*[*\-]\s+")


def _highlights(text: str, kw: Mapping[str, Any]) -> str:
    """Wrap words (longer ones first) until the verifier counts enough highlights; a word in a
    ``* `` bullet line gets ``**``, elsewhere ``*``; lines with other stars are left alone."""
    lines = text.split("\n")
    spans: dict[tuple[int, int, int], str] = {}
    for pattern in _HIGHLIGHT_WORDS:
        for i, line in enumerate(lines):
            mark = _BULLET_MARK.match(line)
            offset = mark.end() if mark else 0
            if "*" in line[offset:]:
                continue
            star = "**" if mark and "*" in mark.group(0) else "*"
            for m in pattern.finditer(line, offset):
                spans.setdefault((i, m.start(), m.end()), star)
    chosen: list[tuple[int, int, int]] = []
    for span in spans:
        chosen.append(span)
        out = list(lines)
        for i, start, end in sorted(chosen, reverse=True):
            star = spans[(i, start, end)]
            out[i] = f"{out[i][:start]}{star}{out[i][start:end]}{star}{out[i][end:]}"
        candidate = "\n".join(out)
        if _highlight_count(candidate) >= kw["num_highlights"]:
            return candidate
    return text


def _placeholders(text: str, kw: Mapping[str, Any]) -> str:
    need = kw["num_placeholders"] - len(re.findall(r"\[.*?\]", text))
    return text.rstrip() + " " + " ".join([_same_case(text, PLACEHOLDER)] * need) if need > 0 else text


def _title(text: str, kw: Mapping[str, Any]) -> list[str]:
    words = re.findall(r"[^\W_][\w'’\-]*", (split_sentences(text) or [text])[0])[:6]
    return _cased(text, lambda title: f"<<{title}>>\n{text.lstrip()}", " ".join(words) or "Answer")


def _postscript(text: str, kw: Mapping[str, Any]) -> list[str]:
    # a single line break: the postscript stays in the last paragraph, so paragraph counts hold
    return _cased(text, lambda ps: f"{text.rstrip()}\n{ps}", f"{kw['postscript_marker'].strip()} {POSTSCRIPT_TEXT}")


def _end_phrase(text: str, kw: Mapping[str, Any]) -> list[str]:
    return _cased(text, lambda phrase: f"{text.rstrip()} {phrase}", kw["end_phrase"].strip())


def _repeat_prompt(text: str, kw: Mapping[str, Any]) -> list[str]:
    return _cased(text, lambda request: f"{request}\n{text.lstrip()}", kw["prompt_to_repeat"].strip())


def _two_responses(text: str, kw: Mapping[str, Any]) -> str:
    body = text.replace("******", " ").strip()
    first = (split_sentences(body) or [""])[0]
    return f"{body}\n******\n{first}" if first and first != body else text


def _forbidden(text: str, kw: Mapping[str, Any]) -> str:
    cut = text
    for word in kw["forbidden_words"]:
        cut = _whole_word(word).sub("", cut)
    cut = re.sub(r"[ \t]{2,}", " ", cut)
    cut = re.sub(r"[ \t]+([.,;:!?])", r"\1", cut)
    return cut if text[:1].isspace() else cut.lstrip()


def _no_comma(text: str, kw: Mapping[str, Any]) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    return re.sub(r"[ \t]*[,，、،][ \t]*", " ", text)


def _quotation(text: str, kw: Mapping[str, Any]) -> str:
    s = text.strip()
    s = s if s.startswith('"') else '"' + s
    return s if len(s) > 1 and s.endswith('"') else s + '"'


def _json(text: str, kw: Mapping[str, Any]) -> list[str]:
    # one string per line: an escaped line break ("\\n") would glue its "n" to the next word
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    key = "ANSWER" if text.isupper() else "answer"
    as_object = json.dumps({key: lines[0] if len(lines) == 1 else lines}, ensure_ascii=False)
    # a JSON string keeps an end phrase last and the answer inside double quotes
    return [as_object, json.dumps(" ".join(lines), ensure_ascii=False)]


#: Canonical (IFEval) id -> repair, in the order :func:`repair_answer` tries them.
REPAIRS: dict[str, Repair] = {
    "length_constraints:number_words": _truncate_words,
    "length_constraints:number_sentences": _truncate_sentences,
    "keywords:forbidden_words": _forbidden,
    "punctuation:no_comma": _no_comma,
    "change_case:capital_word_frequency": _capital_words_repair,
    "combination:two_responses": _two_responses,
    "detectable_format:number_bullet_lists": _bullets,
    "length_constraints:number_paragraphs": _paragraphs,
    "detectable_format:multiple_sections": _sections,
    "detectable_format:number_highlighted_sections": _highlights,
    "detectable_content:number_placeholders": _placeholders,
    "detectable_format:title": _title,
    "length_constraints:nth_paragraph_first_word": _nth_first_word,
    "detectable_content:postscript": _postscript,
    "startend:end_checker": _end_phrase,
    "combination:repeat_prompt": _repeat_prompt,
    "change_case:english_lowercase": _lowercase,
    "change_case:english_capital": _uppercase,
    "startend:quotation": _quotation,
    "detectable_format:json_format": _json,
}

#: The order repairs are tried in (cuts, additions, case, then the structural wrappers).
REPAIR_ORDER: tuple[str, ...] = tuple(REPAIRS)

#: Instruction types with no repair: the model's re-ask handles them (so does it ``number_words``
#: and ``number_sentences`` with ``at least``; with ``less than`` they are cut by code).
MODEL_ONLY: tuple[str, ...] = tuple(cid for cid in INSTRUCTIONS if cid not in REPAIRS)

_CUT_ONLY = ("length_constraints:number_words", "length_constraints:number_sentences")


def repaired_by(instruction_id: str, kwargs: Mapping[str, Any] | None = None) -> str:
    """Who repairs a failing instruction in the ``refine`` setting: ``"code"`` (a repair here),
    ``"model"`` (the re-ask), or for the word and sentence counts without kwargs
    ``"code (less than), model (at least)"``.

    Example:
        >>> repaired_by("format_quotation"), repaired_by("length_words", {"relation": "at least", "num_words": 9})
        ('code', 'model')
        >>> repaired_by("length_sentence")
        'code (less than), model (at least)'
    """
    cid = canonical_id(instruction_id)
    if cid in _CUT_ONLY:
        if kwargs is None:
            return "code (less than), model (at least)"
        return "code" if " ".join(str(kwargs.get("relation", "")).lower().split()) == "less than" else "model"
    return "code" if cid in REPAIRS else "model"


@dataclass(frozen=True)
class RepairResult:
    """The repaired answer; ``applied``: canonical ids whose repair was kept (in the order
    applied); ``rejected``: ids whose repair changed the text but was not kept (its instruction
    still failed, or another that passed before broke); ``followed``: the strict result per
    instruction after the repairs (input order)."""

    answer: str
    applied: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    followed: list[bool] = field(default_factory=list)


def _follows(text: str, prepared: Sequence[tuple[str, Mapping[str, Any]]]) -> list[bool]:
    ok = bool(text.strip())
    return [ok and INSTRUCTIONS[iid].check(text, kw) for iid, kw in prepared]


def _deletable(word: str, question: str | None) -> bool:
    return question is None or bool(_whole_word(word).search(question))


def repair_answer(
    answer: str,
    instruction_id_list: Sequence[str],
    kwargs: Sequence[Mapping[str, Any] | None] | None = None,
    question: str | None = None,
) -> RepairResult:
    """Repair ``answer`` for the instructions it fails (IFEval or FollowRAG ids); see the module
    docstring. Passing instructions are never touched, and an answer that follows everything (or
    is empty) comes back unchanged. ``question``: the question asked (without its output
    instructions); when given, forbidden words are deleted only where the question uses them.

    Example:
        >>> repair_answer("Norland", ["format_quotation"], [{}]).answer
        '"Norland"'
        >>> ids, kw = ["keywords:forbidden_words"], [{"forbidden_words": ["fungi", "study"]}]
        >>> repair_answer("Mycology is the study of fungi.", ids, kw, question="What does mycology study?").answer
        'Mycology is the study of fungi.'
        >>> repair_answer("Mycology is the study of moulds.", ids, kw, question="What does mycology study?").answer
        'Mycology is the of moulds.'
    """
    prepared = prepare(instruction_id_list, kwargs)
    status = _follows(answer, prepared)
    if not answer.strip() or all(status):
        return RepairResult(answer, followed=status)
    applied: list[str] = []
    rejected: list[str] = []
    order = {cid: rank for rank, cid in enumerate(REPAIR_ORDER)}
    todo = sorted((order[cid], i) for i, (cid, _) in enumerate(prepared) if cid in order)
    for _, i in todo:
        if status[i]:
            continue
        cid, kw = prepared[i]
        if cid == "keywords:forbidden_words":
            kw = {**kw, "forbidden_words": [w for w in kw["forbidden_words"] if _deletable(w, question)]}
        made = REPAIRS[cid](answer, kw)
        candidates = [c for c in ([made] if isinstance(made, str) else made) if c != answer]
        for candidate in candidates:
            after = _follows(candidate, prepared)
            if after[i] and all(a for a, before in zip(after, status) if before):
                answer, status = candidate, after
                applied.append(cid)
                break
        else:
            if candidates:
                rejected.append(cid)
    return RepairResult(answer, applied, rejected, status)
