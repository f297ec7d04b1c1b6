"""Faithfulness to the retrieved documents and correctness against gold answers (no model needed).

Faithfulness (lexical, after Adlakha et al. 2023, "Evaluating Correctness and Faithfulness of
Instruction-Following Models for Question Answering"):

- **K-Precision**: share of the answer's tokens that occur among the documents' tokens;
- **K-Precision++**: the same after dropping answer tokens that occur in the question (copying the
  question proves nothing about grounding);
- **K-Recall**: share of the documents' tokens that occur among the answer's tokens;
- **K-F1**: harmonic mean of K-Precision and K-Recall.

Tokens are :func:`rulerag.text.normalize_answer` tokens (non-ASCII punctuation becomes a space
first); each token occurrence counts, membership is tested against the set of the other side's
tokens. Undefined scores (no tokens to score) are ``None``.

Grounding: every entity-like span of the answer (a run of two or more capitalised words, with
connectors such as "of" or "upon" inside, leading/trailing function words trimmed; and every
double-quoted string) must occur in a cited document, case-insensitively and ignoring punctuation;
every number must occur in a cited document exactly, with thousands separators ignored (``1,000`` =
``1000``). Cited documents are those the answer cites as ``[k]`` (1-based, as numbered by
:mod:`rulerag.generation.prompts`); an answer that cites none is checked against all documents.
An answer written entirely in capitals has no capitalisation signal, so only its quoted strings
and numbers are checked; title text (``<<...>>``) is title-cased by convention and is not
searched for entities (its numbers are).

Forced tokens: text an instruction made the model write is removed before scoring faithfulness
and correctness (:func:`answer_content`): JSON syntax and keys, outer quotes, the repeated prompt,
the end phrase, the postscript marker (and optionally its text), required keywords, placeholders
``[...]``, section markers (``SECTION 1``), a required paragraph-first word, the constrained
response option, citation markers ``[k]`` and list numbers.

Correctness against gold aliases (max over aliases, normalisation = ``normalize_answer``): strict
exact match, SQuAD token F1, and token recall (share of the gold tokens found in the answer).

A model-based check is pluggable through :class:`Judge`; :class:`NoJudge` is the default and no
code here assumes an NLI model exists.
"""

from __future__ import annotations

import collections
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from rulerag.checking.instructions import (
    CONSTRAINED_OPTIONS,
    _postscript_pattern,
    _whole_word,
    prepare,
    strip_json_fences,
)
from rulerag.text import STOPWORDS, normalize_answer

# ------------------------------------------------------------------------------------ tokens


def _unicode_punct_to_space(text: str) -> str:
    return "".join(" " if ord(c) > 127 and unicodedata.category(c).startswith("P") else c for c in text)


def normalize(text: str) -> str:
    """``normalize_answer`` after mapping non-ASCII punctuation (curly quotes, dashes) to spaces.

    Example:
        >>> normalize("“The  Kingdom of Norland!”")
        'kingdom of norland'
    """
    return normalize_answer(_unicode_punct_to_space(text))


def tokens(text: str) -> list[str]:
    """Scoring tokens: :func:`normalize` split on whitespace."""
    return normalize(text).split()


def _share(items: Sequence[str], pool: set[str]) -> float | None:
    if not items:
        return None
    return sum(1 for t in items if t in pool) / len(items)


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def k_precision(answer: str, documents: Sequence[str]) -> float | None:
    """Share of answer tokens that occur in the documents' tokens (None for an answer with no tokens).

    Example:
        >>> k_precision("Alice was born in Norland", ["Alice Marlow was born in Norland."])
        1.0
    """
    doc_tokens = {t for d in documents for t in tokens(d)}
    return _share(tokens(answer), doc_tokens)


def k_precision_pp(answer: str, documents: Sequence[str], question: str | None) -> float | None:
    """K-Precision over the answer tokens that do not occur in the question (None when none remain).

    Example:
        >>> k_precision_pp("Alice was born in Paris", ["Alice was born in Norland."], "Where was Alice born?")
        0.5
    """
    asked = set(tokens(question or ""))
    doc_tokens = {t for d in documents for t in tokens(d)}
    return _share([t for t in tokens(answer) if t not in asked], doc_tokens)


