"""Answer and retrieval metrics, each defined once (docs/benchmarks.md, "Running a benchmark").

All string comparisons use :func:`rulerag.text.normalize_answer` (lower-case, punctuation and
articles removed, spaces collapsed). ``golds`` is always the full list of accepted answers (the
filtered setting: every answer of an identical query counts).

Example:
    >>> recall_at_k(["Time 2014 Thailand consult Malaysia."], ["Malaysia"], 1)
    1.0
    >>> exact_match("The Norland.", ["Norland"]), token_f1("Kingdom of Norland", ["Norland"])
    (1.0, 0.5)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from rulerag.text import normalize_answer


def _contains(haystack: str, needle: str) -> bool:
    """Token-boundary containment of normalised strings ("iran" is not in "iranian")."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def recall_at_k(documents: Sequence[str], golds: Sequence[str], k: int) -> float:
    """1.0 when any gold answer occurs (normalised, at token boundaries) in any of the top-``k``
    documents, else 0.0 (the RuleRAG paper's Recall@k)."""
    norm_golds = [normalize_answer(g) for g in golds]
    for doc in documents[:k]:
        nd = normalize_answer(doc)
        if any(_contains(nd, g) for g in norm_golds):
            return 1.0
    return 0.0


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """Strict EM: the normalised prediction equals a normalised gold answer."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> tuple[float, float]:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if not pred_tokens or not gold_tokens or same == 0:
        return 0.0, 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall), recall


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Token F1 (SQuAD), the maximum over gold answers."""
    p = normalize_answer(prediction).split()
    return max((_f1(p, normalize_answer(g).split())[0] for g in golds), default=0.0)


def token_recall(prediction: str, golds: Sequence[str]) -> float:
    """Share of a gold answer's tokens that the prediction contains, the maximum over golds."""
    p = normalize_answer(prediction).split()
    return max((_f1(p, normalize_answer(g).split())[1] for g in golds), default=0.0)


class EntityMatcher:
    """Finds KG entity names in free text (longest match first, left to right).

    Example:
        >>> m = EntityMatcher(["Norland", "Alice Marlow", "Kingdom of Norland"])
        >>> m.find("I think Alice Marlow lives in the Kingdom of Norland")
        ['alice marlow', 'kingdom of norland']
    """

    def __init__(self, entities: Iterable[str], max_tokens: int = 12) -> None:
        self.names = {n for n in (normalize_answer(e) for e in entities) if n}
        self.max_tokens = max(1, min(max_tokens, max((len(n.split()) for n in self.names), default=1)))

    def find(self, text: str) -> list[str]:
        tokens = normalize_answer(text).split()
        found, i = [], 0
        while i < len(tokens):
            for n in range(min(self.max_tokens, len(tokens) - i), 0, -1):
                cand = " ".join(tokens[i : i + n])
                if cand in self.names:
                    found.append(cand)
                    i += n
                    break
            else:
                i += 1
        return found


def entity_exact_match(prediction: str, golds: Sequence[str], question_entities: Sequence[str], matcher: EntityMatcher) -> float:
    """The paper's lenient entity EM: the first KG entity named in the prediction, ignoring the
    entities of the question, equals a gold answer. 0.0 when the prediction names no other entity."""
    skip = {normalize_answer(e) for e in question_entities}
    norm_golds = {normalize_answer(g) for g in golds}
    for ent in matcher.find(prediction):
        if ent not in skip:
            return float(ent in norm_golds)
    return 0.0
