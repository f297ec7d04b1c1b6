"""Verifiable-instruction checkers: the 25 IFEval instruction types, under IFEval's and FollowRAG's ids.

IFEval (Zhou et al., 2023, arXiv 2311.07911) defines instructions whose compliance a program can
check ("answer in fewer than 50 words", "end with the phrase ..."). FollowRAG (arXiv 2410.09584)
reuses 22 of them under new ids (``format_no_commas`` = ``punctuation:no_comma``, see
:data:`FOLLOWRAG_ALIASES`). Every function here accepts either id.

This is an independent implementation of IFEval's *semantics* (what counts as a word, a bullet, a
paragraph ...), so scores are comparable with published IFEval/FollowRAG numbers. Deliberate
differences, each fixing a case where IFEval contradicts its own instruction text:

- keywords, forbidden words, postscript markers and section splitters are matched literally
  (IFEval pastes them into a regular expression unescaped, so ``C++`` or ``N.B.`` misbehave);
  forbidden words use "no word character on either side" instead of ``\\b`` so ``C++`` works;
- a postscript marker must start a word (IFEval's ``NB`` also matched inside ``unbelievable``);
- ``* * *`` (the divider the instruction text asks for) separates paragraphs like ``***``, and
  horizontal rules (``***``, ``* * *``, ``---``) are not bullet points;
- paragraphs for ``nth_paragraph_first_word`` are split on blank lines (whitespace allowed on the
  blank line) and the n-th *non-empty* paragraph is checked;
- ``no_comma`` also rejects the full-width, ideographic and Arabic commas (``，`` ``、`` ``،``);
- ``english_capital`` detects the language of the lower-cased text (langdetect misreads short
  ALL-CAPS English, e.g. as German);
- sentences and capitalised words are counted with regular expressions, not NLTK (IFEval's
  sentence splitter is itself a regular-expression heuristic; results agree on ordinary prose).

Language detection uses ``langdetect`` (the detector IFEval uses) with a private, seeded detector
factory (seed 0, profiles loaded in sorted order), so a text always gets the same language in every
run and process; the global ``langdetect`` state is left untouched. Text in which no language can
be detected passes the language check, as in IFEval.

Strict and loose evaluation follow IFEval: strict checks the response as is; loose passes an
instruction when any of 8 variants passes (the response; without its first line; without its last
line; without both; and each of those with every ``*`` removed). An empty (whitespace-only)
response follows no instruction.

Example:
    >>> check_instruction("format_no_commas", "No commas here.")
    True
    >>> check_instruction("length_constraints:number_words", "one two three", {"relation": "less than", "num_words": 3})
    False
    >>> canonical_id("position_end_with")
    'startend:end_checker'
"""

from __future__ import annotations

import collections
import difflib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rulerag.errors import RuleRAGError


class InstructionError(RuleRAGError, ValueError):
    """An unknown instruction id or invalid kwargs for an instruction. The message names the
    instruction and the kwargs it accepts."""


#: The two ``relation`` values IFEval defines: ``count < N`` and ``count >= N``.
RELATIONS: tuple[str, ...] = ("less than", "at least")

#: Language codes ``language:response_language`` accepts (the languages ``langdetect`` knows).
LANGUAGE_CODES: frozenset[str] = frozenset(
    """af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne
    nl no pa pl pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh-cn zh-tw""".split()
)

#: ``detectable_format:constrained_response`` options (the response must contain one of them).
CONSTRAINED_OPTIONS: tuple[str, ...] = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

#: Characters ``punctuation:no_comma`` rejects.
COMMAS: str = ",，、،"

#: Seed of the language detector; fixed so scores are reproducible.
LANGDETECT_SEED = 0

# --------------------------------------------------------------------------------------- kwargs

# kind -> human description used in error messages
_KINDS: dict[str, str] = {
    "int": "integer >= 0",
    "pos_int": "integer >= 1",
    "str": "non-empty string",
    "str_list": "list of non-empty strings",
    "relation": "'less than' or 'at least'",
    "language": "language code such as 'en', 'it', 'pt'",
    "letter": "one letter a-z",
}


@dataclass(frozen=True)
class InstructionSpec:
    """One instruction type: IFEval id, FollowRAG id (None when FollowRAG does not use it),
    required kwargs (name -> kind) and the strict verifier ``check(response, kwargs) -> bool``."""

    id: str
    followrag_id: str | None
    kwargs: Mapping[str, str]
    check: Callable[[str, Mapping[str, Any]], bool]
    description: str

    def accepted(self) -> str:
        """The accepted kwargs as text, for error messages."""
        if not self.kwargs:
            return "none (pass {})"
        return ", ".join(f"{name} ({_KINDS[kind]})" for name, kind in self.kwargs.items())


# ----------------------------------------------------------------------------- text utilities


def _literal(keyword: str) -> re.Pattern[str]:
    return re.compile(re.escape(keyword), re.IGNORECASE)


def _whole_word(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(word) + r"(?!\w)", re.IGNORECASE)


def _compare(count: int, relation: str, bound: int) -> bool:
    return count < bound if relation == "less than" else count >= bound