def k_recall(answer: str, documents: Sequence[str]) -> float | None:
    """Share of the documents' tokens that occur in the answer's tokens (None for empty documents)."""
    doc_tokens = [t for d in documents for t in tokens(d)]
    return _share(doc_tokens, set(tokens(answer)))


def k_f1(answer: str, documents: Sequence[str]) -> float | None:
    """Harmonic mean of :func:`k_precision` and :func:`k_recall`."""
    return _f1(k_precision(answer, documents), k_recall(answer, documents))


# --------------------------------------------------------------------------- forced tokens

_CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_LIST_NUMBER = re.compile(r"(?m)^(\s*)\d+[.)](?=\s)")


def cited_documents(response: str, n_documents: int) -> list[int]:
    """1-based indices of documents the response cites as ``[k]`` / ``[k, j]`` (in range only).

    Example:
        >>> cited_documents("Norland [2][1], see [7].", 3)
        [1, 2]
    """
    found: set[int] = set()
    for m in _CITATION.finditer(response):
        for part in re.split(r"[,;]", m.group(1)):
            k = int(part)
            if 1 <= k <= n_documents:
                found.add(k)
    return sorted(found)


def _json_leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _json_leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _json_leaves(v)]
    if isinstance(value, str):
        return [value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    return []


_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


def _json_text(body: str) -> str | None:
    try:
        return "\n".join(_json_leaves(json.loads(body)))
    except ValueError:
        return None


def _remove_json_syntax(text: str) -> str:
    """JSON leaves (string and number values) instead of JSON text; keys and syntax go. JSON
    embedded in other text (e.g. after a repeated request) is found by its outermost brackets."""
    whole = _json_text(strip_json_fences(text))
    if whole is not None:
        return whole
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            inner = _json_text(text[start : end + 1])
            if inner is not None:
                return f"{_FENCE.sub(' ', text[:start])}\n{inner}\n{_FENCE.sub(' ', text[end + 1 :])}"
    body = _FENCE.sub(" ", text)
    body = re.sub(r'"(?:[^"\\\n]|\\.)*"\s*:', " ", body)  # keys
    return re.sub(r"[{}]", " ", body)


def answer_content(
    response: str,
    instruction_id_list: Sequence[str] = (),
    kwargs: Sequence[Mapping[str, Any] | None] | None = None,
    *,
    n_documents: int | None = None,
    drop_postscript_text: bool = False,
) -> str:
    """The response without the text its instructions forced into it, and without citation
    markers and list numbers. Driven by the instruction kwargs (IFEval or FollowRAG ids).

    ``drop_postscript_text`` also drops the rest of the postscript's line (by default only the
    marker goes: what the model writes after it is its own content). ``n_documents`` limits which
    ``[k]`` are citations (all numeric brackets when None).

    Example:
        >>> answer_content("Gravity [1]. Is there anything else?", ["position_end_with"],
        ...                [{"end_phrase": "Is there anything else?"}])
        'Gravity .'
    """
    prepared = prepare(instruction_id_list, kwargs)
    ids = {iid for iid, _ in prepared}
    text = response

    def cut(pattern: re.Pattern[str], s: str, count: int = 0) -> str:
        return pattern.sub(" ", s, count=count)

    for iid, kw in prepared:
        if iid == "combination:repeat_prompt":
            prompt = kw["prompt_to_repeat"].strip()
            s = text.lstrip()
            if s.lower().startswith(prompt.lower()):
                text = s[len(prompt) :]
            else:
                text = cut(re.compile(re.escape(prompt), re.IGNORECASE), text, 1)
    if "detectable_format:json_format" in ids:
        text = _remove_json_syntax(text)
    if "startend:quotation" in ids:
        s = text.strip()
        if len(s) > 1 and s[0] == '"' and s[-1] == '"':
            text = s[1:-1]
    for iid, kw in prepared:
        if iid == "startend:end_checker":
            text = cut(re.compile(re.escape(kw["end_phrase"].strip()), re.IGNORECASE), text)
        elif iid == "detectable_content:postscript":
            pattern = _postscript_pattern(kw["postscript_marker"])
            if drop_postscript_text:
                pattern = re.compile(pattern.pattern + r"[^\n]*", re.IGNORECASE)
            text = cut(pattern, text)
        elif iid == "keywords:existence":
            for k in kw["keywords"]:
                text = cut(_whole_word(k), text)
        elif iid == "keywords:frequency" and kw["relation"] == "at least":
            text = cut(_whole_word(kw["keyword"]), text)
        elif iid == "detectable_format:multiple_sections":
            text = cut(re.compile(re.escape(kw["section_spliter"].strip()) + r"\s?\d+", re.IGNORECASE), text)
        elif iid == "detectable_format:constrained_response":
            for option in CONSTRAINED_OPTIONS:
                text = text.replace(option, " ")
        elif iid == "length_constraints:nth_paragraph_first_word":
            word = re.escape(kw["first_word"].strip())
            text = re.sub(r"(\A|\n[ \t]*\n)(\s*[\"']*)" + word + r"(?!\w)", r"\1\2", text, count=1, flags=re.IGNORECASE)
    text = _CITATION.sub(
        lambda m: " " if n_documents is None or cited_documents(m.group(0), n_documents) else m.group(0), text
    )
    if "detectable_content:number_placeholders" in ids:
        text = re.sub(r"\[[^\]\n]*\]", " ", text)
    text = _LIST_NUMBER.sub(r"\1", text)
    return re.sub(r"[ \t]+", " ", text).strip()


# -------------------------------------------------------------------------------- grounding

_CONNECTORS = frozenset("of the de del della der di da du la le van von upon al bin ibn y".split())
_STARTERS = STOPWORDS | frozenset(
    """i yes no sure here there however also this these those he she they we you my our his her its
    their answer so but then thus therefore""".split()
)
_WORD = re.compile(r"[^\W_][\w'’\-]*")
_QUOTED = re.compile(r"\"([^\"\n]{2,300})\"|“([^”\n]{2,300})”")
_NUMBER = re.compile(r"(?<![\d.,])\d+(?:[,\u00a0\u2009\u202f]\d{3}(?!\d))*(?:\.\d+)?")
_TITLE = re.compile(r"<<[^\n]*?>>")


def _canonical_number(raw: str) -> str:
    return re.sub(r"[,\u00a0\u2009\u202f]", "", raw)


def numbers_in(text: str) -> list[str]:
    """Numbers in ``text``, thousands separators removed.

    Example:
        >>> numbers_in("In 1,000 BC, 3.5 people (COVID-19) lived in 1000 towns.")
        ['1000', '3.5', '19', '1000']
    """
    return [_canonical_number(m.group(0)) for m in _NUMBER.finditer(text)]


def _is_capitalised(word: str) -> bool:
    return word[0].isupper()


def entity_spans(text: str) -> list[str]:
    """Entity-like spans: runs of two or more capitalised words (connectors such as "of" inside;
    leading/trailing function words trimmed), and double-quoted strings. Spans are broken by any
    punctuation. A text with no lower-case letters yields only its quoted strings.

    Example:
        >>> entity_spans('The Bank of England met "the board" in Newcastle upon Tyne. Yes.')
        ['Bank of England', 'Newcastle upon Tyne', 'the board']
    """
    spans: list[str] = []
    text_for_caps = _TITLE.sub(" . ", text)
    if any(c.islower() for c in text_for_caps):
        words = list(_WORD.finditer(text_for_caps))
        run: list[re.Match[str]] = []

        def flush() -> None:
            while run and (run[-1].group(0).lower() in _CONNECTORS or run[-1].group(0).lower() in _STARTERS):
                run.pop()
            while run and run[0].group(0).lower() in _STARTERS | _CONNECTORS:
                run.pop(0)
            if sum(1 for w in run if _is_capitalised(w.group(0))) >= 2:
                spans.append(text_for_caps[run[0].start() : run[-1].end()])
            run.clear()

        prev_end = None
        for w in words:
            word = w.group(0)
            contiguous = prev_end is not None and not text_for_caps[prev_end : w.start()].strip()
            if run and not contiguous:
                flush()
            if _is_capitalised(word):
                run.append(w)
            elif run and word.lower() in _CONNECTORS:
                run.append(w)
            elif run:
                flush()
            prev_end = w.end()
        flush()
    for m in _QUOTED.finditer(text):
        quoted = (m.group(1) or m.group(2)).strip()
        if normalize(quoted):
            spans.append(quoted)
    return list(dict.fromkeys(spans))


@dataclass(frozen=True)
class GroundingResult:
    """Entities and numbers of the answer and which of them no cited document contains."""

    grounded: bool
    cited: list[int]
    entities: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    unsupported_entities: list[str] = field(default_factory=list)
    unsupported_numbers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _loose_text(text: str) -> str:
    return " " + " ".join(re.sub(r"[^0-9a-z]+", " ", _unicode_punct_to_space(text).lower()).split()) + " "


def grounding(answer: str, documents: Sequence[str], *, cited: Sequence[int] | None = None) -> GroundingResult:
    """Check that every entity-like span and number of ``answer`` occurs in a cited document.

    ``cited`` (1-based) defaults to the ``[k]`` citations in the answer, or all documents when it
    cites none.

    Example:
        >>> g = grounding("Alice Marlow was born in 1,990 in New Norland.", ["Alice Marlow was born in 1990."])
        >>> g.grounded, g.unsupported_entities, g.unsupported_numbers
        (False, ['New Norland'], [])
    """
    if cited is None:
        cited = cited_documents(answer, len(documents))
    cited = sorted(set(cited)) or list(range(1, len(documents) + 1))
    chosen = [documents[k - 1] for k in cited if 1 <= k <= len(documents)]
    body = _CITATION.sub(" ", answer)
    entities = entity_spans(body)
    numbers = list(dict.fromkeys(numbers_in(body)))
    doc_texts = [_loose_text(d) for d in chosen]
    doc_numbers = {n for d in chosen for n in numbers_in(d)}
    bad_entities = []
    for span in entities:
        needle = _loose_text(span)
        if needle.strip() and not any(needle in d for d in doc_texts):
            bad_entities.append(span)
    bad_numbers = [n for n in numbers if n not in doc_numbers]
    return GroundingResult(
        grounded=not bad_entities and not bad_numbers,
        cited=list(cited),
        entities=entities,
        numbers=numbers,
        unsupported_entities=bad_entities,
        unsupported_numbers=bad_numbers,
    )


# ------------------------------------------------------------------------------ faithfulness


@dataclass(frozen=True)
class FaithfulnessScores:
    """Lexical faithfulness of one answer to its documents; ``content`` is the text scored (the
    response with forced tokens removed)."""

    k_precision: float | None
    k_precision_pp: float | None
    k_recall: float | None
    k_f1: float | None
    grounding: GroundingResult
    content: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "k_precision": self.k_precision,
            "k_precision_pp": self.k_precision_pp,
            "k_recall": self.k_recall,
            "k_f1": self.k_f1,
            "grounded": self.grounding.grounded,
            "grounding": self.grounding.to_dict(),
            "content": self.content,
        }


