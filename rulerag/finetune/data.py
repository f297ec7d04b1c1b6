"""Training data for RuleRAG-FT: reading the fine-tuning splits, held-out slices, hard negatives, batches.

Formats (written by :func:`rulerag.bench.ruleqa.build_benchmark`):

- ``finetune_retriever.jsonl``: ``{"id", "question", "rule", "positive_ids": [...],
  "positive_texts": [...], "answer"}``: the question, one rule of its relation, and the corpus
  facts that ground the rule's body for the question's answer;
- ``finetune_generator.jsonl``: ``{"id", "system", "prompt", "answer"}``: a rule-guided prompt
  (documents, rules, question) and the answer.

Example:
    >>> pair = RetrieverPair("q1-r1", "Alice consult whom on 2014-05-01?", "[Entity1, Make a visit, Entity2] leads to "
    ...                      "[Entity1, Consult, Entity2]", ("d7",), ("Time 2014-04-02 Alice Make a visit Bob.",), "Bob")
    >>> pair.anchor(with_rules=False)
    'Alice consult whom on 2014-05-01?'
    >>> contains_answer("Time 2014-04-02 Alice Make a visit Bob.", "bob")
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rulerag.errors import InputFormatError
from rulerag.io import iter_jsonl
from rulerag.text import normalize_answer

RETRIEVER_FILE = "finetune_retriever.jsonl"
GENERATOR_FILE = "finetune_generator.jsonl"
_RETRIEVER_EXAMPLE = '{"id": "q1-r1", "question": "...", "rule": "...", "positive_ids": ["d1"], "positive_texts": ["..."], "answer": "..."}'
_GENERATOR_EXAMPLE = '{"id": "q1", "system": "...", "prompt": "...", "answer": "..."}'


@dataclass(frozen=True)
class RetrieverPair:
    """One line of ``finetune_retriever.jsonl``."""

    id: str
    question: str
    rule: str
    positive_ids: tuple[str, ...]
    positive_texts: tuple[str, ...]
    answer: str

    def anchor(self, with_rules: bool = True) -> str:
        """The encoder's input: question + rule text (RuleRAG-FT), or the question only (SSFT)."""
        return f"{self.question} {self.rule}" if with_rules else self.question


@dataclass(frozen=True)
class GeneratorExample:
    """One line of ``finetune_generator.jsonl``."""

    id: str
    system: str
    prompt: str
    answer: str


@dataclass
class TrainExample:
    """One (anchor, positive) training example, with hard negatives once mined."""

    anchor: str
    positive_id: str
    positive: str
    answer: str
    group: str  #: examples of one question share a group (never split across train and held-out)
    negatives: list[str] = field(default_factory=list)

    def keys(self) -> set[str]:
        """Texts that must not occur twice in one batch: a repeated document would be a false
        in-batch negative, a repeated anchor would have to rank two different positives first."""
        return {"a:" + self.anchor, "p:" + self.positive, *("p:" + n for n in self.negatives)}