def count_words(text: str) -> int:
    """Words as IFEval counts them: maximal runs of word characters (``\\w+``).

    Example:
        >>> count_words("It's a well-known fact, isn't it?")
        9
    """
    return len(re.findall(r"\w+", text))


_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf al inc ltd corp co fig approx dept gen col lt
    sgt capt rev hon jan feb mar apr jun jul aug sep sept oct nov dec""".split()
)
_SENTENCE_END = re.compile(r"([.!?]+)[\"'”’)\]]*(?=\s|$)")


def split_sentences(text: str) -> list[str]:
    """Sentences: text ends at ``.``, ``!`` or ``?`` (runs allowed, closing quotes/brackets kept)
    followed by whitespace or the end. A period after a common abbreviation (``Mr.``, ``e.g.``), a
    single-letter initial (``J.``) or a dotted acronym (``U.S.``) ends nothing, nor does an
    ellipsis followed by a lower-case word. Line breaks are not boundaries (as in IFEval). Pieces
    without a word character are dropped, so every sentence has at least one word.

    Example:
        >>> split_sentences("Mr. Smith met J. K. Rowling in 1999. She wrote... a lot! Really?")
        ['Mr. Smith met J. K. Rowling in 1999.', 'She wrote... a lot!', 'Really?']
    """
    pieces: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        punct = m.group(1)
        if punct == ".":
            before = re.search(r"(\S+)$", text[start : m.start()])
            word = before.group(1).lower().lstrip("(\"'“‘[") if before else ""
            if word in _ABBREVIATIONS or re.fullmatch(r"[a-z]|(?:[a-z]\.)+[a-z]", word):
                continue
        elif set(punct) == {"."}:
            after = re.match(r"\s*(\S)", text[m.end() :])
            if after and after.group(1).islower():
                continue
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    return [p.strip() for p in pieces if re.search(r"\w", p)]


def count_sentences(text: str) -> int:
    """Number of :func:`split_sentences` sentences."""
    return len(split_sentences(text))


def _capital_words(text: str) -> int:
    tokens = re.findall(r"\w+(?:['’.\-]\w+)*", text)
    return sum(1 for t in tokens if t.isupper())


_DIVIDER = re.compile(r"\s?\*\s?\*\s?\*\s?")
_RULE_LINE = re.compile(r"^\s*(?:(?:\*\s*){3,}|(?:-\s*){3,})$")


def _bullet_count(text: str) -> int:
    count = 0
    for line in text.split("\n"):
        if _RULE_LINE.match(line):
            continue
        s = line.lstrip()
        if (s.startswith("*") and len(s) > 1 and s[1] != "*") or s.startswith("-"):
            count += 1
    return count


def _paragraphs_by_divider(text: str) -> int | None:
    """Paragraph count with ``***`` dividers; None when an inner paragraph is empty (IFEval: fail)."""
    parts = _DIVIDER.split(text)
    count = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                count -= 1
            else:
                return None
    return count


_FIRST_WORD_STOP = set(".,?!'\"")


def first_word(paragraph: str) -> str:
    """IFEval's first word of a paragraph: the first whitespace-separated token, leading quotes
    removed, cut at the first ``. , ? ! ' "``, lower-cased.

    Example:
        >>> first_word('"Gravity," she said.')
        'gravity'
    """
    tokens = paragraph.split()
    if not tokens:
        return ""
    word = tokens[0].lstrip("'").lstrip('"')
    out = []
    for ch in word:
        if ch in _FIRST_WORD_STOP:
            break
        out.append(ch)
    return "".join(out).lower()


def _paragraphs_by_blank_line(text: str) -> list[str]:
    return [p for p in re.split(r"\n[ \t\r\f\v]*\n", text.replace("\r\n", "\n")) if p.strip()]


_JSON_FENCE_OPEN = re.compile(r"^```(?:json)?", re.IGNORECASE)


def strip_json_fences(text: str) -> str:
    """Remove a leading ```` ```json ```` / ```` ``` ```` fence and a trailing ```` ``` ```` (as IFEval does)."""
    text = text.strip()
    text = _JSON_FENCE_OPEN.sub("", text, count=1)
    if text.endswith("```"):
        text = text[:-3]
    return text.strip()


def _postscript_pattern(marker: str) -> re.Pattern[str]:
    marker = marker.strip().lower()
    parts = [re.escape(ch) + (r"\s?" if ch == "." else "") for ch in marker]
    return re.compile(r"(?<!\w)" + "".join(parts), re.IGNORECASE)


# ------------------------------------------------------------------------------ language detection

_LANG_LOCK = threading.Lock()
_LANG_FACTORY: Any = None


def _factory() -> Any:
    global _LANG_FACTORY
    with _LANG_LOCK:
        if _LANG_FACTORY is None:
            try:
                from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise RuleRAGError(
                    "language checks (language:response_language, change_case:english_capital, "
                    "change_case:english_lowercase) need the 'langdetect' package. "
                    "Fix: pip install langdetect"
                ) from exc
            names = sorted(n for n in os.listdir(PROFILES_DIRECTORY) if not n.startswith("."))
            profiles = []
            for name in names:
                with open(os.path.join(PROFILES_DIRECTORY, name), encoding="utf-8") as fh:
                    profiles.append(fh.read())
            factory = DetectorFactory()
            factory.load_json_profile(profiles)
            factory.set_seed(LANGDETECT_SEED)  # instance attribute: the module-level factory is untouched
            _LANG_FACTORY = factory
        return _LANG_FACTORY


