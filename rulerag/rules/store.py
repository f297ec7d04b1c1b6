"""Find the rules that fit a question.

A structured query names its relation: :meth:`RuleStore.match_relation`. A free-text question is
scored against every head relation (:meth:`RuleStore.match`):

* **mention**: the share of the relation's content words (``tokenize(relation_words(rel))``) found
  among the question's tokens. Two words match when equal or when they share a prefix of at least
  ``max(4, len(shorter) - 2)`` characters: citizen~citizenship, located~location, lives~lived.
* **embedding** (only with an encoder): cosine similarity of the question and the relation's
  words, clipped to [0, 1]. Relations are embedded once per store and ``encoder.model_name``.
  Before embedding, capitalised words that do not start a sentence (entity names, mostly) are
  replaced by "someone": names otherwise dominate short-question embeddings.
* **score** = ``mention_weight * mention + (1 - mention_weight) * embedding`` (mention alone
  without an encoder). Every rule of a head relation gets that relation's score.

With all-MiniLM-L6-v2 a good paraphrase ("What nationality does Alice hold?" vs "citizen of")
scores about 0.45 cosine, so under the defaults (``mention_weight=0.5``, ``min_score=0.35``) the
embedding mainly re-ranks and completes partial mentions; lower ``mention_weight`` to let
paraphrases through on their own.

Example:
    >>> from rulerag.rules.parse import parse_rule
    >>> store = RuleStore([parse_rule("[A, born_in, B] leads to [A, citizen_of, B]")])
    >>> [m.rule.head.relation for m in store.match("Which country is Alice a citizen of?")]
    ['citizen_of']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rulerag.embedding import TextEncoder
from rulerag.rules.model import Rule
from rulerag.rules.parse import load_rules
from rulerag.text import relation_words, tokenize

_CAP_WORD = re.compile(r"\b[A-Z][\w'’-]*")
_SOMEONE_RUN = re.compile(r"\bsomeone(?:\s+someone\b)+")


@dataclass(frozen=True)
class RuleMatch:
    """A rule chosen for a query, with the scores behind the choice."""

    rule: Rule
    score: float
    mention_score: float
    embedding_score: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.to_dict(), "score": self.score, "mention_score": self.mention_score,
                "embedding_score": self.embedding_score, "reason": self.reason}


def _words_match(a: str, b: str) -> bool:
    if a == b:
        return True
    short, long_ = sorted((a, b), key=len)
    need = max(4, len(short) - 2)
    return len(short) >= need and long_[:need] == short[:need]


def _content_words(relation: str) -> list[str]:
    words = relation_words(relation)
    return list(dict.fromkeys(tokenize(words) or tokenize(words, stopwords=False)))


def mask_entities(question: str) -> str:
    """Replace capitalised words that do not start a sentence by "someone".

    Example:
        >>> mask_entities("What nationality does Alice Marlow hold?")
        'What nationality does someone hold?'
    """

    def repl(m: re.Match[str]) -> str:
        before = question[: m.start()].rstrip()
        return m.group(0) if not before or before[-1] in '.?!:;"(' else "someone"

    return _SOMEONE_RUN.sub("someone", _CAP_WORD.sub(repl, question))


def _confidence_key(rule: Rule) -> tuple[bool, float]:
    return (rule.confidence is None, -(rule.confidence or 0.0))


class RuleStore:
    """An immutable set of rules indexed by head relation (duplicates dropped, first kept).

    Example:
        >>> from rulerag.rules.parse import parse_rule
        >>> store = RuleStore([parse_rule("r2(X,Y) <- r1(X,Y)"), parse_rule("r2(X,Y) <- r3(Y,X)")])
        >>> len(store), store.relations
        (2, ['r2'])
    """

    def __init__(self, rules: Iterable[Rule], *, mask_names: bool = True) -> None:
        self._rules = tuple(dict.fromkeys(rules))
        for rule in self._rules:
            if not isinstance(rule, Rule):
                raise TypeError(f"RuleStore takes Rule objects, got {type(rule).__name__}")
        groups: dict[str, list[Rule]] = {}
        for rule in self._rules:
            groups.setdefault(rule.head.relation, []).append(rule)
        self._by_head = {rel: sorted(groups[rel], key=_confidence_key) for rel in sorted(groups)}
        self._words = {rel: _content_words(rel) for rel in self._by_head}
        self._vectors: dict[str, np.ndarray] = {}
        self.mask_names = mask_names

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> RuleStore:
        """Load a store with :func:`~rulerag.rules.parse.load_rules` (raises ``RuleFormatError``)."""
        return cls(load_rules(path), **kwargs)

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    @property
    def relations(self) -> list[str]:
        """Head relations, sorted."""
        return list(self._by_head)

    def by_head(self, relation: str) -> list[Rule]:
        """Rules concluding ``relation``, by confidence (highest first, ``None`` last, then file order)."""
        return list(self._by_head.get(relation, ()))

    def match_relation(self, relation: str, top_n: int | None = None) -> list[RuleMatch]:
        """Rules for a structured query on ``relation``; score = confidence (1.0 when unknown).

        Example:
            >>> from rulerag.rules.parse import parse_rule
            >>> RuleStore([parse_rule("r2(X,Y) <- r1(X,Y)")]).match_relation("r2")[0].score
            1.0
        """
        return [RuleMatch(r, 1.0 if r.confidence is None else r.confidence, 1.0, None, "head relation")
                for r in self.by_head(relation)[:top_n]]

    def match(self, question: str, *, encoder: TextEncoder | None = None, top_n: int | None = 3,
              min_score: float = 0.35, mention_weight: float = 0.5) -> list[RuleMatch]:
        """Up to ``top_n`` rules whose head relation scores at least ``min_score`` for ``question``,
        by (score, confidence) descending. See the module docstring for the scores."""
        return self.match_many([question], encoder=encoder, top_n=top_n, min_score=min_score,
                               mention_weight=mention_weight)[0]

    def match_many(self, questions: list[str], *, encoder: TextEncoder | None = None, top_n: int | None = 3,
                   min_score: float = 0.35, mention_weight: float = 0.5) -> list[list[RuleMatch]]:
        """:meth:`match` for many questions, embedding them in one ``encoder.encode`` call."""
        if isinstance(questions, str):
            raise TypeError("match_many takes a list of questions; use match() for one")
        if not 0.0 <= mention_weight <= 1.0:
            raise ValueError(f"mention_weight must be in [0, 1], got {mention_weight}")
        relations = self.relations
        sims = None
        if encoder is not None and relations and questions:
            texts = [mask_entities(q) if self.mask_names else q for q in questions]
            rel_vecs = self._relation_vectors(encoder)
            sims = np.clip(encoder.encode(texts) @ rel_vecs.T, 0.0, 1.0)
        results = []
        for qi, question in enumerate(questions):
            tokens = set(tokenize(question))
            found: list[RuleMatch] = []
            for ri, rel in enumerate(relations):
                words = self._words[rel]
                hit = [w for w in words if any(_words_match(w, t) for t in tokens)]
                mention = len(hit) / len(words) if words else 0.0
                emb = None if sims is None else float(sims[qi, ri])
                score = mention if emb is None else mention_weight * mention + (1.0 - mention_weight) * emb
                if score < min_score:
                    continue
                reason = _reason(relation_words(rel), hit, mention, emb)
                found.extend(RuleMatch(rule, score, mention, emb, reason) for rule in self._by_head[rel])
            found.sort(key=lambda m: (-m.score, *_confidence_key(m.rule)))
            results.append(found[:top_n])
        return results

    def _relation_vectors(self, encoder: TextEncoder) -> np.ndarray:
        vecs = self._vectors.get(encoder.model_name)
        if vecs is None:
            vecs = np.asarray(encoder.encode([relation_words(r) for r in self.relations]), dtype=np.float32)
            self._vectors[encoder.model_name] = vecs
        return vecs


def _reason(words: str, hit: list[str], mention: float, emb: float | None) -> str:
    if mention == 1.0:
        text = f"relation '{words}' mentioned"
    elif hit:
        text = f"{', '.join(repr(w) for w in hit)} of relation '{words}' mentioned"
    else:
        text = f"relation '{words}' not mentioned"
    return text if emb is None else f"{text}; similarity {emb:.2f}"
