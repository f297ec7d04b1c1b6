"""Peer comparison: RuleRAG's rule-guided hybrid retrieval against the same work done with LangChain.

    .venv/bin/python benchmarks/peer_langchain.py --bench /tmp/ruleqa/ruleqa-i [--limit 300] [--seed 0]

Both sides answer the same seeded sample of RuleQA questions (the sample ``rulerag bench run
--limit N --seed S`` takes), in one process, warm (models loaded, one warm-up pass on other
questions) and single-threaded (torch, FAISS and BLAS limited to one thread):

* **RuleRAG**: :class:`~rulerag.retrieval.guided.RuleGuidedRetriever`, hybrid (bm25s + FAISS fused
  by RRF), mode ``rulerag``: the plain question plus one query per matched rule (rules matched by
  the question's relation), the per-query lists merged by ``retrieval.merge`` (round-robin by
  default), documents dated on or after the question's time dropped. Measured batched
  (``retrieve_many``, ``--batch-size`` questions per call: how the benchmark runner uses it) and one
  question per call (``retrieve``).
* **LangChain**: ``EnsembleRetriever`` (langchain-classic; weighted RRF, ``c = 60``, equal weights)
  over ``BM25Retriever`` (langchain-community, rank-bm25 ``BM25Okapi``) and a ``FAISS`` vector store
  (langchain-community, inner product) whose query embedder is ``HuggingFaceEmbeddings`` loading the
  same all-MiniLM-L6-v2 directory. The FAISS store is built with ``FAISS.from_embeddings`` from the
  document vectors stored in our index, so both sides search identical vectors. The queries are the
  identical strings (our rule matching and :func:`~rulerag.retrieval.guided.rule_query`), each sent
  through ``ensemble.invoke``; the per-query lists get the same time filter and are merged by the
  same function (:mod:`rulerag.retrieval.fusion`) as ours. BM25 tokenisation: our tokeniser
  (``rulerag.text.tokenize``) by default, so the two BM25s see the same terms; ``--peer-tokenizer
  split`` uses LangChain's default (``str.split``).

* **Baseline, part of the work**: the same query strings through stock bm25s alone (``BM25.retrieve``
  on our index's bm25s model, one call per block, one thread), then the same filter and merge: no
  dense search and no fusion, so the reader sees how the rest of RuleRAG's time (query encoding,
  FAISS, fusion) compares with a BM25-only system.

``--bm25-variants robertson,atire,...`` reruns RuleRAG's side (recall only, untimed) with its BM25
rebuilt in other bm25s variants, to show how much of a small recall gap is BM25 tie-breaking.

Recall@10 is :func:`rulerag.metrics.recall_at_k` against each question's ``golden_answers``.
Writes ``benchmarks/results/peer_langchain.md`` and ``.json`` (``--out``).
"""

from __future__ import annotations

import os

# single-threaded fairness: set before numpy / torch / faiss start their thread pools
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bm25_search import bm25s_search  # noqa: E402

from rulerag.bench.ruleqa import load_questions  # noqa: E402
from rulerag.bench.runner import mcnemar  # noqa: E402
from rulerag.config import Dedup, MergePolicy, Mode, RetrieverKind, Settings, load_settings  # noqa: E402
from rulerag.embedding import resolve_model_path  # noqa: E402
from rulerag.metrics import recall_at_k  # noqa: E402
from rulerag.retrieval.bm25 import BM25Index  # noqa: E402
from rulerag.retrieval.fusion import round_robin, rrf  # noqa: E402
from rulerag.retrieval.guided import RuleGuidedRetriever, rule_query  # noqa: E402
from rulerag.retrieval.hits import Hit  # noqa: E402
from rulerag.retrieval.index import Index, library_versions, load_index  # noqa: E402
from rulerag.retrieval.search import Searcher  # noqa: E402
from rulerag.rules import RuleStore  # noqa: E402
from rulerag.rules.reason import FactIndex  # noqa: E402
from rulerag.text import tokenize  # noqa: E402

