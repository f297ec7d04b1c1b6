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

Cost: everything that does not depend on the question is built once per store (the relations'
content words as a 0/1 matrix over their vocabulary, the relations' embeddings, the rules per
relation), so scoring one question against every relation is a few array operations (about
0.1 ms for ICEWS14's 146 head relations and 3,827 rules), and :class:`RuleMatch` objects are
made only for rules that can reach the top ``top_n``. The results are those of scoring every
relation and sorting every rule (``tests/test_rule_matching_parity.py`` checks it).

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


class _MentionIndex:
    """Question-independent data for the mention score, built once per store.

    The relations' content words form a vocabulary; a relation is a row of a 0/1 matrix over it.
    A question's tokens are mapped to the vocabulary words they match (:func:`_words_match`;
    memoised per token), and every relation's mention score is one matrix-vector product:
    ``matched words / words`` (0 for a relation without content words)."""

    _MAX_CACHED_TOKENS = 200_000

    def __init__(self, words_per_relation: list[list[str]]) -> None:
        vocab: dict[str, int] = {}
        for words in words_per_relation:
            for w in words:
                vocab.setdefault(w, len(vocab))
        self.vocab = list(vocab)
        self.words = [[vocab[w] for w in words] for words in words_per_relation]
        self.matrix = np.zeros((len(words_per_relation), len(vocab)), dtype=np.float64)
        for ri, ids in enumerate(self.words):
            self.matrix[ri, ids] = 1.0
        self.sizes = np.array([len(ids) for ids in self.words], dtype=np.float64)
        # two words can only match when equal or when they share their first 4 characters
        self._exact = vocab
        self._by_prefix: dict[str, list[int]] = {}
        for w, i in vocab.items():
            if len(w) >= 4:
                self._by_prefix.setdefault(w[:4], []).append(i)
        self._token_cache: dict[str, tuple[int, ...]] = {}

    def _matches(self, token: str) -> tuple[int, ...]:
        found = self._token_cache.get(token)
        if found is None:
            near = self._by_prefix.get(token[:4], ()) if len(token) >= 4 else ()
            ids = {i for i in near if _words_match(self.vocab[i], token)}
            exact = self._exact.get(token)
            if exact is not None:
                ids.add(exact)
            found = tuple(sorted(ids))
            if len(self._token_cache) >= self._MAX_CACHED_TOKENS:
                self._token_cache.clear()
            self._token_cache[token] = found
        return found

    def hits(self, tokens: Iterable[str]) -> np.ndarray:
        """0/1 vector over the vocabulary: the words some token matches."""
        out = np.zeros(len(self.vocab), dtype=np.float64)
        for t in set(tokens):
            ids = self._matches(t)
            if ids:
                out[list(ids)] = 1.0
        return out

    def mention_scores(self, hits: np.ndarray) -> np.ndarray:
        """Share of each relation's content words among ``hits`` (float64; exact: counts are small integers)."""
        counts = self.matrix @ hits
        return np.divide(counts, self.sizes, out=np.zeros_like(counts), where=self.sizes > 0)

    def hit_words(self, relation: int, hits: np.ndarray) -> list[str]:
        """The relation's content words found in the question, in the relation's word order."""
        return [self.vocab[i] for i in self.words[relation] if hits[i]]


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
        self._mentions = _MentionIndex([self._words[rel] for rel in self._by_head])
        self._rel_text = [relation_words(rel) for rel in self._by_head]  # shown in reasons
        self._rel_rules = [tuple(self._by_head[rel]) for rel in self._by_head]
        self._rule_counts = np.array([len(r) for r in self._rel_rules], dtype=np.int64)
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
                   min_score: float = 0.35, mention_weight: float = 0.5,
                   question_vectors: np.ndarray | None = None) -> list[list[RuleMatch]]:
        """:meth:`match` for many questions, embedding them in one ``encoder.encode`` call.

        ``question_vectors``: the unit embeddings of :meth:`embedding_texts` ``(questions)``, when the
        caller has already encoded them (rule-guided retrieval encodes them together with the
        questions); ``encoder`` then only embeds the relations (once per store and model)."""
        if isinstance(questions, str):
            raise TypeError("match_many takes a list of questions; use match() for one")
        if not 0.0 <= mention_weight <= 1.0:
            raise ValueError(f"mention_weight must be in [0, 1], got {mention_weight}")
        if question_vectors is not None and encoder is None:
            raise ValueError("question_vectors need the encoder that made them (for the relation vectors); pass encoder=")
        n_rel = len(self._rel_rules)
        sims = None
        if encoder is not None and n_rel and questions:
            rel_vecs = self._relation_vectors(encoder)
            if question_vectors is None:
                question_vectors = encoder.encode(self.embedding_texts(questions))
            elif len(question_vectors) != len(questions):
                raise ValueError(f"got {len(question_vectors)} question vectors for {len(questions)} questions")
            sims = np.clip(question_vectors @ rel_vecs.T, 0.0, 1.0)
        results = []
        for qi, question in enumerate(questions):
            hits = self._mentions.hits(tokenize(question))
            mention = self._mentions.mention_scores(hits)
            # the same float64 operations, in the same order, as the per-relation formula
            emb = None if sims is None else sims[qi].astype(np.float64)
            score = mention if emb is None else mention_weight * mention + (1.0 - mention_weight) * emb
            keep = self._candidates(score, min_score, top_n)
            found: list[RuleMatch] = []
            for ri in keep.tolist():  # relation order, then confidence order: the stable sort below keeps it
                rel_mention, rel_emb, rel_score = float(mention[ri]), None if emb is None else float(emb[ri]), float(score[ri])
                reason = _reason(self._rel_text[ri], self._mentions.hit_words(ri, hits), rel_mention, rel_emb)
                rules = self._rel_rules[ri] if top_n is None or top_n < 0 else self._rel_rules[ri][:top_n]
                found.extend(RuleMatch(rule, rel_score, rel_mention, rel_emb, reason) for rule in rules)
            found.sort(key=lambda m: (-m.score, *_confidence_key(m.rule)))
            results.append(found[:top_n])
        return results

    def embedding_texts(self, questions: list[str]) -> list[str]:
        """The texts :meth:`match_many` embeds for ``questions`` (names masked unless ``mask_names``
        is off), for callers that encode them together with other texts.

        Example:
            >>> RuleStore([]).embedding_texts(["Is Alice a citizen of Norland?"])
            ['Is someone a citizen of someone?']
        """
        return [mask_entities(q) if self.mask_names else q for q in questions]

    def _candidates(self, score: np.ndarray, min_score: float, top_n: int | None) -> np.ndarray:
        """Indexes (ascending) of the relations whose rules can be among the ``top_n`` best: those
        scoring at least ``min_score`` and not below the relation that completes ``top_n`` rules
        (ties kept, so the result equals scoring and sorting every rule)."""
        ok = np.flatnonzero(~(score < min_score))
        if top_n is None or top_n < 0 or len(ok) == 0:
            return ok
        if top_n == 0:
            return ok[:0]
        order = ok[np.argsort(-score[ok], kind="stable")]
        counts = np.minimum(self._rule_counts[order], top_n)
        enough = np.flatnonzero(np.cumsum(counts) >= top_n)
        if len(enough) == 0:
            return ok
        floor = score[order[enough[0]]]
        return ok[score[ok] >= floor]

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
