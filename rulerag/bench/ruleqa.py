"""Rebuild the five RuleQA benchmarks (RuleRAG, arXiv 2410.22353) from their source KGs, or build
one the same way from a KG of your own (:func:`rulerag.kg.custom.load_custom_kg`).

A benchmark directory holds::

    corpus.jsonl                 linearised train + valid facts (DESIGN.md section 2), with
                                 subject / relation / object / time metadata
    questions.jsonl              sampled test links: question text, structured query, gold answer,
                                 all gold answers of identical queries (the filtered setting),
                                 popularity group
    rules.jsonl                  rules mined from the corpus facts only (never from test facts)
    finetune_retriever.jsonl     (question + rule -> supporting documents), from corpus facts
    finetune_generator.jsonl     (rule-guided prompt -> answer), same facts
    stats.json                   counts, shares and the build configuration

Everything is derived deterministically from the KG files and the seed: same seed, same bytes.

**Questions.** One per distinct test query ``(subject, relation, time)`` (static KGs:
``(subject, relation)``); the question's answer is one of the query's test objects, chosen with the
seed, and ``golden_answers`` lists every object of identical queries in the test split (static KGs:
also in train and valid, since a true fact there is a right answer too).

**Popular vs long-tail.** An entity's popularity is the number of corpus facts it occurs in (as
subject or object). A question is *popular* when its subject is among the most frequent
``popular_share`` (default 10%) of the corpus's entities, else *long-tail*. The ``balanced`` sample
(the paper's) draws half of each group (topping up from the other group when one is short);
``uniform`` draws from all test queries alike.

Example:
    >>> stats = build_benchmark(load_kg("icews14"), "data/ruleqa-i", BuildConfig("ruleqa-i"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from tqdm.auto import tqdm

from rulerag.corpus import linearise_fact
from rulerag.errors import ConfigError
from rulerag.generation import PROMPT_VERSION, rulerag_prompt
from rulerag.io import atomic_dir
from rulerag.kg import FactTable, KGDataset
from rulerag.rules import Rule, RuleStore, save_rules
from rulerag.rules.mine import MineConfig, mine_rules
from rulerag.text import relation_words

log = logging.getLogger(__name__)

#: benchmark -> (source KG, paper's number of test questions)
BENCHMARKS: dict[str, tuple[str, int]] = {
    "ruleqa-i": ("icews14", 1559),
    "ruleqa-y": ("yago", 1864),
    "ruleqa-w": ("wiki", 2065),
    "ruleqa-f": ("fb15k-237", 1233),
    "ruleqa-n": ("nell-995", 815),
}
#: the paper's statistics (DESIGN.md section 4): corpus documents, test questions, rules (v1)
PAPER_STATS: dict[str, dict[str, int]] = {
    "ruleqa-i": {"documents": 77508, "questions": 1559, "rules": 557},
    "ruleqa-y": {"documents": 243633, "questions": 1864, "rules": 99},
    "ruleqa-w": {"documents": 584364, "questions": 2065, "rules": 78},
    "ruleqa-f": {"documents": 49088, "questions": 1233, "rules": 367},
    "ruleqa-n": {"documents": 18177, "questions": 815, "rules": 234},
}
FILES = ("corpus.jsonl", "questions.jsonl", "rules.jsonl", "finetune_retriever.jsonl", "finetune_generator.jsonl", "stats.json")
_JSON = orjson.OPT_SORT_KEYS


#: test questions of a benchmark built from a KG of one's own when none are asked for (or all its
#: test queries, when it has fewer)
DEFAULT_QUESTIONS = 1000
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass
class BuildConfig:
    """How a benchmark is built: one of the five RuleQA presets (:data:`BENCHMARKS`: their source
    KG and the paper's size) or, for a KG of one's own, any ``benchmark`` name (lowercase letters,
    digits, ``.``, ``_``, ``-``; it prefixes every id). ``num_questions=None`` takes the paper's
    size for a preset, :data:`DEFAULT_QUESTIONS` otherwise."""

    benchmark: str
    seed: int = 0
    sample: Literal["balanced", "uniform"] = "balanced"
    num_questions: int | None = None
    popular_share: float = 0.1
    finetune_questions: int = 2000
    rules_per_question: int = 3
    mine: MineConfig = field(default_factory=MineConfig)

    def __post_init__(self) -> None:
        if self.benchmark.startswith("ruleqa-") and self.benchmark not in BENCHMARKS:
            raise ConfigError(f"unknown benchmark {self.benchmark!r}. Fix: use one of {', '.join(BENCHMARKS)}, "
                              "or a name of your own that does not start with ruleqa-")
        if not _NAME_RE.match(self.benchmark):
            raise ConfigError(f"benchmark name {self.benchmark!r} is not usable in document ids. Fix: use lowercase letters, "
                              "digits, '.', '_' and '-' (at most 64 characters), e.g. my-kg")
        if self.sample not in ("balanced", "uniform"):
            raise ConfigError(f"unknown sample {self.sample!r}. Fix: use 'balanced' or 'uniform'")
        if not 0 < self.popular_share < 1:
            raise ConfigError("popular_share must be between 0 and 1")

    @property
    def preset(self) -> bool:
        """One of the five RuleQA sets (its statistics sit next to the paper's)."""
        return self.benchmark in BENCHMARKS

    @property
    def size(self) -> int:
        return self.num_questions or (BENCHMARKS[self.benchmark][1] if self.preset else DEFAULT_QUESTIONS)


def question_text(subject: str, relation: str, time: str | None, time_unit: str | None) -> str:
    """A question for the query ``(subject, relation, ?, time)``.

    Example:
        >>> question_text("Thailand", "Consult", "2014-12-03", "day")
        'Thailand consult whom on 2014-12-03?'
        >>> question_text("Barack Obama", "nationality", None, None)
        'Barack Obama nationality what?'
    """
    rel = relation_words(relation).lower()
    if time is None:
        return f"{subject} {rel} what?"
    return f"{subject} {rel} whom {'on' if time_unit == 'day' else 'in'} {time}?"


def _keys(kg: FactTable, with_time: bool) -> np.ndarray:
    """One int key per fact's query (subject, relation[, time])."""
    key = kg.subjects.astype(np.int64) * kg.num_relations + kg.relation_ids
    if with_time:
        _, t = np.unique(kg.times, return_inverse=True)
        key = key * (int(t.max()) + 1 if len(t) else 1) + t
    return key


def _sample(rng: np.random.Generator, candidates: np.ndarray, popular: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Indices into ``candidates`` (sorted), balanced between popular and long-tail or uniform."""
    if n >= len(candidates):
        return np.arange(len(candidates))
    if mode == "uniform":
        return np.sort(rng.choice(len(candidates), size=n, replace=False))
    pop = np.flatnonzero(popular)
    tail = np.flatnonzero(~popular)
    n_pop = min(len(pop), n // 2)
    n_tail = min(len(tail), n - n_pop)
    n_pop = n - n_tail  # top up from the popular group when the tail is short
    chosen = np.concatenate([rng.choice(pop, size=n_pop, replace=False), rng.choice(tail, size=n_tail, replace=False)])
    return np.sort(chosen)


def popularity(corpus: FactTable, popular_share: float) -> tuple[np.ndarray, float]:
    """``(freq, threshold)``: facts per entity in ``corpus`` (as subject or object) and the count
    from which an entity is popular (the top ``popular_share`` of the entities that occur)."""
    freq = np.bincount(np.concatenate([corpus.subjects, corpus.objects]), minlength=corpus.num_entities)
    present = freq[freq > 0]
    return freq, float(np.quantile(present, 1 - popular_share)) if len(present) else 0.0


def sample_queries(
    table: FactTable, freq: np.ndarray, threshold: float, n: int, mode: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keys, picks, chosen)``: every fact's query key, one fact per distinct query of ``table``
    (``(subject, relation[, time])``, a random one of its facts), and ``n`` of those picks sampled
    ``mode`` (``balanced``: half with a popular subject per ``freq >= max(threshold, 1)``, or
    ``uniform``), as sorted row indices of ``table``."""
    keys = _keys(table, table.temporal)
    order = np.argsort(keys, kind="stable")
    _, first = np.unique(keys[order], return_index=True)
    picks = np.array([g[rng.integers(len(g))] for g in np.split(order, first[1:])], dtype=np.int64)  # one link per query
    picks.sort()
    popular = freq[table.subjects[picks]] >= max(threshold, 1)
    return keys, picks, picks[_sample(rng, picks, popular, n, mode)]


class _FactIndex:
    """Lookups over the corpus facts for grounding rule bodies."""

    def __init__(self, kg: FactTable) -> None:
        self.kg = kg
        self.by_sro: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        self.by_sr: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.by_or: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (s, r, o) in enumerate(zip(kg.subjects.tolist(), kg.relation_ids.tolist(), kg.objects.tolist())):
            self.by_sro[(s, r, o)].append(i)
            self.by_sr[(s, r)].append(i)
            self.by_or[(o, r)].append(i)
        self.rel_id = {name: i for i, name in enumerate(kg.relations)}

    def _before(self, facts: list[int], t: int | None) -> list[int]:
        """The facts dated before ``t``, most recent first (a temporal KG repeats a triple at many
        times; the latest is the evidence a question at ``t`` needs, so that is what training sees)."""
        if t is None or self.kg.times is None:
            return facts
        times = self.kg.times
        return sorted((i for i in facts if times[i] < t), key=lambda i: -int(times[i]))

    def _edges(self, rel: int, forward: bool, a: int, b: int, t: int | None) -> list[int]:
        facts = self.by_sro.get((a, rel, b) if forward else (b, rel, a), [])
        return self._before(facts, t)

    def _out(self, rel: int, forward: bool, a: int, t: int | None) -> list[tuple[int, int]]:
        """(fact, other end) for atoms leaving ``a`` along ``rel`` in the atom's direction."""
        facts = self.by_sr.get((a, rel), []) if forward else self.by_or.get((a, rel), [])
        other = self.kg.objects if forward else self.kg.subjects
        return [(i, int(other[i])) for i in self._before(facts, t)]

    def grounding(self, rule: Rule, x: int, y: int, t: int | None, exclude: int) -> list[int]:
        """Corpus facts that ground ``rule``'s body for ``(x, y)`` before time ``t``: the latest
        grounding fact of a one-atom body, the path with the latest first fact for two atoms."""
        atoms = rule.body
        rels = [self.rel_id.get(a.relation) for a in atoms]
        if any(r is None for r in rels):
            return []
        if len(atoms) == 1:
            a = atoms[0]
            facts = self._edges(rels[0], a.subject == "X", x, y, t)
            return [i for i in facts if i != exclude][:1]
        if len(atoms) == 2:
            a1, a2 = atoms
            for f1, z in self._out(rels[0], a1.subject == "X", x, t):
                if f1 == exclude or z in (x, y):
                    continue
                second = [f for f in self._edges(rels[1], a2.subject != "Y", z, y, t) if f != exclude]
                if second:
                    return [f1, second[0]]
        return []


def _write_jsonl(path: Path, rows) -> int:
    n = 0
    with open(path, "wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row, option=_JSON) + b"\n")
            n += 1
    return n


def build_benchmark(
    kg: KGDataset,
    out: str | Path,
    config: BuildConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build one RuleQA benchmark directory (atomically) and return its statistics."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists. Fix: choose another --out or pass --overwrite")
    name = config.benchmark
    rng = np.random.default_rng(config.seed)
    corpus = kg.train.concat(kg.valid)
    test = kg.test
    temporal = corpus.temporal

    freq, threshold = popularity(corpus, config.popular_share)
    qkey, picks, chosen = sample_queries(test, freq, threshold, config.size, config.sample, rng)

    answers_by_key: dict[int, set[int]] = defaultdict(set)
    for k, o in zip(qkey.tolist(), test.objects.tolist()):
        answers_by_key[k].add(o)
    if not temporal:  # a true fact in train/valid is a right answer too
        for k, o in zip(_keys(corpus, False).tolist(), corpus.objects.tolist()):
            if k in answers_by_key:
                answers_by_key[k].add(o)

    if not len(chosen):
        raise ConfigError(f"{kg.name}: the test split has no questions to ask ({len(test)} facts). Fix: give it test facts "
                          "whose subject and relation occur in the corpus")
    # ---- rules from the corpus only
    rules = mine_rules(corpus, config.mine, progress=progress)
    if not rules:
        raise ConfigError(
            f"{kg.name}: mined no rules from its {len(corpus):,} corpus facts ({len(corpus.relations)} relations), so a "
            f"benchmark of it would test nothing rules can do. Fix: give it more facts (rules need several examples of "
            f"the same pattern), or lower --min-support (now {config.mine.min_support}) and --min-confidence (now "
            f"{config.mine.min_confidence})")
    store = RuleStore(rules)
    rule_heads = set(store.relations)

    ents = corpus.entities

    def make_questions(rows: np.ndarray, prefix: str) -> list[dict[str, Any]]:
        out = []
        for n, i in enumerate(rows.tolist()):
            s, r, o, t = test.fact(i)
            gold = sorted(ents[e] for e in answers_by_key[int(qkey[i])])
            out.append(
                {
                    "id": f"{prefix}-q{n:04d}",
                    "question": question_text(s, r, t, test.time_unit),
                    "subject": s,
                    "relation": r,
                    "time": t,
                    "answer": o,
                    "golden_answers": [o] + [g for g in gold if g != o],
                    "popularity": "popular" if freq[test.subjects[i]] >= max(threshold, 1) else "long-tail",
                    "subject_frequency": int(freq[test.subjects[i]]),
                    "answer_in_corpus": bool(freq[test.objects[i]] > 0),
                    "has_rule": r in rule_heads,
                }
            )
        return out

    questions = make_questions(chosen, name)
    # a KG of one's own also gets the other sample (the presets keep their files as they were)
    other = "uniform" if config.sample == "balanced" else "balanced"
    other_questions = None
    if not config.preset:
        _, _, other_chosen = sample_queries(test, freq, threshold, config.size, other, np.random.default_rng(config.seed))
        other_questions = make_questions(other_chosen, f"{name}-{other}")

    # ---- fine-tuning splits from corpus facts whose relation has rules (disjoint from test)
    index = _FactIndex(corpus)
    test_keys = set(_keys(test, temporal).tolist())
    corpus_keys = _keys(corpus, temporal)
    eligible = np.flatnonzero(np.isin(corpus.relation_ids, [index.rel_id[h] for h in rule_heads if h in index.rel_id]))
    eligible = eligible[~np.isin(corpus_keys[eligible], list(test_keys))]
    ft_retriever, ft_generator = [], []
    for i in tqdm(rng.permutation(eligible).tolist(), desc="fine-tuning pairs", disable=not progress, unit="fact"):
        if len(ft_generator) >= config.finetune_questions:
            break
        s, r, o, t = corpus.fact(i)
        q = question_text(s, r, t, corpus.time_unit)
        x, y = int(corpus.subjects[i]), int(corpus.objects[i])
        when = None if corpus.times is None else int(corpus.times[i])
        used, support = [], []
        for rule in store.by_head(r)[: config.rules_per_question]:
            facts = index.grounding(rule, x, y, when, exclude=i)
            if not facts:
                continue
            texts = [linearise_fact(*corpus.fact(f)) for f in facts]
            ft_retriever.append({"id": f"{name}-ft{len(ft_generator):05d}-{rule.id}", "question": q, "rule": rule.text,
                                 "rule_id": rule.id, "positive_ids": [f"{name}-{f}" for f in facts],
                                 "positive_texts": texts, "answer": o})
            used.append(rule.text)
            support.extend(t_ for t_ in texts if t_ not in support)
        if used:
            prompt = rulerag_prompt(q, support, used)
            ft_generator.append({"id": f"{name}-ft{len(ft_generator):05d}", "system": prompt.system, "prompt": prompt.user,
                                 "answer": o, "prompt_version": PROMPT_VERSION})

    stats = {
        "benchmark": name,
        "source_kg": BENCHMARKS[name][0] if config.preset else kg.name,
        "documents": len(corpus),
        "questions": len(questions),
        "test_queries_available": len(picks),
        "rules": len(rules),
        "rules_by_length": {str(k): sum(1 for r in rules if r.length == k) for k in sorted({r.length for r in rules})},
        "share_with_rule": round(sum(q["has_rule"] for q in questions) / max(len(questions), 1), 4),
        "share_answer_in_corpus": round(sum(q["answer_in_corpus"] for q in questions) / max(len(questions), 1), 4),
        "share_popular": round(sum(q["popularity"] == "popular" for q in questions) / max(len(questions), 1), 4),
        "popular_threshold_facts": threshold,
        "share_multi_answer": round(sum(len(q["golden_answers"]) > 1 for q in questions) / max(len(questions), 1), 4),
        "finetune_retriever_pairs": len(ft_retriever),
        "finetune_generator_examples": len(ft_generator),
        "paper": PAPER_STATS.get(name),
        "config": {**asdict(config), "mine": asdict(config.mine)},
    }
    if not config.preset:  # (the presets' stats stay byte-identical to earlier builds)
        stats["temporal"] = temporal
        stats["other_sample"] = {"sample": other, "file": f"questions_{other}.jsonl", "questions": len(other_questions or ())}
        stats["splits"] = {split: len(getattr(kg, split)) for split in ("train", "valid", "test")}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        _write_jsonl(
            tmp / "corpus.jsonl",
            (
                {"id": f"{name}-{i}", "contents": linearise_fact(*f), "subject": f[0], "relation": f[1], "object": f[2], "time": f[3]}
                for i, f in enumerate(tqdm(corpus, total=len(corpus), desc="corpus", unit="doc", disable=not progress))
            ),
        )
        _write_jsonl(tmp / "questions.jsonl", questions)
        if other_questions is not None:
            _write_jsonl(tmp / f"questions_{other}.jsonl", other_questions)
            _write_splits(tmp / "splits", kg)
        save_rules(rules, tmp / "rules.jsonl")
        _write_jsonl(tmp / "finetune_retriever.jsonl", ft_retriever)
        _write_jsonl(tmp / "finetune_generator.jsonl", ft_generator)
        (tmp / "stats.json").write_bytes(orjson.dumps(stats, option=_JSON | orjson.OPT_INDENT_2) + b"\n")
    return stats


def _write_splits(folder: Path, kg: KGDataset) -> None:
    """``train.tsv``, ``valid.tsv``, ``test.tsv``: the facts of each split as the KG gave them
    (its ids where a name map renamed them), so a split made by the builder can be reused."""
    folder.mkdir()
    for split in ("train", "valid", "test"):
        table: FactTable = getattr(kg, split)
        ents = table.source_ids.get("entity") or table.entities
        rels = table.source_ids.get("relation") or table.relations
        with open(folder / f"{split}.tsv", "w", encoding="utf-8") as fh:
            for i in range(len(table)):
                when = table.fact(i)[3]
                row = [ents[table.subjects[i]], rels[table.relation_ids[i]], ents[table.objects[i]]] + ([when] if when is not None else [])
                fh.write("\t".join(row) + "\n")


def load_questions(path: str | Path) -> list[dict[str, Any]]:
    """The questions of a benchmark directory (or a questions.jsonl file)."""
    path = Path(path)
    if path.is_dir():
        path = path / "questions.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


