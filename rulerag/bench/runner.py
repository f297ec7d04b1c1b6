"""Benchmark runner: retrieval and answer quality on a RuleQA benchmark directory.

For every (retriever, mode) pair the runner retrieves the top ``max(ks)`` documents per question
(structured queries: rules are matched by the question's relation, documents dated on or after the
question's time are dropped when ``retrieval.time_filter`` is on), caches them, and scores
Recall@k. Answerers then read the cached documents:

- ``none``: retrieval metrics only;
- ``reasoner``: the symbolic rule reasoner (:mod:`rulerag.rules.reason`) over the facts of the top
  ``answer_k`` documents, with second-hop BM25 lookups for length-2 rules; its best candidate is
  the answer;
- ``llm``: the configured generator with the standard-RAG prompt (mode ``standard``) or the
  RuleRAG-ICL prompt with the matched rules (mode ``rulerag``);
- ``llm+reasoner``: RuleRAG-ICL plus the reasoner's top candidates in the prompt;
- ``llm+paths``: grounded rule paths: the reasoner's ``candidates`` best answers as evidence lines
  citing the documents they come from (:mod:`rulerag.rules.paths`), in the ``grounded`` prompt;
  the generator writes the answer;
- ``llm-score``: the reasoner's ``score_top`` best candidates re-ranked by ``reasoner score +
  score_weight * LLM score`` (:mod:`rulerag.generation.scoring`; the generator scores each
  candidate under the grounded prompt). Each cache row keeps every candidate's reasoner score and
  log-probability, so the weight can be refitted offline and changing it never re-runs the LLM.

``llm+paths`` and ``llm-score`` read the rule reasoner's groundings, so they run in ``rulerag`` mode
only. Every LLM answerer is compared with the reasoner alone on the same retrieval (entity EM,
exact McNemar: ``vs_reasoner`` in the results).

Everything is cached under ``OUT/cache/`` as JSON lines written as it goes, so an interrupted run
resumes where it stopped and changing answerers never re-retrieves. Answer caches are named after
the answerer, backend, model, prompt version and setting, so runs with other prompts never mix.
Results: ``OUT/results.json`` (every number, the configuration, library versions),
``OUT/results.md`` and PNG plots (with matplotlib, from the ``bench`` extra; else skipped, and said so).

Example:
    >>> run_benchmark(RunConfig(bench=Path("data/ruleqa-i"), out=Path("benchmarks/results/ruleqa-i")))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
from tqdm.auto import tqdm

from rulerag.bench.plots import PLOTS_SKIPPED, pyplot
from rulerag.bench.ruleqa import load_questions
from rulerag.config import Mode, RetrieverKind, Settings
from rulerag.errors import ConfigError
from rulerag.generation import PROMPT_VERSION, Prompt, make_backend, postprocess_answer, rulerag_prompt, standard_prompt
from rulerag.generation.prompts import grounded_prompt
from rulerag.generation.scoring import NORMS, rerank, score_candidates
from rulerag.io import atomic_file
from rulerag.metrics import EntityMatcher, entity_exact_match, exact_match, recall_at_k, token_f1
from rulerag.retrieval.guided import RuleGuidedRetriever
from rulerag.retrieval.index import Index, build_index, library_versions, load_index, read_manifest
from rulerag.retrieval.search import Searcher
from rulerag.rules import RuleStore
from rulerag.rules.paths import lexical_paths, render_paths
from rulerag.rules.reason import Candidate, Fact, FactIndex, Query, RuleReasoner

log = logging.getLogger(__name__)

T = TypeVar("T")
ANSWERERS = ("none", "reasoner", "llm", "llm+reasoner", "llm+paths", "llm-score")
#: answerers that read the reasoner's rule groundings: skipped in standard mode
RULE_GUIDED = ("llm+paths", "llm-score")


@dataclass
class RunConfig:
    """What to run. ``limit`` takes a seeded sample of that many questions (not the first N).

    ``candidates``: reasoner candidates in the ``llm+reasoner`` prompt and paths in the
    ``llm+paths`` prompt; ``grounded_k``: retrieved documents shown in the grounded prompts besides
    the paths' evidence (0: the evidence only, the shortest prompt that carries the answers: on CPU
    the prompt's length is the cost); ``score_top``, ``score_weight``, ``score_norm``: the ``llm-score``
    answerer's candidates, weight and normalisation (:mod:`rulerag.generation.scoring`)."""

    bench: Path
    out: Path
    retrievers: Sequence[str] = ("bm25", "dense", "hybrid")
    modes: Sequence[str] = ("standard", "rulerag")
    answerers: Sequence[str] = ("none",)
    limit: int | None = None
    seed: int = 0
    ks: Sequence[int] = (1, 5, 10, 50)
    answer_k: int = 10
    candidates: int = 3
    grounded_k: int = 0
    score_top: int = 5
    score_weight: float = 1.0
    score_norm: str = "softmax"
    index: Path | None = None
    settings: Settings = field(default_factory=Settings)
    batch_size: int = 64
    progress: bool = True

    def __post_init__(self) -> None:
        self.bench, self.out = Path(self.bench), Path(self.out)
        for r in self.retrievers:
            RetrieverKind(r)
        for m in self.modes:
            Mode(m)
        bad = [a for a in self.answerers if a not in ANSWERERS]
        if bad:
            raise ConfigError(f"unknown answerer(s) {bad}. Fix: use a comma-separated subset of {', '.join(ANSWERERS)}")
        if self.score_norm not in NORMS:
            raise ConfigError(f"unknown score_norm {self.score_norm!r}. Fix: use one of {', '.join(NORMS)}")
        if self.score_top < 1 or self.candidates < 1:
            raise ConfigError(f"score_top and candidates must be >= 1, got {self.score_top} and {self.candidates}")
        if not math.isfinite(self.score_weight):
            raise ConfigError(f"score_weight must be a finite number, got {self.score_weight!r}")
        if not (self.bench / "questions.jsonl").is_file():
            raise ConfigError(f"{self.bench} is not a benchmark directory (no questions.jsonl). Fix: build one with `rulerag bench build`")