@lru_cache(maxsize=4096)
def detect_language(text: str) -> str | None:
    """The language code ``langdetect`` assigns to ``text`` (seeded: the same answer every run),
    or None when no language can be detected (no letters).

    Example:
        >>> detect_language("The quick brown fox jumps over the lazy dog.")
        'en'
    """
    detector = _factory().create()
    from langdetect.lang_detect_exception import LangDetectException

    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None


def _is_language(text: str, code: str) -> bool:
    found = detect_language(text)
    return True if found is None else found == code


# ------------------------------------------------------------------------------------ verifiers


def _keywords_existence(text: str, kw: Mapping[str, Any]) -> bool:
    return all(_literal(k).search(text) for k in kw["keywords"])


def _keywords_frequency(text: str, kw: Mapping[str, Any]) -> bool:
    return _compare(len(_literal(kw["keyword"]).findall(text)), kw["relation"], kw["frequency"])


def _forbidden_words(text: str, kw: Mapping[str, Any]) -> bool:
    return not any(_whole_word(w).search(text) for w in kw["forbidden_words"])


def _letter_frequency(text: str, kw: Mapping[str, Any]) -> bool:
    return _compare(text.lower().count(kw["letter"]), kw["let_relation"], kw["let_frequency"])


def _response_language(text: str, kw: Mapping[str, Any]) -> bool:
    return _is_language(text, kw["language"])


def _number_sentences(text: str, kw: Mapping[str, Any]) -> bool:
    return _compare(count_sentences(text), kw["relation"], kw["num_sentences"])


def _number_paragraphs(text: str, kw: Mapping[str, Any]) -> bool:
    return _paragraphs_by_divider(text) == kw["num_paragraphs"]


def _number_words(text: str, kw: Mapping[str, Any]) -> bool:
    return _compare(count_words(text), kw["relation"], kw["num_words"])


def _nth_paragraph_first_word(text: str, kw: Mapping[str, Any]) -> bool:
    paragraphs = _paragraphs_by_blank_line(text)
    n = kw["nth_paragraph"]
    if len(paragraphs) != kw["num_paragraphs"] or n > len(paragraphs):
        return False
    return first_word(paragraphs[n - 1].strip()) == kw["first_word"].lower()


def _number_placeholders(text: str, kw: Mapping[str, Any]) -> bool:
    return len(re.findall(r"\[.*?\]", text)) >= kw["num_placeholders"]


def _postscript(text: str, kw: Mapping[str, Any]) -> bool:
    return bool(_postscript_pattern(kw["postscript_marker"]).search(text))


def _number_bullets(text: str, kw: Mapping[str, Any]) -> bool:
    return _bullet_count(text) == kw["num_bullets"]


def _constrained_response(text: str, kw: Mapping[str, Any]) -> bool:
    text = text.strip()
    return any(option in text for option in CONSTRAINED_OPTIONS)


def _highlight_count(text: str) -> int:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", text) if h.removeprefix("**").removesuffix("**").strip()]
    return len(single) + len(double)


def _number_highlights(text: str, kw: Mapping[str, Any]) -> bool:
    return _highlight_count(text) >= kw["num_highlights"]


def _section_pattern(splitter: str) -> re.Pattern[str]:
    return re.compile(r"\s?" + re.escape(splitter.strip()) + r"\s?\d+\s?")


def _multiple_sections(text: str, kw: Mapping[str, Any]) -> bool:
    return len(_section_pattern(kw["section_spliter"]).split(text)) - 1 >= kw["num_sections"]


def _json_format(text: str, kw: Mapping[str, Any]) -> bool:
    try:
        json.loads(strip_json_fences(text))
    except ValueError:
        return False
    return True


def _title(text: str, kw: Mapping[str, Any]) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", text))


def _two_responses(text: str, kw: Mapping[str, Any]) -> bool:
    parts = text.split("******")
    valid = []
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def _repeat_prompt(text: str, kw: Mapping[str, Any]) -> bool:
    return text.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())


def _end_checker(text: str, kw: Mapping[str, Any]) -> bool:
    return text.strip().strip('"').lower().endswith(kw["end_phrase"].strip().lower())


def _capital_word_frequency(text: str, kw: Mapping[str, Any]) -> bool:
    return _compare(_capital_words(text), kw["capital_relation"], kw["capital_frequency"])


def _english_capital(text: str, kw: Mapping[str, Any]) -> bool:
    # langdetect's profiles are lower-case text: short ALL-CAPS English is often misread
    # (e.g. as German), so detect on the lower-cased text (a deviation from IFEval)
    return text.isupper() and _is_language(text.lower(), "en")


def _english_lowercase(text: str, kw: Mapping[str, Any]) -> bool:
    return text.islower() and _is_language(text, "en")


def _no_comma(text: str, kw: Mapping[str, Any]) -> bool:
    return not any(c in text for c in COMMAS)