def faithfulness(
    response: str,
    documents: Sequence[str],
    *,
    question: str | None = None,
    instruction_id_list: Sequence[str] = (),
    kwargs: Sequence[Mapping[str, Any] | None] | None = None,
    drop_postscript_text: bool = False,
) -> FaithfulnessScores:
    """K-Precision, K-Precision++, K-Recall, K-F1 and grounding of ``response`` against
    ``documents``, after removing the tokens its instructions forced into it.

    Example:
        >>> s = faithfulness("Gravity. Peace!", ["Gravity is a force."], instruction_id_list=["position_end_with"],
        ...                  kwargs=[{"end_phrase": "Peace!"}])
        >>> s.k_precision, s.content
        (1.0, 'Gravity.')
    """
    documents = list(documents)
    cited = cited_documents(response, len(documents))
    content = answer_content(
        response, instruction_id_list, kwargs, n_documents=len(documents), drop_postscript_text=drop_postscript_text
    )
    kp = k_precision(content, documents)
    kr = k_recall(content, documents)
    return FaithfulnessScores(
        k_precision=kp,
        k_precision_pp=k_precision_pp(content, documents, question),
        k_recall=kr,
        k_f1=_f1(kp, kr),
        grounding=grounding(content, documents, cited=cited),
        content=content,
    )