HERE = Path(__file__).resolve().parent
PEER_LIBRARIES = ("langchain-core", "langchain-community", "langchain-classic", "rank-bm25", "faiss-cpu", "sentence-transformers")


def _require_peer() -> None:
    missing = []
    with warnings.catch_warnings():  # langchain-community announces its sunset on import
        warnings.simplefilter("ignore")
        for module, package in (("langchain_community", "langchain-community"), ("rank_bm25", "rank-bm25")):
            try:
                __import__(module)
            except ImportError:
                missing.append(package)
    if missing:
        sys.exit(f"error: {', '.join(missing)} not installed. Fix: .venv/bin/pip install -e '.[bench]'")


def _ensemble_retriever() -> type:
    """LangChain's EnsembleRetriever: langchain-classic (LangChain 1.x), else langchain (0.3)."""
    try:
        from langchain_classic.retrievers import EnsembleRetriever
    except ImportError:
        from langchain.retrievers import EnsembleRetriever
    return EnsembleRetriever


def sample_questions(bench: Path, limit: int | None, seed: int) -> list[dict[str, Any]]:
    """The seeded sample of the benchmark runner (``rulerag bench run --limit N --seed S``)."""
    questions = load_questions(bench)
    if limit and limit < len(questions):
        keep = np.sort(np.random.default_rng(seed).choice(len(questions), size=limit, replace=False))
        return [questions[i] for i in keep]
    return questions


def warmup_questions(bench: Path, sample: Sequence[dict], n: int) -> list[dict[str, Any]]:
    """``n`` questions outside the sample (so the timed runs find no cached query embeddings)."""
    used = {q["id"] for q in sample}
    return [q for q in load_questions(bench) if q["id"] not in used][:n]


# ---------------------------------------------------------------------------------------- ours


class Ours:
    """RuleRAG's rule-guided retrieval, with its own fresh :class:`Searcher` (empty query cache)."""

    def __init__(self, index: Index, rules: RuleStore, settings: Settings, facts: FactIndex | None = None) -> None:
        searcher = Searcher(index.bm25, index.dense, index.encoder(settings), settings.retrieval)
        self.guided = RuleGuidedRetriever(searcher, index.docs, rules, settings.retrieval, settings.rules, facts=facts,
                                          reasoner=settings.reasoner)

    def retrieve(self, questions: Sequence[dict], k: int) -> tuple[list[list[str]], list[list[str]]]:
        """Top-``k`` texts and the queries for each question, all in one ``retrieve_many`` call."""
        results = self.guided.retrieve_many([q["question"] for q in questions], k=k, relations=[q.get("relation") for q in questions],
                                            times=[q.get("time") for q in questions], subjects=[q.get("subject") for q in questions])
        return [[d.contents for d in r.documents] for r in results], [r.queries for r in results]


# ---------------------------------------------------------------------------------------- peer