def _quotation(text: str, kw: Mapping[str, Any]) -> bool:
    text = text.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


_REL = "relation"
_SPECS: tuple[InstructionSpec, ...] = (
    InstructionSpec("keywords:existence", "keywords_inclusion", {"keywords": "str_list"}, _keywords_existence,
                    "include every keyword (case-insensitive substring)"),
    InstructionSpec("keywords:frequency", "keywords_frequency",
                    {"keyword": "str", "frequency": "int", "relation": _REL}, _keywords_frequency,
                    "keyword occurs < N / >= N times (case-insensitive substring)"),
    InstructionSpec("keywords:forbidden_words", "keywords_exclusion", {"forbidden_words": "str_list"},
                    _forbidden_words, "none of the words occurs as a whole word (case-insensitive)"),
    InstructionSpec("keywords:letter_frequency", None,
                    {"letter": "letter", "let_frequency": "int", "let_relation": _REL}, _letter_frequency,
                    "letter occurs < N / >= N times (case-insensitive)"),
    InstructionSpec("language:response_language", "format_language", {"language": "language"},
                    _response_language, "whole response detected as the language"),
    InstructionSpec("length_constraints:number_sentences", "length_sentence",
                    {"num_sentences": "int", "relation": _REL}, _number_sentences, "< N / >= N sentences"),
    InstructionSpec("length_constraints:number_paragraphs", "length_paragraph", {"num_paragraphs": "int"},
                    _number_paragraphs, "exactly N paragraphs separated by ***"),
    InstructionSpec("length_constraints:number_words", "length_words", {"num_words": "int", "relation": _REL},
                    _number_words, "< N / >= N words"),
    InstructionSpec("length_constraints:nth_paragraph_first_word", "position_first_word",
                    {"num_paragraphs": "int", "nth_paragraph": "pos_int", "first_word": "str"},
                    _nth_paragraph_first_word,
                    "exactly N blank-line paragraphs; paragraph i starts with the word"),
    InstructionSpec("detectable_content:number_placeholders", "structure_placeholder", {"num_placeholders": "int"},
                    _number_placeholders, "at least N [placeholders]"),
    InstructionSpec("detectable_content:postscript", "position_postscript", {"postscript_marker": "str"},
                    _postscript, "contains a postscript starting with the marker"),
    InstructionSpec("detectable_format:number_bullet_lists", "structure_bullets", {"num_bullets": "int"},
                    _number_bullets, "exactly N markdown bullet points (* or -)"),
    InstructionSpec("detectable_format:constrained_response", None, {}, _constrained_response,
                    "contains 'My answer is yes.' / 'no.' / 'maybe.'"),
    InstructionSpec("detectable_format:number_highlighted_sections", "structure_highlights",
                    {"num_highlights": "int"}, _number_highlights, "at least N *highlighted* sections"),
    InstructionSpec("detectable_format:multiple_sections", "structure_sections",
                    {"section_spliter": "str", "num_sections": "int"}, _multiple_sections,
                    "at least N sections marked 'SPLITTER k' (case-sensitive)"),
    InstructionSpec("detectable_format:json_format", "format_json", {}, _json_format,
                    "whole response is JSON (```json fences allowed)"),
    InstructionSpec("detectable_format:title", "structure_title", {}, _title, "contains a <<title>>"),
    InstructionSpec("combination:two_responses", None, {}, _two_responses,
                    "two different responses separated by ******"),
    InstructionSpec("combination:repeat_prompt", "format_repeat_question", {"prompt_to_repeat": "str"},
                    _repeat_prompt, "starts with the request, repeated verbatim (case-insensitive)"),
    InstructionSpec("startend:end_checker", "position_end_with", {"end_phrase": "str"}, _end_checker,
                    "ends with the phrase (case-insensitive; outer quotes and whitespace ignored)"),
    InstructionSpec("change_case:capital_word_frequency", "cases_capital_words",
                    {"capital_frequency": "int", "capital_relation": _REL}, _capital_word_frequency,
                    "ALL-CAPS words occur < N / >= N times"),
    InstructionSpec("change_case:english_capital", "cases_uppercase", {}, _english_capital,
                    "English, all capital letters"),
    InstructionSpec("change_case:english_lowercase", "cases_lowercase", {}, _english_lowercase,
                    "English, all lower-case letters"),
    InstructionSpec("punctuation:no_comma", "format_no_commas", {}, _no_comma, "no comma"),
    InstructionSpec("startend:quotation", "format_quotation", {}, _quotation,
                    "whole response wrapped in double quotes"),
)

#: IFEval id -> spec, for all 25 instruction types.
INSTRUCTIONS: dict[str, InstructionSpec] = {s.id: s for s in _SPECS}

#: FollowRAG id -> IFEval id (the 22 FollowRAG instruction types).
FOLLOWRAG_ALIASES: dict[str, str] = {s.followrag_id: s.id for s in _SPECS if s.followrag_id}


def instruction_ids() -> list[str]:
    """All accepted ids: the 25 IFEval ids, then the 22 FollowRAG ids."""
    return list(INSTRUCTIONS) + list(FOLLOWRAG_ALIASES)


