"""Text helpers shared by BM25, rule matching and metrics: one tokeniser, one normaliser."""

from __future__ import annotations

import re
import string

_TOKEN_RE = re.compile(r"[0-9a-z]+")

#: A small English stop-word list (function words only). Relation names such as ``born_in`` keep
#: their content word ("born"); dropping "in" keeps BM25 from matching every "in" in the corpus.
STOPWORDS: frozenset[str] = frozenset(
    """a an and are as at be by did do does for from has have in is it its of on or that the
    their this to was were what when where which who whom whose why will with""".split()
)


def tokenize(text: str, *, stopwords: bool = True) -> list[str]:
    """Lower-case alphanumeric tokens; ``_`` and punctuation separate tokens.

    Example:
        >>> tokenize("Which country is Alice_Marlow a citizen of?")
        ['country', 'alice', 'marlow', 'citizen']
    """
    tokens = _TOKEN_RE.findall(text.lower())
    if stopwords:
        return [t for t in tokens if t not in STOPWORDS]
    return tokens


def relation_words(relation: str) -> str:
    """Render a relation name as words: ``born_in`` -> ``born in``; ``/people/person/nationality``
    -> ``people person nationality``.

    Example:
        >>> relation_words("citizen_of")
        'citizen of'
    """
    return " ".join(re.split(r"[\s_/.:]+", relation.strip("/ "))).strip()


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower-case, strip punctuation and articles, collapse spaces.

    Example:
        >>> normalize_answer("The  Kingdom of Norland!")
        'kingdom of norland'
    """
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())