class LangChainPeer:
    """The same rule-guided retrieval assembled from LangChain parts (see the module docstring)."""

    def __init__(self, index: Index, rules: RuleStore, settings: Settings, *, tokenizer: str = "rulerag", depth: int) -> None:
        from langchain_community.retrievers import BM25Retriever
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy
        from langchain_core.documents import Document as LCDocument

        with warnings.catch_warnings():  # HuggingFaceEmbeddings is deprecated in favour of langchain-huggingface
            warnings.simplefilter("ignore")
            from langchain_community.embeddings import HuggingFaceEmbeddings

            self.embeddings = HuggingFaceEmbeddings(
                model_name=str(resolve_model_path(index.manifest.embedding_model or settings.embedding.model)),
                model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True},
            )
        self.settings = settings
        self.index = index
        self.times = [d.metadata.get("time") if isinstance(d.metadata.get("time"), str) else None for d in index.docs]
        timings: dict[str, float] = {}
        lc_docs = [LCDocument(page_content=d.contents, id=d.id, metadata={"id": d.id, "pos": i}) for i, d in enumerate(index.docs)]
        t = time.perf_counter()
        preprocess: Callable[[str], list[str]] = tokenize if tokenizer == "rulerag" else str.split
        self.bm25 = BM25Retriever.from_documents(lc_docs, k=depth, preprocess_func=preprocess)
        timings["bm25_build_s"] = time.perf_counter() - t
        t = time.perf_counter()
        vectors = index.dense.cpu_index.reconstruct_n(0, index.dense.size)  # our stored document vectors
        self.vectors = vectors
        store = FAISS.from_embeddings(
            zip([d.page_content for d in lc_docs], list(vectors)), self.embeddings,  # rows as float32 arrays (no float lists)
            metadatas=[d.metadata for d in lc_docs], ids=[d.id for d in lc_docs], distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )
        self.dense = store.as_retriever(search_kwargs={"k": depth})
        timings["faiss_build_s"] = time.perf_counter() - t
        rs = settings.retrieval
        self.ensemble = _ensemble_retriever()(retrievers=[self.bm25, self.dense], weights=[rs.bm25_weight, rs.dense_weight], c=rs.rrf_k, id_key="id")
        self.depth = depth
        self.timings = timings
        # rule matching only (no search): our matcher, so both sides send identical query strings
        self._matcher = RuleGuidedRetriever(Searcher(index.bm25, index.dense, index.encoder(settings), rs), index.docs, rules, rs, settings.rules)

    def queries(self, question: dict) -> list[str]:
        """The plain question plus one query per matched rule (our matching, our ``rule_query``)."""
        rs = self.settings.retrieval
        matches = self._matcher.match_rules([question["question"]], [question.get("relation")])[0]
        return [question["question"]] + [rule_query(question["question"], m, rs.rule_query, question.get("relation")) for m in matches]

    def retrieve(self, question: dict, k: int) -> tuple[list[str], list[str]]:
        """Top-``k`` texts and the queries for one question."""
        queries = self.queries(question)
        lists = [[Hit(d.metadata["pos"], 0.0) for d in self.ensemble.invoke(query)[: self.depth]]  # ours cuts each fused list to its depth too
                 for query in queries]
        return self.finish(question, lists, k), queries

    def finish(self, question: dict, lists: Sequence[Sequence[Hit]], k: int) -> list[str]:
        """Per-query hit lists -> the question's top-``k`` texts: our time filter, then our merge."""
        rs = self.settings.retrieval
        when = question.get("time") if rs.time_filter else None
        if when is not None:
            lists = [[h for h in hits if self.times[h.pos] is None or self.times[h.pos] < when] for hits in lists]
        merged = lists[0] if len(lists) == 1 else (round_robin(lists) if rs.merge == MergePolicy.round_robin else rrf(lists, rrf_k=rs.rrf_k))
        return [self.index.docs[h.pos].contents for h in merged[:k]]


def bm25s_only(peer: LangChainPeer, block: Sequence[dict], queries: Sequence[Sequence[str]], k: int) -> list[list[str]]:
    """The baseline: the same query strings through stock bm25s alone (``BM25.retrieve``, one call per
    block of questions, one thread; no dense search, no fusion), then the same filter and merge."""
    found = bm25s_search(peer.index.bm25, [query for qs in queries for query in qs], peer.depth)
    lists = iter([[Hit(pos, score) for pos, score in hits] for hits in found])
    return [peer.finish(q, [next(lists) for _ in qs], k) for q, qs in zip(block, queries)]


# ---------------------------------------------------------------------------------------- report


def _recall(texts: Sequence[Sequence[str]], questions: Sequence[dict], k: int) -> list[float]:
    return [recall_at_k(list(t), q["golden_answers"], k) for t, q in zip(texts, questions)]