def canonical_id(instruction_id: str) -> str:
    """The IFEval id for an IFEval or FollowRAG id.

    Example:
        >>> canonical_id("format_json"), canonical_id("detectable_format:json_format")
        ('detectable_format:json_format', 'detectable_format:json_format')
    """
    if not isinstance(instruction_id, str):
        raise InstructionError(
            f"instruction id must be a string, got {type(instruction_id).__name__} {instruction_id!r}"
        )
    key = instruction_id.strip()
    if key in INSTRUCTIONS:
        return key
    if key in FOLLOWRAG_ALIASES:
        return FOLLOWRAG_ALIASES[key]
    close = difflib.get_close_matches(key, instruction_ids(), n=3)
    hint = (
        f"did you mean {', '.join(close)}?"
        if close
        else "use an IFEval id (e.g. punctuation:no_comma) or a FollowRAG id (e.g. format_no_commas)"
    )
    raise InstructionError(f"unknown instruction id {instruction_id!r}. Fix: {hint}")


def get_spec(instruction_id: str) -> InstructionSpec:
    """The :class:`InstructionSpec` of an IFEval or FollowRAG id."""
    return INSTRUCTIONS[canonical_id(instruction_id)]


def _label(instruction_id: str, spec: InstructionSpec) -> str:
    return spec.id if instruction_id.strip() == spec.id else f"{instruction_id.strip()} (= {spec.id})"


def _coerce(label: str, spec: InstructionSpec, name: str, kind: str, value: Any) -> Any:
    def bad(why: str) -> InstructionError:
        return InstructionError(
            f"instruction {label}: kwarg {name!r} {why}. Fix: pass {name} as {_KINDS[kind]}; "
            f"accepted kwargs: {spec.accepted()}"
        )

    if kind in ("int", "pos_int"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"must be an integer, got {type(value).__name__} {value!r}")
        if value < (1 if kind == "pos_int" else 0):
            raise bad(f"must be {_KINDS[kind]}, got {value}")
        return value
    if kind == "str_list":
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise bad(f"must be a list of strings, got {type(value).__name__} {value!r}")
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise bad(f"must hold non-empty strings, got {item!r}")
        return [str(item) for item in value]
    if not isinstance(value, str):
        raise bad(f"must be a string, got {type(value).__name__} {value!r}")
    if kind == "str":
        if not value.strip():
            raise bad("must not be empty")
        return value
    if kind == "relation":
        rel = " ".join(value.lower().split())
        if rel not in RELATIONS:
            raise bad(f"must be 'less than' or 'at least', got {value!r}")
        return rel
    if kind == "language":
        code = value.strip().lower()
        if code not in LANGUAGE_CODES:
            raise bad(f"is not a known language code: {value!r} (known: {', '.join(sorted(LANGUAGE_CODES))})")
        return code
    if kind == "letter":
        letter = value.strip().lower()
        if len(letter) != 1 or not ("a" <= letter <= "z"):
            raise bad(f"must be one letter a-z, got {value!r}")
        return letter
    raise AssertionError(kind)  # pragma: no cover