# ------------------------------------------------------------------------------ correctness


def _golds(golden_answers: str | Sequence[str]) -> list[str]:
    return [golden_answers] if isinstance(golden_answers, str) else [str(g) for g in golden_answers]


def exact_match(answer: str, golden_answers: str | Sequence[str]) -> float:
    """1.0 when the normalised answer equals a normalised gold alias, else 0.0."""
    pred = normalize(answer)
    return float(any(pred == normalize(g) for g in _golds(golden_answers)))


def gold_in_answer(answer: str, golden_answers: str | Sequence[str]) -> float:
    """1.0 when a gold alias occurs in the answer as whole words, both normalised (lower case,
    no punctuation or articles), else 0.0: the "answer accuracy" used for long answers, where
    exact match is near zero by construction.

    Example:
        >>> gold_in_answer("It is the Kingdom of Norland, I think.", ["Kingdom of Norland"])
        1.0
        >>> gold_in_answer("Norlandia", ["Norland"])
        0.0
    """
    pred = f" {normalize(answer)} "
    return float(any(f" {g} " in pred for g in map(normalize, _golds(golden_answers)) if g))


def _overlap(pred: list[str], gold: list[str]) -> int:
    return sum((collections.Counter(pred) & collections.Counter(gold)).values())


def token_f1(answer: str, golden_answers: str | Sequence[str]) -> float:
    """SQuAD token F1, max over gold aliases.

    Example:
        >>> round(token_f1("the Kingdom of Norland today", ["Norland"]), 4)
        0.4
    """
    pred = tokens(answer)
    best = 0.0
    for gold in _golds(golden_answers):
        g = tokens(gold)
        if not pred or not g:
            best = max(best, float(pred == g))
            continue
        same = _overlap(pred, g)
        if same:
            p, r = same / len(pred), same / len(g)
            best = max(best, 2 * p * r / (p + r))
    return best