def write_report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "peer_langchain.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    r, k = result["rows"], result["k"]
    lines = [
        f"# Peer comparison: rule-guided hybrid retrieval, RuleRAG vs LangChain ({result['bench']}, {result['questions']} questions)",
        "",
        f"Same seeded question sample (seed {result['seed']}), same queries (the plain question plus one per matched rule, "
        f"identical strings: {result['queries']} queries in all), same document vectors, same fusion (RRF, rrf_k = c = "
        f"{result['settings']['rrf_k']}, ranks from 1, equal weights; per-query lists merged by {result['settings']['merge']}), "
        "same time filter. One process, warm, single-threaded (torch, FAISS, BLAS: 1 thread); the runs are "
        f"interleaved in blocks of {result['batch_size']} questions (rotating order) so that they share the machine's load. "
        "q/s: wall clock; q/CPU-s: questions per second of this process's CPU time (robust to other jobs on a shared machine).",
        "",
        f"| system | Recall@{k} | q/s | ms/question | speed-up | q/CPU-s | speed-up (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    peer = r["langchain"]
    for name, label in (("rulerag_batched", f"RuleRAG `retrieve_many` (batches of {result['batch_size']})"),
                        ("rulerag_single", "RuleRAG `retrieve` (one question per call)"),
                        ("langchain", "LangChain EnsembleRetriever (BM25Retriever + FAISS), one `invoke` per query"),
                        ("rulerag_defaults", "*reference, not the same work:* RuleRAG default settings, batched"),
                        ("bm25s_only", "*baseline, part of the work:* the same queries through stock bm25s alone (no dense search, "
                                       "no fusion)")):
        row = r.get(name)
        if row is None:
            continue
        lines.append(f"| {label} | {100 * row['recall']:.1f} | {row['questions_per_s']:.2f} | {1000 / row['questions_per_s']:.1f} | "
                     f"{row['questions_per_s'] / peer['questions_per_s']:.1f}x | {row['questions_per_cpu_s']:.2f} | "
                     f"{row['questions_per_cpu_s'] / peer['questions_per_cpu_s']:.1f}x |")
    p = result["paired"]
    if "bm25s_only" in r:
        base, ours = r["bm25s_only"], r["rulerag_batched"]
        lines += ["", f"Where RuleRAG's time goes: stock bm25s alone on the same queries takes "
                      f"{1000 * base['cpu_seconds'] / result['questions']:.1f} CPU-ms per question, "
                      f"{100 * base['cpu_seconds'] / ours['cpu_seconds']:.0f}% of RuleRAG's batched "
                      f"{1000 * ours['cpu_seconds'] / result['questions']:.1f}; the rest is query encoding (the larger part, see "
                      "profile_query.md), FAISS, fusion and merging, and its own BM25 (faster than bm25s' retrieve, bm25_search.md)."]
    lines += [
        "",
        f"Paired on Recall@{k} hits (exact McNemar): RuleRAG only {p['a_only']}, LangChain only {p['b_only']}, p = {p['p_value']:.3g}. "
        f"Identical top-{k} lists: {100 * result['identical_top_k']:.1f}% of questions; same documents in any order: "
        f"{100 * result['same_set_top_k']:.1f}%.",
        "",
        *([f"Reference row: RuleRAG's default retrieval settings add what LangChain has no counterpart for, near-duplicate "
           f"collapse (dedup = {result['defaults']['dedup']}) and the documents stating the rule reasoner's best "
           f"{result['defaults']['rule_evidence']} candidate answers (evidence_merge = {result['defaults']['evidence_merge']}); "
           f"against LangChain: RuleRAG only {result['paired_defaults']['a_only']}, LangChain only "
           f"{result['paired_defaults']['b_only']}, p = {result['paired_defaults']['p_value']:.3g}.", ""]
          if result.get("paired_defaults") else []),
        *_variant_lines(result, k),
        "Where the two differ: the BM25 variant (bm25s Lucene idf `log(1 + (N - df + 0.5) / (df + 0.5))`, zero-score documents "
        "dropped; rank-bm25 Okapi idf `log((N - df + 0.5) / (df + 0.5))` floored at 0.25 x the mean idf, and its top-n "
        "includes zero-score documents), and how the work is done: bm25s scores against a precomputed sparse matrix and "
        "our searcher embeds all queries of a batch in one call, while rank-bm25 scores every document in Python/numpy "
        "per query term and LangChain embeds one query per call.",
        "",
        f"Peer set-up (not in the q/s): rank-bm25 index {result['peer_build']['bm25_build_s']:.1f}s, FAISS store from our vectors "
        f"{result['peer_build']['faiss_build_s']:.1f}s. Peer BM25 tokeniser: {result['peer_tokenizer']}. Query embeddings of the "
        f"two embedders agree to max |diff| = {result['embedding_max_abs_diff']:.2e}.",
        "",
        f"Machine: {result['machine']}; {result['date']}. Libraries: "
        + ", ".join(f"{k_} {v}" for k_, v in result["libraries"].items()) + ".",
        "",
        "Reproduce:",
        "",
        "```bash",
        result["command"],
        "```",
        "",
    ]
    (out / "peer_langchain.md").write_text("\n".join(lines), encoding="utf-8")


def _variant_lines(result: dict[str, Any], k: int) -> list[str]:
    variants = result.get("bm25_variants")
    if not variants:
        return []
    lines = ["Sensitivity to the BM25 variant: RuleRAG's side of the same work rerun with its BM25 rebuilt in other bm25s "
             "variants (same tokens, k1 = 1.5, b = 0.75; recall only, untimed), each paired with LangChain:", "",
             f"| RuleRAG BM25 variant | Recall@{k} | RuleRAG only | LangChain only | p |", "|---|---|---|---|---|"]
    main_row = {"recall": result["rows"]["rulerag_batched"]["recall"], "paired": result["paired"]}
    for method, row in {"lucene (stored indexes, the rows above)": main_row, **variants}.items():
        p = row["paired"]
        lines.append(f"| {method} | {100 * row['recall']:.1f} | {p['a_only']} | {p['b_only']} | {p['p_value']:.3g} |")
    return [*lines, ""]


def bm25_variant_recalls(index: Index, rules: RuleStore, settings: Settings, questions: Sequence[dict], k: int,
                         methods: Sequence[str], peer_hits: Sequence[float]) -> dict[str, dict[str, Any]]:
    """RuleRAG's recall on the same work with its BM25 rebuilt in each bm25s ``methods`` variant."""
    texts = [d.contents for d in index.docs]
    out = {}
    for method in methods:
        print(f"  BM25 variant {method} ...", file=sys.stderr)
        variant = dataclasses.replace(index, bm25=BM25Index.build(texts, method=method))
        got, _ = Ours(variant, rules, settings).retrieve(questions, k)
        hits = _recall(got, questions, k)
        out[method] = {"recall": float(np.mean(hits)), "paired": mcnemar(hits, list(peer_hits))}
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=Path("/tmp/ruleqa/ruleqa-i"), help="RuleQA benchmark directory")
    ap.add_argument("--index", type=Path, default=None, help="index directory (default BENCH/index)")
    ap.add_argument("--limit", type=int, default=300, help="seeded sample of N questions (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10, help="Recall@k")
    ap.add_argument("--batch-size", type=int, default=64, help="questions per retrieve_many call (RuleRAG, batched)")
    ap.add_argument("--warmup", type=int, default=8, help="warm-up questions (outside the sample) per system")
    ap.add_argument("--threads", type=int, default=1, help="torch / FAISS threads for both systems")
    ap.add_argument("--no-defaults", action="store_true", help="skip the reference run of RuleRAG's default settings")
    ap.add_argument("--peer-tokenizer", choices=("rulerag", "split"), default="rulerag", help="BM25Retriever preprocess_func")
    ap.add_argument("--bm25-variants", default="", help="comma-separated bm25s methods (robertson, atire, bm25l, bm25+) to "
                    "rerun RuleRAG's side with, recall only (default: none)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    _require_peer()

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    # The compared work: rule-guided hybrid retrieval, no near-duplicate collapse, no reasoner
    # evidence (LangChain has neither). RuleRAG's default settings are also run, for reference.
    base = {"retriever": RetrieverKind.hybrid.value, "mode": Mode.rulerag.value, "k": args.k}
    settings = load_settings(overrides={"retrieval": {**base, "dedup": Dedup.none.value, "rule_evidence": 0}})
    defaults = load_settings(overrides={"retrieval": base})
    with_defaults = defaults.retrieval != settings.retrieval and not args.no_defaults
    rs = settings.retrieval
    index = load_index(args.index or args.bench / "index", index_settings=settings.index)
    if index.dense is None or index.manifest.faiss_type != "flat":
        sys.exit("error: the comparison needs a flat FAISS index (exact search on both sides). Fix: build one with `rulerag index build --faiss-type flat`")
    rules = RuleStore.from_file(args.bench / "rules.jsonl")
    questions = sample_questions(args.bench, args.limit or None, args.seed)
    warm = warmup_questions(args.bench, questions, args.warmup)
    widen = 4 if (rs.time_filter and any(q.get("time") for q in questions)) else 1
    depth = max(rs.depth, args.k) * widen  # what RuleGuidedRetriever asks the searcher for

    print(f"{len(questions)} questions, {len(index.docs):,} documents; building the LangChain peer ...", file=sys.stderr)
    peer = LangChainPeer(index, rules, settings, tokenizer=args.peer_tokenizer, depth=depth)
    probe = "Afghanistan make optimistic comment whom on 2014-11-11? Consult"
    emb_diff = float(np.abs(np.asarray(peer.embeddings.embed_query(probe)) - index.encoder(settings).encode([probe])[0]).max())

    # warm-up: models loaded, code paths exercised, on questions outside the sample
    facts, fact_index_s = None, 0.0
    if with_defaults:
        t = time.perf_counter()
        facts = FactIndex(index.docs)  # built once, as the benchmark runner does; not in the q/s
        fact_index_s = time.perf_counter() - t
        Ours(index, rules, defaults, facts).retrieve(warm, args.k)
    Ours(index, rules, settings).retrieve(warm, args.k)
    for q in warm:
        peer.retrieve(q, args.k)

    # Timed runs, interleaved block by block (in rotating order) so that all three see the same
    # machine load; wall-clock and CPU time (this process, single-threaded) are both recorded.
    batched, single = Ours(index, rules, settings), Ours(index, rules, settings)

    def run_single(block: Sequence[dict]) -> tuple[list[list[str]], list[list[str]]]:
        out = [single.retrieve([q], args.k) for q in block]
        return [t for texts, _ in out for t in texts], [q for _, qs in out for q in qs]

    def run_peer(block: Sequence[dict]) -> tuple[list[list[str]], list[list[str]]]:
        out = [peer.retrieve(q, args.k) for q in block]
        return [texts for texts, _ in out], [qs for _, qs in out]

    planned = {q["id"]: peer.queries(q) for q in questions}  # the bm25s baseline's queries, matched untimed

    def run_bm25s(block: Sequence[dict]) -> tuple[list[list[str]], list[list[str]]]:
        queries = [planned[q["id"]] for q in block]
        return bm25s_only(peer, block, queries, args.k), queries

    systems: dict[str, Callable[[Sequence[dict]], tuple[list[list[str]], list[list[str]]]]] = {
        "rulerag_batched": lambda block: batched.retrieve(block, args.k), "rulerag_single": run_single, "langchain": run_peer,
        "bm25s_only": run_bm25s,
    }
    if with_defaults:
        ours_defaults = Ours(index, rules, defaults, facts)
        systems["rulerag_defaults"] = lambda block: ours_defaults.retrieve(block, args.k)
    texts: dict[str, list[list[str]]] = {name: [] for name in systems}
    sent: dict[str, list[list[str]]] = {name: [] for name in systems}
    wall = dict.fromkeys(systems, 0.0)
    cpu = dict.fromkeys(systems, 0.0)
    names = list(systems)
    for b, start in enumerate(range(0, len(questions), args.batch_size)):
        block = questions[start : start + args.batch_size]
        for name in names[b % len(names) :] + names[: b % len(names)]:
            w, c = time.perf_counter(), time.process_time()
            got, queries = systems[name](block)
            wall[name] += time.perf_counter() - w
            cpu[name] += time.process_time() - c
            texts[name] += got
            sent[name] += queries
        print(f"  {start + len(block)}/{len(questions)} questions", file=sys.stderr)
    if not (sent["langchain"] == sent["rulerag_batched"] == sent["rulerag_single"] == sent["bm25s_only"]):
        sys.exit("error: internal: the systems were sent different queries")
    ours_texts, single_texts, peer_texts, ours_queries = texts["rulerag_batched"], texts["rulerag_single"], texts["langchain"], sent["langchain"]
    rows: dict[str, dict[str, Any]] = {name: {"seconds": wall[name], "cpu_seconds": cpu[name]} for name in systems}

    hits = {name: _recall(texts[name], questions, args.k) for name in systems}
    for name, row in rows.items():
        row["recall"] = float(np.mean(hits[name]))
        row["questions_per_s"] = len(questions) / row["seconds"]
        row["questions_per_cpu_s"] = len(questions) / row["cpu_seconds"]
        row["seconds"] = round(row["seconds"], 2)
        row["cpu_seconds"] = round(row["cpu_seconds"], 2)
    if single_texts != ours_texts:
        print("warning: batched and single-question RuleRAG results differ", file=sys.stderr)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peer_langchain.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    result = {
        "bench": args.bench.name,
        "questions": len(questions),
        "seed": args.seed,
        "k": args.k,
        "batch_size": args.batch_size,
        "queries": sum(map(len, ours_queries)),
        "rows": rows,
        "paired": mcnemar(hits["rulerag_batched"], hits["langchain"]),
        "paired_defaults": mcnemar(hits["rulerag_defaults"], hits["langchain"]) if with_defaults else None,
        "defaults": ({"dedup": defaults.retrieval.dedup.value, "rule_evidence": defaults.retrieval.rule_evidence,
                      "evidence_merge": getattr(defaults.retrieval, "evidence_merge", None) and defaults.retrieval.evidence_merge.value}
                     if with_defaults else None),
        "bm25_variants": bm25_variant_recalls(index, rules, settings, questions, args.k,
                                              [m for m in args.bm25_variants.split(",") if m], hits["langchain"]) or None,
        "discordant": {q["id"]: {"rulerag": a, "langchain": b} for q, a, b in zip(questions, hits["rulerag_batched"], hits["langchain"]) if a != b},
        "identical_top_k": float(np.mean([a == b for a, b in zip(ours_texts, peer_texts)])),
        "same_set_top_k": float(np.mean([set(a) == set(b) for a, b in zip(ours_texts, peer_texts)])),
        "settings": {"retriever": rs.retriever.value, "mode": "rulerag", "rrf_k": rs.rrf_k, "merge": rs.merge.value,
                     "depth": depth, "max_rules": rs.max_rules, "rule_query": rs.rule_query.value, "time_filter": rs.time_filter,
                     "embedding_model": index.manifest.embedding_model, "faiss_type": index.manifest.faiss_type},
        "peer_build": {k_: round(v, 2) for k_, v in peer.timings.items()},
        "rulerag_fact_index_s": round(fact_index_s, 2),  # setup of the reference row (not in its q/s)
        "peer_tokenizer": "rulerag.text.tokenize" if args.peer_tokenizer == "rulerag" else "str.split (LangChain default)",
        "embedding_max_abs_diff": emb_diff,
        "threads": args.threads,
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), shared with other jobs",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "libraries": {**library_versions(), **{n: v for n, v in _versions(PEER_LIBRARIES).items()}},
        "command": command,
    }
    write_report(result, args.out)
    print((args.out / "peer_langchain.md").read_text(encoding="utf-8"))
    return result


def _versions(names: Sequence[str]) -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


if __name__ == "__main__":
    main()