def validate_kwargs(instruction_id: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Checked, normalised kwargs for one instruction. ``None`` values are dropped first (the
    Hugging Face copy of IFEval lists every kwarg name with ``null``). Unknown, missing and
    wrongly typed kwargs raise :class:`InstructionError` naming the instruction and the accepted
    kwargs.

    Example:
        >>> validate_kwargs("length_words", {"relation": "at least", "num_words": 5, "keyword": None})
        {'num_words': 5, 'relation': 'at least'}
    """
    spec = get_spec(instruction_id)
    label = _label(instruction_id, spec)
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise InstructionError(
            f"instruction {label}: kwargs must be an object, got {type(kwargs).__name__} {kwargs!r}. "
            f"Fix: pass a dict; accepted kwargs: {spec.accepted()}"
        )
    given = {k: v for k, v in kwargs.items() if v is not None}
    unknown = sorted(set(given) - set(spec.kwargs), key=str)
    if unknown:
        raise InstructionError(
            f"instruction {label}: unknown kwarg(s) {', '.join(repr(u) for u in unknown)}. "
            f"Fix: use only the accepted kwargs: {spec.accepted()}"
        )
    missing = [k for k in spec.kwargs if k not in given]
    if missing:
        raise InstructionError(
            f"instruction {label}: missing required kwarg(s) {', '.join(repr(m) for m in missing)}. "
            f"Fix: pass all of: {spec.accepted()}"
        )
    return {name: _coerce(label, spec, name, kind, given[name]) for name, kind in spec.kwargs.items()}


def prepare(
    instruction_id_list: Sequence[str], kwargs: Sequence[Mapping[str, Any] | None] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """``(IFEval id, validated kwargs)`` per instruction; ``kwargs`` defaults to no kwargs for each."""
    if isinstance(instruction_id_list, str) or not isinstance(instruction_id_list, Sequence):
        raise InstructionError(
            f"instruction_id_list must be a list of ids, got {type(instruction_id_list).__name__}. "
            "Fix: pass e.g. ['punctuation:no_comma']"
        )
    if kwargs is None:
        kwargs = [{} for _ in instruction_id_list]
    if isinstance(kwargs, Mapping) or not isinstance(kwargs, Sequence):
        raise InstructionError(
            f"kwargs must be a list with one dict per instruction, got {type(kwargs).__name__}. "
            "Fix: pass e.g. [{}] for ['punctuation:no_comma']"
        )
    if len(kwargs) != len(instruction_id_list):
        raise InstructionError(
            f"{len(instruction_id_list)} instruction ids but {len(kwargs)} kwargs dicts. "
            "Fix: pass one kwargs dict per instruction ({} when it takes none)"
        )
    return [(canonical_id(i), validate_kwargs(i, k)) for i, k in zip(instruction_id_list, kwargs)]


# ------------------------------------------------------------------------------ strict / loose


def check_instruction(instruction_id: str, response: str, kwargs: Mapping[str, Any] | None = None) -> bool:
    """Strict check of one instruction: True when ``response`` follows it. An empty response
    follows nothing."""
    spec = get_spec(instruction_id)
    kw = validate_kwargs(instruction_id, kwargs)
    return bool(response.strip()) and spec.check(response, kw)


def loose_variants(response: str) -> list[str]:
    """IFEval's 8 loose variants: the response, without its first line, without its last line,
    without both; then each of those with every ``*`` removed."""
    lines = response.split("\n")
    base = [
        response,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return base + [v.replace("*", "") for v in base]


def follow_instructions(
    response: str,
    instruction_id_list: Sequence[str],
    kwargs: Sequence[Mapping[str, Any] | None] | None = None,
    *,
    loose: bool = False,
) -> list[bool]:
    """Per-instruction results (IFEval's ``follow_instruction_list``), strict or loose."""
    prepared = prepare(instruction_id_list, kwargs)
    variants = loose_variants(response) if loose else [response]
    variants = [v for v in variants if v.strip()]
    return [any(INSTRUCTIONS[i].check(v, kw) for v in variants) for i, kw in prepared]


# ----------------------------------------------------------------------------- unsatisfiable

#: The contradiction rules :func:`unsatisfiable_reasons` applies (name: what it flags). A set is
#: flagged only when *no* response can pass all its instructions under the strict verifiers above.
UNSATISFIABLE_RULES: dict[str, str] = {
    "lowercase+capital": "english_lowercase together with english_capital",
    "case+language": "english_lowercase or english_capital (which require English) with a non-English "
    "response_language",
    "two-languages": "two response_language instructions naming different languages",
    "case+case-sensitive-text": (
        "english_lowercase with a section splitter holding an upper-case letter or with constrained_response; "
        "english_capital with a section splitter holding a lower-case letter or with constrained_response"
    ),
    "case+capital-words": "english_lowercase with capital_word_frequency at least N >= 1; "
    "english_capital with capital_word_frequency less than N <= 1",
    "count-bounds": (
        "bounds on one count that no number meets: number_words/number_sentences/keyword frequency/letter "
        "frequency/capital words 'at least M' with 'less than N' and M >= N, any 'less than 0', two different "
        "exact bullet or paragraph counts; required texts count too (a keyword to include counts as "
        "'at least 1'; a required text's words, letters and keyword occurrences are lower bounds)"
    ),
    "sentences>words": "number_sentences at least M with number_words less than N and M >= N "
    "(every sentence has a word)",
    "no-comma+required-text": "no_comma with a comma in text the response must contain (keyword, end phrase, "
    "postscript marker, repeated prompt, section splitter)",
    "forbidden+required-text": "a forbidden word that occurs as a whole word in text the response must contain",
    "repeat-prompt+start": "repeat_prompt with quotation (prompt not starting with '\"'), with json_format "
    "(prompt cannot start a JSON text), with nth_paragraph_first_word for paragraph 1 and another first "
    "word, or two different prompts neither a prefix of the other",
    "two-end-phrases": "two end phrases neither of which ends the other",
    "first-word": "nth_paragraph > num_paragraphs, or a first word holding whitespace or . , ? ! ' \" "
    "(never extracted as a first word)",
    "json+first-paragraph-word": "json_format with nth_paragraph_first_word for paragraph 1 of N > 1 "
    "paragraphs and a first word that is not a JSON literal or number",
}


def _required_texts(prepared: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """(what, text) pairs the response must contain verbatim (case-insensitive)."""
    out: list[tuple[str, str]] = []
    for iid, kw in prepared:
        if iid == "keywords:existence":
            out += [("keyword", k) for k in kw["keywords"]]
        elif iid == "keywords:frequency" and kw["relation"] == "at least" and kw["frequency"] >= 1:
            out.append(("keyword", kw["keyword"]))
        elif iid == "startend:end_checker":
            out.append(("end phrase", kw["end_phrase"].strip()))
        elif iid == "detectable_content:postscript":
            out.append(("postscript marker", kw["postscript_marker"].strip()))
        elif iid == "combination:repeat_prompt":
            out.append(("prompt to repeat", kw["prompt_to_repeat"].strip()))
        elif iid == "detectable_format:multiple_sections" and kw["num_sections"] >= 1:
            out.append(("section splitter", kw["section_spliter"].strip()))
    return out


_JSON_LITERAL = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")


def _could_start_json(text: str) -> bool:
    s = text.strip().lower()
    if not s:
        return True
    if s[0] in '{["-0123456789':
        return True
    return any(lit.startswith(s) or s.startswith(lit) for lit in ("true", "false", "null"))


def unsatisfiable_reasons(
    instruction_id_list: Sequence[str], kwargs: Sequence[Mapping[str, Any] | None] | None = None
) -> list[str]:
    """Why no response can follow all the instructions (strict verifiers); empty when satisfiable
    as far as the rules in :data:`UNSATISFIABLE_RULES` can tell.

    Example:
        >>> unsatisfiable_reasons(["cases_lowercase", "cases_uppercase"], [{}, {}])
        ['lowercase+capital: english_lowercase and english_capital cannot both hold']
    """
    prepared = prepare(instruction_id_list, kwargs)
    by: dict[str, list[Mapping[str, Any]]] = collections.defaultdict(list)
    for iid, kw in prepared:
        by[iid].append(kw)
    reasons: list[str] = []
    lower = "change_case:english_lowercase" in by
    capital = "change_case:english_capital" in by

    if lower and capital:
        reasons.append("lowercase+capital: english_lowercase and english_capital cannot both hold")
    langs = sorted({kw["language"] for kw in by.get("language:response_language", [])})
    if (lower or capital) and any(code != "en" for code in langs):
        which = "english_lowercase" if lower else "english_capital"
        reasons.append(f"case+language: {which} requires English but response_language asks for {', '.join(langs)}")
    if len(langs) > 1:
        reasons.append(f"two-languages: response_language asks for {' and '.join(langs)}")

    splitters = [
        kw["section_spliter"].strip()
        for kw in by.get("detectable_format:multiple_sections", [])
        if kw["num_sections"] >= 1
    ]
    case_text = "case+case-sensitive-text"
    if lower:
        for s in splitters:
            if any(c.isupper() for c in s):
                reasons.append(
                    f"{case_text}: english_lowercase but the section splitter {s!r} "
                    "(matched case-sensitively) has capitals"
                )
        if "detectable_format:constrained_response" in by:
            reasons.append(f"{case_text}: english_lowercase but constrained_response requires 'My answer is ...'")
        for kw in by.get("change_case:capital_word_frequency", []):
            if kw["capital_relation"] == "at least" and kw["capital_frequency"] >= 1:
                reasons.append(
                    "case+capital-words: english_lowercase but at least "
                    f"{kw['capital_frequency']} ALL-CAPS words required"
                )
    if capital:
        for s in splitters:
            if any(c.islower() for c in s):
                reasons.append(
                    f"{case_text}: english_capital but the section splitter {s!r} (matched case-sensitively) "
                    "has lower-case letters"
                )
        if "detectable_format:constrained_response" in by:
            reasons.append(
                f"{case_text}: english_capital but constrained_response requires 'My answer is ...' "
                "(lower-case letters)"
            )
        for kw in by.get("change_case:capital_word_frequency", []):
            if kw["capital_relation"] == "less than" and kw["capital_frequency"] <= 1:
                reasons.append(
                    "case+capital-words: english_capital makes every word ALL-CAPS but fewer than "
                    f"{kw['capital_frequency']} are allowed"
                )

    required = _required_texts(prepared)
    if "detectable_format:constrained_response" in by:
        required.append(("constrained response", CONSTRAINED_OPTIONS[0]))  # all options share their words

    # count bounds: quantity -> lower bounds (count >= lo), upper bounds (count < hi), exact values
    lows: dict[tuple[str, str], list[tuple[int, str]]] = collections.defaultdict(list)
    highs: dict[tuple[str, str], list[tuple[int, str]]] = collections.defaultdict(list)
    exacts: dict[tuple[str, str], list[tuple[int, str]]] = collections.defaultdict(list)

    def bound(q: tuple[str, str], relation: str, n: int, why: str) -> None:
        (highs if relation == "less than" else lows)[q].append((n, why))

    for iid, kw in prepared:
        if iid == "length_constraints:number_words":
            bound(("words", ""), kw["relation"], kw["num_words"], f"number_words {kw['relation']} {kw['num_words']}")
        elif iid == "length_constraints:number_sentences":
            bound(("sentences", ""), kw["relation"], kw["num_sentences"],
                  f"number_sentences {kw['relation']} {kw['num_sentences']}")
        elif iid == "keywords:frequency":
            bound(("keyword", kw["keyword"].lower()), kw["relation"], kw["frequency"],
                  f"keyword {kw['keyword']!r} {kw['relation']} {kw['frequency']} times")
        elif iid == "keywords:letter_frequency":
            bound(("letter", kw["letter"]), kw["let_relation"], kw["let_frequency"],
                  f"letter {kw['letter']!r} {kw['let_relation']} {kw['let_frequency']} times")
        elif iid == "change_case:capital_word_frequency":
            bound(("capital words", ""), kw["capital_relation"], kw["capital_frequency"],
                  f"capital words {kw['capital_relation']} {kw['capital_frequency']}")
        elif iid == "detectable_format:number_bullet_lists":
            exacts[("bullets", "")].append((kw["num_bullets"], f"exactly {kw['num_bullets']} bullets"))
        elif iid == "length_constraints:number_paragraphs":
            n = kw["num_paragraphs"]
            exacts[("*** paragraphs", "")].append((n, f"exactly {n} *** paragraphs"))
        elif iid == "length_constraints:nth_paragraph_first_word":
            n = kw["num_paragraphs"]
            exacts[("blank-line paragraphs", "")].append((n, f"exactly {n} blank-line paragraphs"))
    keyword_quantities = [q for q in list(highs) + list(lows) if q[0] == "keyword"]
    letter_quantities = [q for q in list(highs) + list(lows) if q[0] == "letter"]
    for what, text in required:
        lows[("words", "")].append((count_words(text), f"the {what} {text!r} has {count_words(text)} words"))
        for q in keyword_quantities:
            n = len(_literal(q[1]).findall(text))
            if n:
                lows[q].append((n, f"the {what} {text!r} contains {q[1]!r} {n} times"))
        for q in letter_quantities:
            n = text.lower().count(q[1])
            if n:
                lows[q].append((n, f"the {what} {text!r} contains {q[1]!r} {n} times"))
    for q in set(lows) | set(highs) | set(exacts):
        lo = max(lows.get(q, []), default=None)
        hi = min(highs.get(q, []), default=None)
        ex = sorted(set(exacts.get(q, [])))
        name = q[0] if not q[1] else f"{q[0]} {q[1]!r}"
        if hi is not None and hi[0] <= 0:
            reasons.append(f"count-bounds: {hi[1]} (no count is below {hi[0]})")
        elif lo is not None and hi is not None and lo[0] >= hi[0]:
            reasons.append(f"count-bounds: {name}: {lo[1]} but {hi[1]}")
        if len({n for n, _ in ex}) > 1:
            reasons.append(f"count-bounds: {name}: {' and '.join(w for _, w in ex)}")
    sent_lo = max(lows.get(("sentences", ""), []), default=None)
    word_hi = min(highs.get(("words", ""), []), default=None)
    if sent_lo is not None and word_hi is not None and sent_lo[0] >= word_hi[0] > 0:
        reasons.append(f"sentences>words: {sent_lo[1]} needs at least {sent_lo[0]} words but {word_hi[1]}")

    if "punctuation:no_comma" in by:
        for what, text in required:
            if any(c in text for c in COMMAS):
                reasons.append(f"no-comma+required-text: no_comma but the {what} {text!r} has a comma")
    for kw in by.get("keywords:forbidden_words", []):
        for word in kw["forbidden_words"]:
            pattern = _whole_word(word)
            for what, text in required:
                if pattern.search(text):
                    reasons.append(
                        f"forbidden+required-text: {word!r} is forbidden but the {what} {text!r} contains it"
                    )

    prompts = [kw["prompt_to_repeat"].strip() for kw in by.get("combination:repeat_prompt", [])]
    for p in prompts:
        if "startend:quotation" in by and not p.startswith('"'):
            reasons.append(f"repeat-prompt+start: the response must start with {p[:40]!r} and with a double quote")
        if "detectable_format:json_format" in by and not _could_start_json(p):
            reasons.append(f"repeat-prompt+start: the response must start with {p[:40]!r} and be JSON")
        for kw in by.get("length_constraints:nth_paragraph_first_word", []):
            prompt_first = first_word(_paragraphs_by_blank_line(p)[0]) if p else ""
            if kw["nth_paragraph"] == 1 and prompt_first != kw["first_word"].lower():
                reasons.append(
                    f"repeat-prompt+start: paragraph 1 must start with {kw['first_word']!r} "
                    f"but the repeated prompt starts with {prompt_first!r}"
                )
    lowered = sorted({p.lower() for p in prompts}, key=len)
    for a, b in zip(lowered, lowered[1:]):
        if not b.startswith(a):
            reasons.append("repeat-prompt+start: two different prompts to repeat at the start")
            break
    ends = sorted({kw["end_phrase"].strip().lower() for kw in by.get("startend:end_checker", [])}, key=len)
    for a, b in zip(ends, ends[1:]):
        if not b.endswith(a):
            reasons.append(f"two-end-phrases: the response cannot end with both {a!r} and {b!r}")
            break

    for kw in by.get("length_constraints:nth_paragraph_first_word", []):
        word = kw["first_word"]
        if kw["nth_paragraph"] > kw["num_paragraphs"]:
            reasons.append(f"first-word: paragraph {kw['nth_paragraph']} of only {kw['num_paragraphs']}")
        if first_word(word) != word.lower() or len(word.split()) != 1:
            reasons.append(f"first-word: {word!r} can never be read as a paragraph's first word")
        if (
            "detectable_format:json_format" in by
            and kw["nth_paragraph"] == 1
            and kw["num_paragraphs"] > 1
            and not _JSON_LITERAL.fullmatch(word.lower())
        ):
            reasons.append(
                f"json+first-paragraph-word: a JSON response of {kw['num_paragraphs']} paragraphs "
                f"cannot start with {word!r}"
            )
    return list(dict.fromkeys(reasons))