def seeded_sample(items: Sequence[T], limit: int | None, seed: int = 0) -> list[T]:
    """A seeded sample of ``limit`` items in their original order (all of them when ``limit`` is
    None or not smaller).

    Example:
        >>> seeded_sample(list("abcdef"), 3, seed=1) == seeded_sample(list("abcdef"), 3, seed=1)
        True
    """
    if not limit or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "ab") as fh:
        for row in rows:
            fh.write(orjson.dumps(row) + b"\n")
        fh.flush()


def _read_cache(path: Path) -> dict[str, dict]:
    """Rows of a cache file by id; a torn last line (interrupted write) is ignored."""
    rows: dict[str, dict] = {}
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            rows[row["id"]] = row
    return rows


def mcnemar(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Exact McNemar test on paired 0/1 outcomes: ``b_only`` = wins of b, ``a_only`` = wins of a."""
    from scipy.stats import binomtest

    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    n = a_only + b_only
    p = 1.0 if n == 0 else float(binomtest(min(a_only, b_only), n, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


class Runner:
    """Runs one :class:`RunConfig`; see the module docstring."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.settings = config.settings
        cfg = config
        self.questions = seeded_sample(load_questions(cfg.bench), cfg.limit, cfg.seed)
        self.rules = RuleStore.from_file(cfg.bench / "rules.jsonl")
        self.rules_by_id = {r.id: r for r in self.rules}
        self.index = self._index()
        self.encoder = self.index.encoder(self.settings)
        self.searcher = Searcher(self.index.bm25, self.index.dense, self.encoder, self.settings.retrieval)
        self.id_to_pos = {d.id: i for i, d in enumerate(self.index.docs)}
        self._matcher: EntityMatcher | None = None
        self._fact_index: FactIndex | None = None
        self._generator = None
        (cfg.out / "cache").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ setup

    def _index(self) -> Index:
        cfg = self.config
        dense = any(r != "bm25" for r in cfg.retrievers)
        path = cfg.index or (cfg.bench / ("index" if dense else "index-bm25"))
        if not dense and cfg.index is None and (cfg.bench / "index" / "manifest.json").is_file():
            path = cfg.bench / "index"
        if not (path / "manifest.json").is_file():
            log.info("building %s", path)
            build_index(cfg.bench / "corpus.jsonl", path, self.settings, progress=cfg.progress, dense=dense, overwrite=True)
        if dense and read_manifest(path).embedding_model is None:
            raise ConfigError(f"{path} is BM25-only but dense retrieval was asked for. Fix: delete it or pass --retrievers bm25")
        return load_index(path, index_settings=self.settings.index)

    @property
    def matcher(self) -> EntityMatcher:
        if self._matcher is None:
            names = {d.metadata.get(f) for d in self.index.docs for f in ("subject", "object")}
            names |= {g for q in self.questions for g in q["golden_answers"]}
            self._matcher = EntityMatcher(n for n in names if isinstance(n, str))
        return self._matcher

    @property
    def fact_index(self) -> FactIndex:
        """Corpus facts by (entity, relation), built on first use and shared with the retriever."""
        if self._fact_index is None:
            self._fact_index = FactIndex(self.index.docs)
        return self._fact_index

    @property
    def generator(self):
        if self._generator is None:
            self._generator = make_backend(self.settings.generation)
        return self._generator

    def _key(self, retriever: str, mode: str) -> str:
        r = self.settings.retrieval.model_copy(update={"retriever": RetrieverKind(retriever), "mode": Mode(mode)})
        blob = orjson.dumps({"retrieval": r.model_dump(mode="json"), "rules": self.settings.rules.model_dump(mode="json"),
                             "reasoner": self.settings.reasoner.model_dump(mode="json"),
                             "index": str(self.index.manifest.corpus_sha256), "k": max(self.config.ks),
                             # two indexes of one corpus built with different encoders must not share caches
                             "encoder": (self.index.manifest.encoder or {}).get("fingerprint") or self.index.manifest.embedding_model}, option=orjson.OPT_SORT_KEYS)
        return f"{retriever}-{mode}-{hashlib.sha1(blob).hexdigest()[:10]}"

    # ------------------------------------------------------------------ retrieval

    def retrieve(self, retriever: str, mode: str) -> dict[str, dict]:
        """Cached retrieval for every question: ``{id: {"docs": [...], "rules": [...]}}``."""
        cfg = self.config
        path = cfg.out / "cache" / f"retrieval-{self._key(retriever, mode)}.jsonl"
        done = _read_cache(path)
        todo = [q for q in self.questions if q["id"] not in done]
        settings = self.settings.retrieval.model_copy(update={"retriever": RetrieverKind(retriever), "mode": Mode(mode)})
        self.searcher.settings = settings  # fusion options of this run; the query-embedding cache is kept
        guided = RuleGuidedRetriever(self.searcher, self.index.docs, self.rules, settings, self.settings.rules,
                                     facts=self.fact_index if settings.rule_evidence else None, reasoner=self.settings.reasoner)
        bar = tqdm(total=len(self.questions), initial=len(self.questions) - len(todo), desc=f"retrieve {retriever}/{mode}",
                   unit="q", disable=not cfg.progress)
        for start in range(0, len(todo), cfg.batch_size):
            chunk = todo[start : start + cfg.batch_size]
            results = guided.retrieve_many(
                [q["question"] for q in chunk], k=max(cfg.ks), relations=[q.get("relation") for q in chunk],
                times=[q.get("time") for q in chunk], subjects=[q.get("subject") for q in chunk],
            )
            rows = [{"id": q["id"], "docs": [d.id for d in r.documents], "scores": [round(d.score, 6) for d in r.documents],
                     "rules": [m.rule.id for m in r.rules]} for q, r in zip(chunk, results)]
            _append_jsonl(path, rows)
            done.update((row["id"], row) for row in rows)
            bar.update(len(chunk))
        bar.close()
        return done

    def texts(self, doc_ids: Sequence[str]) -> list[str]:
        return [self.index.docs[self.id_to_pos[i]].contents for i in doc_ids]

    # ------------------------------------------------------------------ answerers

    def _facts(self, doc_ids: Sequence[str]) -> list[Fact]:
        return self.fact_index.facts_at(self.id_to_pos[i] for i in doc_ids)

    def reason(self, q: dict, doc_ids: Sequence[str], reasoner: RuleReasoner):
        return reasoner.reason_with(Query(q["subject"], q["relation"], q.get("time")), self.rules.by_head(q["relation"]),
                                    self._facts(doc_ids), self.fact_index)

    def _answer_tag(self, mode: str, answerer: str) -> str:
        """Cache-file tag of an answerer: LLM answerers name the backend, model and prompt version,
        ``llm+paths`` its number of paths and ``llm-score`` its number of scored candidates."""
        cfg, gen = self.config, self.settings.generation
        if not answerer.startswith("llm"):
            return answerer
        # in standard mode both RuleRAG-ICL answerers see the same standard prompt: share one cache
        name = "llm" if mode == "standard" and answerer in ("llm", "llm+reasoner") else answerer
        setting = {"llm+paths": f"-k{cfg.candidates}-g{cfg.grounded_k}", "llm-score": f"-top{cfg.score_top}-g{cfg.grounded_k}"}.get(answerer, "")
        return f"{name}-{gen.backend.value}-{gen.model}-p{PROMPT_VERSION}{setting}".replace("/", "_")

    def _fact_of(self, doc_id: str) -> Fact | None:
        return self.fact_index.facts[self.id_to_pos[doc_id]]

    def grounded(self, q: dict, doc_ids: Sequence[str], cands: Sequence[Candidate], top: int) -> tuple[Prompt, list[str]]:
        """The grounded-path prompt of a question and its path lines: the ``top`` best candidates'
        paths (:func:`~rulerag.rules.paths.render_paths`) or, when none of the documents carries a
        fact, the question relation's rules matched to the passages (:func:`~rulerag.rules.paths.lexical_paths`)."""
        query = Query(q["subject"], q["relation"], q.get("time"))
        paths = render_paths(cands, doc_ids[: self.config.grounded_k], self._fact_of, self.rules_by_id, query, top=top)
        docs, lines = self.texts(paths.doc_ids), paths.lines
        if not lines and not any(self._fact_of(i) for i in doc_ids):  # plain text: the retrieved passages
            docs = self.texts(doc_ids)
            lines = lexical_paths(self.rules.by_head(query.relation), docs, subject=query.subject, top=top)
        return grounded_prompt(q["question"], docs, lines), lines

    def answer(self, retriever: str, mode: str, answerer: str, retrieved: dict[str, dict]) -> dict[str, dict]:
        """Cached answers of one answerer for every question (``llm-score`` answers are re-ranked
        with the configured weight on every call, so a cache serves any weight)."""
        cfg = self.config
        gen = self.settings.generation
        path = cfg.out / "cache" / f"answers-{self._key(retriever, mode)}-{self._answer_tag(mode, answerer)}.jsonl"
        done = _read_cache(path)
        reasoner = RuleReasoner.from_settings(self.settings.reasoner)
        for q in tqdm([q for q in self.questions if q["id"] not in done], desc=f"{answerer} {retriever}/{mode}", unit="q",
                      disable=not cfg.progress):
            doc_ids = retrieved[q["id"]]["docs"][: cfg.answer_k]
            row: dict[str, Any] = {"id": q["id"]}
            if answerer == "reasoner":
                cands = self.reason(q, doc_ids, reasoner)
                row["answer"] = cands[0].answer if cands else ""
                row["candidates"] = [c.answer for c in cands[:10]]
            elif answerer == "llm-score":
                cands = self.reason(q, doc_ids, reasoner)[: cfg.score_top]
                row["candidates"] = [c.answer for c in cands]
                row["reasoner"] = [round(c.score, 6) for c in cands]
                # one candidate (or none) cannot be re-ranked: the generator is not asked
                row["llm"] = score_candidates(self.generator, self.grounded(q, doc_ids, cands, cfg.score_top)[0],
                                              row["candidates"]) if len(cands) > 1 else None
            else:
                if answerer == "llm+paths":
                    prompt, row["paths"] = self.grounded(q, doc_ids, self.reason(q, doc_ids, reasoner), cfg.candidates)
                elif mode == "rulerag" and (rule_texts := [self.rules_by_id[r].text for r in retrieved[q["id"]]["rules"]
                                                           if r in self.rules_by_id]):
                    cands = [c.answer for c in self.reason(q, doc_ids, reasoner)[: cfg.candidates]] if answerer == "llm+reasoner" else []
                    prompt = rulerag_prompt(q["question"], self.texts(doc_ids), rule_texts, cands)
                else:
                    prompt = standard_prompt(q["question"], self.texts(doc_ids))
                raw = self.generator.generate(prompt, max_new_tokens=gen.max_new_tokens, temperature=gen.temperature)
                row["answer"] = postprocess_answer(raw)
                row["raw"] = raw
            _append_jsonl(path, [row])
            done[q["id"]] = row
        if answerer == "llm-score":
            for row in done.values():
                best = rerank(row["reasoner"], row["llm"], cfg.score_weight, cfg.score_norm)
                row["answer"] = row["candidates"][best[0]] if best else ""
        return done

    # ------------------------------------------------------------------ scoring

    def run(self) -> dict[str, Any]:
        cfg = self.config
        rows, per_question = [], {}
        for retriever in cfg.retrievers:
            for mode in cfg.modes:
                retrieved = self.retrieve(retriever, mode)
                hits = {k: [recall_at_k(self.texts(retrieved[q["id"]]["docs"]), q["golden_answers"], k) for q in self.questions] for k in cfg.ks}
                per_question[(retriever, mode, "retrieval")] = hits[10] if 10 in hits else hits[max(cfg.ks)]
                groups = {g: [i for i, q in enumerate(self.questions) if q.get("popularity") == g] for g in ("popular", "long-tail")}
                base = {
                    "retriever": retriever,
                    "mode": mode,
                    "questions": len(self.questions),
                    "with_rules": sum(1 for q in self.questions if retrieved[q["id"]]["rules"]),
                    **{f"recall@{k}": float(np.mean(v)) for k, v in hits.items()},
                    **{f"recall@10_{g}": float(np.mean([hits[10][i] for i in idx])) for g, idx in groups.items() if idx and 10 in hits},
                }
                for answerer in cfg.answerers:
                    if mode == "standard" and answerer in RULE_GUIDED:
                        continue  # they apply the matched rules: rule-guided mode only
                    row = dict(base, answerer=answerer)
                    if answerer != "none":
                        answers = self.answer(retriever, mode, answerer, retrieved)
                        preds = [answers[q["id"]]["answer"] for q in self.questions]
                        em = [exact_match(p, q["golden_answers"]) for p, q in zip(preds, self.questions)]
                        row["em"] = float(np.mean(em))
                        entity = [entity_exact_match(p, q["golden_answers"], [q["subject"]], self.matcher)
                                  for p, q in zip(preds, self.questions)]
                        row["entity_em"] = float(np.mean(entity))
                        per_question[(retriever, mode, answerer, "entity")] = entity
                        row["f1"] = float(np.mean([token_f1(p, q["golden_answers"]) for p, q in zip(preds, self.questions)]))
                        per_question[(retriever, mode, answerer)] = em
                    rows.append(row)
        tests = []
        for retriever in cfg.retrievers:
            for what in ["retrieval", *[a for a in cfg.answerers if a != "none"]]:
                a, b = per_question.get((retriever, "standard", what)), per_question.get((retriever, "rulerag", what))
                if a is not None and b is not None:
                    tests.append({"retriever": retriever, "metric": "recall@10" if what == "retrieval" else f"em ({what})",
                                  "standard": float(np.mean(a)), "rulerag": float(np.mean(b)), **mcnemar(a, b)})
        vs_reasoner = []  # each LLM answerer against the reasoner alone, same retrieval, entity EM
        for (retriever, mode, answerer, *kind), flags in per_question.items():
            base_flags = per_question.get((retriever, mode, "reasoner", "entity"))
            if kind and answerer.startswith("llm") and base_flags is not None:
                vs_reasoner.append({"retriever": retriever, "mode": mode, "answerer": answerer, "reasoner": float(np.mean(base_flags)),
                                    "llm": float(np.mean(flags)), **mcnemar(base_flags, flags)})
        results = {
            "benchmark": cfg.bench.name,
            "questions": len(self.questions),
            "rows": rows,
            "paired_tests": tests,
            "vs_reasoner": vs_reasoner,
            # per-question entity EM of every answer row, in question order: paired tests across runs
            "question_ids": [q["id"] for q in self.questions],
            "entity_em_flags": {f"{r}/{m}/{a}": [int(x) for x in flags] for (r, m, a, *kind), flags in per_question.items() if kind},
            "config": {"bench": str(cfg.bench), "retrievers": list(cfg.retrievers), "modes": list(cfg.modes),
                       "answerers": list(cfg.answerers), "limit": cfg.limit, "seed": cfg.seed, "ks": list(cfg.ks),
                       "answer_k": cfg.answer_k, "candidates": cfg.candidates, "grounded_k": cfg.grounded_k, "prompt_version": PROMPT_VERSION,
                       "score_top": cfg.score_top, "score_weight": cfg.score_weight, "score_norm": cfg.score_norm,
                       "embedding_model": self.index.manifest.embedding_model, "rrf_k": self.settings.retrieval.rrf_k,
                       "merge": self.settings.retrieval.merge.value},
            "settings": self.settings.to_dict(),
            "libraries": library_versions(),
            "machine": f"{platform.machine()}, python {platform.python_version()}",
        }
        write_results(results, cfg.out)
        return results


def _fmt(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, float) else str(v)


def write_results(results: dict[str, Any], out: Path) -> None:
    """The plots (:func:`write_plots`), then ``results.json`` and ``results.md``, in ``out``.

    ``results`` gains ``plots``, the plot files written, and without matplotlib ``plots_skipped``,
    why there are none and what installs them (both are kept in ``results.json``).
    """
    out.mkdir(parents=True, exist_ok=True)
    results["plots"] = write_plots(results, out)
    results.pop("plots_skipped", None)
    if not results["plots"]:
        results["plots_skipped"] = PLOTS_SKIPPED
    with atomic_file(out / "results.json", "wb") as fh:
        fh.write(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    cols = ["retriever", "mode", "answerer", "recall@1", "recall@5", "recall@10", "recall@50", "em", "entity_em", "f1"]
    lines = [f"# {results['benchmark']}: {results['questions']} questions", "",
             "Recall@k, EM (strict), entity EM (the paper's lenient EM) and token F1, in %.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in results["rows"]:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |")
    if results["paired_tests"]:
        lines += ["", "Paired tests, standard vs rule-guided (exact McNemar):", "",
                  "| retriever | metric | standard | rulerag | only standard right | only rulerag right | p |", "|---|---|---|---|---|---|---|"]
        for t in results["paired_tests"]:
            lines.append(f"| {t['retriever']} | {t['metric']} | {_fmt(t['standard'])} | {_fmt(t['rulerag'])} | {t['a_only']} | {t['b_only']} | {t['p_value']:.2g} |")
    if results.get("vs_reasoner"):
        lines += ["", "LLM answerers vs the reasoner alone, entity EM (exact McNemar):", "",
                  "| retriever | mode | answerer | reasoner | answerer | only reasoner right | only answerer right | p |", "|---|---|---|---|---|---|---|---|"]
        for t in results["vs_reasoner"]:
            lines.append(f"| {t['retriever']} | {t['mode']} | {t['answerer']} | {_fmt(t['reasoner'])} | {_fmt(t['llm'])} | "
                         f"{t['a_only']} | {t['b_only']} | {t['p_value']:.2g} |")
    if results.get("plots_skipped"):
        lines += ["", f"Plots skipped: {results['plots_skipped']}."]
    lines += ["", "Configuration: " + ", ".join(f"{k}={v}" for k, v in results["config"].items()), ""]
    with atomic_file(out / "results.md") as fh:
        fh.write("\n".join(lines))


#: The plots :func:`write_plots` makes.
PLOTS = ("recall_at_k.png", "standard_vs_rulerag.png")


def write_plots(results: dict[str, Any], out: Path) -> list[str]:
    """Recall@k per retriever and mode, and standard vs rule-guided Recall@10, as PNG files in ``out``;
    returns the names written. Without matplotlib nothing is written, and earlier plots there are
    removed (they would show other results): returns ``[]``."""
    plt = pyplot()
    if plt is None:
        for name in PLOTS:
            (out / name).unlink(missing_ok=True)
        log.warning("plots skipped: %s", PLOTS_SKIPPED)
        return []
    ks = results["config"]["ks"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in results["rows"]:
        if row["answerer"] == results["rows"][0]["answerer"]:
            ax.plot(ks, [100 * row[f"recall@{k}"] for k in ks], marker="o", label=f"{row['retriever']} / {row['mode']}")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k (%)")
    ax.set_title(f"{results['benchmark']}: Recall@k")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=120)
    plt.close(fig)
    retrievers = sorted({r["retriever"] for r in results["rows"]})
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.38
    for j, mode in enumerate(("standard", "rulerag")):
        vals = [100 * next((r["recall@10"] for r in results["rows"] if r["retriever"] == ret and r["mode"] == mode), 0.0) for ret in retrievers]
        ax.bar(np.arange(len(retrievers)) + (j - 0.5) * width, vals, width, label=mode)
    ax.set_xticks(np.arange(len(retrievers)), retrievers)
    ax.set_ylabel("Recall@10 (%)")
    ax.set_title(f"{results['benchmark']}: standard vs rule-guided")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=120)
    plt.close(fig)
    return list(PLOTS)


def run_benchmark(config: RunConfig) -> dict[str, Any]:
    """Run a benchmark (see :class:`Runner`)."""
    return Runner(config).run()