def _str(obj: dict, key: str, path: Path, lineno: int, example: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputFormatError(path, lineno, f"missing or empty string field {key!r}", f"write {example}")
    return value


def read_retriever_pairs(path: str | Path) -> list[RetrieverPair]:
    """All pairs of a ``finetune_retriever.jsonl`` (malformed lines fail with ``file:line``)."""
    path = Path(path)
    pairs = []
    for lineno, obj in iter_jsonl(path, _RETRIEVER_EXAMPLE):
        ids, texts = obj.get("positive_ids"), obj.get("positive_texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise InputFormatError(path, lineno, "'positive_texts' must be a non-empty list of strings", f"write {_RETRIEVER_EXAMPLE}")
        if not isinstance(ids, list) or len(ids) != len(texts):
            raise InputFormatError(path, lineno, "'positive_ids' must list one id per positive text", f"write {_RETRIEVER_EXAMPLE}")
        pairs.append(
            RetrieverPair(
                str(obj.get("id", lineno)),
                _str(obj, "question", path, lineno, _RETRIEVER_EXAMPLE),
                _str(obj, "rule", path, lineno, _RETRIEVER_EXAMPLE),
                tuple(str(i) for i in ids),
                tuple(texts),
                _str(obj, "answer", path, lineno, _RETRIEVER_EXAMPLE),
            )
        )
    if not pairs:
        raise InputFormatError(path, None, "no training pairs", "build the benchmark with `rulerag bench build` (it writes this file)")
    return pairs


def read_generator_examples(path: str | Path) -> list[GeneratorExample]:
    """All examples of a ``finetune_generator.jsonl`` (malformed lines fail with ``file:line``)."""
    path = Path(path)
    out = []
    for lineno, obj in iter_jsonl(path, _GENERATOR_EXAMPLE):
        system = obj.get("system", "")
        if not isinstance(system, str):
            raise InputFormatError(path, lineno, "'system' must be a string", f"write {_GENERATOR_EXAMPLE}")
        out.append(
            GeneratorExample(
                str(obj.get("id", lineno)),
                system,
                _str(obj, "prompt", path, lineno, _GENERATOR_EXAMPLE),
                _str(obj, "answer", path, lineno, _GENERATOR_EXAMPLE),
            )
        )
    if not out:
        raise InputFormatError(path, None, "no training examples", "build the benchmark with `rulerag bench build` (it writes this file)")
    return out


def limit_groups(groups: Sequence[str], limit: int | None, seed: int) -> list[int]:
    """Indices of a seeded sample of about ``limit`` items, taking whole groups (all of a question's
    rules), in the original order. ``None`` keeps everything.

    Example:
        >>> limit_groups(["a", "a", "b", "c", "c"], 3, seed=0) in ([0, 1, 2], [2, 3, 4], [0, 1, 3, 4])
        True
    """
    if limit is None or limit >= len(groups):
        return list(range(len(groups)))
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    names = list(by_group)
    keep: list[int] = []
    for j in np.random.default_rng(seed).permutation(len(names)).tolist():
        if len(keep) >= limit:
            break
        keep.extend(by_group[names[j]])
    return sorted(keep)


def split_groups(groups: Sequence[str], eval_share: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices): a seeded share of the groups is held out, at least one
    group each side when there are two or more groups.

    Example:
        >>> train, held = split_groups(["a", "a", "b", "c"], 0.34, seed=0)
        >>> sorted(train + held) == [0, 1, 2, 3] and len({"a", "b", "c"}) == 3
        True
    """
    names = sorted(set(groups))
    if eval_share <= 0 or len(names) < 2:
        return list(range(len(groups))), []
    n_eval = min(len(names) - 1, max(1, round(eval_share * len(names))))
    held = {names[j] for j in np.random.default_rng(seed).permutation(len(names))[:n_eval].tolist()}
    train = [i for i, g in enumerate(groups) if g not in held]
    evals = [i for i, g in enumerate(groups) if g in held]
    return train, evals


def contains_answer(text: str, answer: str) -> bool:
    """True when the normalised ``answer`` occurs in the normalised ``text`` as whole words."""
    a = normalize_answer(answer)
    return bool(a) and f" {a} " in f" {normalize_answer(text)} "


def examples_from_pairs(pairs: Sequence[RetrieverPair], with_rules: bool) -> list[TrainExample]:
    """One example per (anchor, positive document); duplicates (the same question without rules and
    the same document) are dropped."""
    seen: set[tuple[str, str]] = set()
    out = []
    for pair in pairs:
        anchor = pair.anchor(with_rules)
        for pid, text in zip(pair.positive_ids, pair.positive_texts):
            if (anchor, pid) in seen:
                continue
            seen.add((anchor, pid))
            out.append(TrainExample(anchor, pid, text, pair.answer, pair.question))
    return out


def mine_hard_negatives(
    examples: Sequence[TrainExample],
    search,
    doc_ids: Sequence[str],
    doc_texts: Sequence[str],
    n: int,
    *,
    depth: int = 50,
    seed: int = 0,
) -> dict[str, int]:
    """Fill ``example.negatives`` with ``n`` BM25 hard negatives each (in place).

    ``search(queries, depth)`` returns ranked lists of objects with a ``pos`` (a
    :class:`~rulerag.retrieval.bm25.BM25Index`'s ``search``). A negative is a top-ranked document for
    the example's anchor that is not a positive of the same question and does not contain the answer
    (it would be a correct document under the Recall@k metric). When BM25 finds too few, random
    corpus documents that pass the same test fill up. Returns counts ``{"bm25": .., "random": ..}``.
    """
    if n <= 0 or not examples:
        return {"bm25": 0, "random": 0}
    rng = np.random.default_rng(seed)
    positives: dict[str, set[str]] = {}
    for ex in examples:
        positives.setdefault(ex.group, set()).add(ex.positive_id)
    anchors = list(dict.fromkeys(ex.anchor for ex in examples))
    ranked = dict(zip(anchors, search(anchors, depth)))
    counts = {"bm25": 0, "random": 0}
    for ex in examples:
        bad = positives[ex.group]
        chosen: list[str] = []
        for hit in ranked[ex.anchor]:
            if len(chosen) >= n:
                break
            if doc_ids[hit.pos] in bad or contains_answer(doc_texts[hit.pos], ex.answer) or doc_texts[hit.pos] in chosen:
                continue
            chosen.append(doc_texts[hit.pos])
        counts["bm25"] += len(chosen)
        tries = 0
        while len(chosen) < n and tries < 100:
            tries += 1
            j = int(rng.integers(len(doc_texts)))
            if doc_ids[j] in bad or contains_answer(doc_texts[j], ex.answer) or doc_texts[j] in chosen:
                continue
            chosen.append(doc_texts[j])
            counts["random"] += 1
        ex.negatives = chosen
    return counts


def make_batches(examples: Sequence[TrainExample], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffle and cut into batches in which no anchor or document occurs twice.

    With in-batch negatives every other row's documents are negatives for a row; a repeated
    document would be a false negative, and a repeated anchor (the same question without rules)
    would be asked to rank two different positives first. Rows that collide wait for a later
    batch, so the last batches may be smaller. (Answers may repeat: popular entities are the
    answer to many questions, and forbidding that leaves most batches half empty.)

    Example:
        >>> exs = [TrainExample("q1", "d1", "doc one", "A", "g1"), TrainExample("q1", "d2", "doc two", "B", "g1")]
        >>> make_batches(exs, 2, np.random.default_rng(0))      # same anchor: never in one batch
        [[0], [1]]
    """
    keys = [ex.keys() for ex in examples]
    order = rng.permutation(len(examples)).tolist()
    batches: list[list[int]] = []
    while order:
        batch: list[int] = []
        used: set[str] = set()
        rest: list[int] = []
        for i in order:
            if len(batch) < batch_size and used.isdisjoint(keys[i]):
                batch.append(i)
                used |= keys[i]
            else:
                rest.append(i)
        batches.append(batch)
        order = rest
    return batches