def token_recall(answer: str, golden_answers: str | Sequence[str]) -> float:
    """Share of a gold alias's tokens found in the answer, max over aliases.

    Example:
        >>> token_recall("It is Norland", ["Kingdom Norland"])
        0.5
    """
    pred = tokens(answer)
    best = 0.0
    for gold in _golds(golden_answers):
        g = tokens(gold)
        if not g:
            best = max(best, float(not pred))
            continue
        best = max(best, _overlap(pred, g) / len(g))
    return best


@dataclass(frozen=True)
class CorrectnessScores:
    """Exact match, token F1 and token recall of an answer, each the max over gold aliases."""

    em: float
    f1: float
    recall: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def correctness(answer: str, golden_answers: str | Sequence[str]) -> CorrectnessScores:
    """EM / F1 / recall of ``answer`` against the gold aliases."""
    return CorrectnessScores(
        em=exact_match(answer, golden_answers),
        f1=token_f1(answer, golden_answers),
        recall=token_recall(answer, golden_answers),
    )


# ------------------------------------------------------------------------------------ judge


@dataclass(frozen=True)
class JudgeVerdict:
    """A model-based judgement: a label (e.g. ``supported``), an optional score in [0, 1] and a
    free-text rationale."""

    label: str
    score: float | None = None
    rationale: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Judge(Protocol):
    """A pluggable model-based check (an NLI model, an LLM judge ...). It receives the question,
    the answer with forced tokens removed, and the documents."""

    name: str

    def __call__(self, question: str | None, answer: str, documents: Sequence[str]) -> JudgeVerdict: ...


class NoJudge:
    """The default judge: judges nothing (reports include no verdict)."""

    name = "none"

    def __call__(self, question: str | None, answer: str, documents: Sequence[str]) -> JudgeVerdict:
        return JudgeVerdict(label="not judged", score=None, rationale="no judge configured")
