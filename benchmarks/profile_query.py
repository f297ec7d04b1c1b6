"""Where one query's time goes: rule-guided hybrid retrieval on RuleQA-I, one question at a time.

    .venv/bin/python benchmarks/profile_query.py --bench /tmp/ruleqa/ruleqa-i --n 200 \\
        --faiss-types flat,hnsw,hnsw:256 --threads 1

For each of ``--n`` questions (free text, as the web API receives them; ``--structured`` passes
the relation, subject and time too), one ``RuleRAG.retrieve`` call is timed, and inside it each
stage, with ``time.perf_counter`` wrappers installed by this script around the library's own
methods (nothing in the library is changed for profiling). Times are *exclusive*: a stage that
calls another (rule matching encodes the masked question) is charged only for its own work.

Stages: query encoding (the encoder and the searcher's embedding cache, wherever called: the
name-masked question for rule matching and the retrieval queries), rule matching (mention and
embedding scores, without the encoding), BM25, FAISS, fusion (BM25 + dense per query), merge /
dedup (the per-rule lists into one), other (rule queries, time filter, documents and
``found_by``), and, outside retrieval, prompt building.

``--faiss-types flat,hnsw,hnsw:256`` also runs the questions with an HNSW index (M 32 and efSearch
128, the library's defaults, or the efSearch given) built from the flat index's vectors (no
re-embedding; cached under ``--work``), and reports how often its top-k documents equal the exact
search's, and Recall@k (gold answer among the top k) of every run.

How close query encoding is to the core's arithmetic limit: the texts each question sends to the
encoder are recorded (untimed) and tokenised after the question, padded as one batch pads them;
the encoder's rate is 2 x its non-embedding weights per padded token (multiply-adds of the weight
matrices; attention scores, a few % at these lengths, not counted) over the encoding CPU time, set
beside float32 matrix products of the encoder's shapes on the same threads (torch).

Writes ``benchmarks/results/profile_query.md`` and ``.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from rulerag.metrics import recall_at_k  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STAGES = ["query encoding", "rule matching", "BM25", "FAISS", "fusion", "merge / dedup", "other"]


class StageTimer:
    """Exclusive time per stage: a wrapped call's time minus that of wrapped calls inside it.
    Wall time (``time.perf_counter``) and this process's CPU time (``time.process_time``, all
    threads), which other jobs on the machine inflate far less than wall time."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._stack: list[list[Any]] = []

    def reset(self) -> None:
        self.wall = defaultdict(float)
        self.cpu = defaultdict(float)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [stage, 0.0, 0.0]  # stage, wall and CPU time spent in wrapped calls below this one
            self._stack.append(frame)
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                self._stack.pop()
                self.wall[stage] += dt - frame[1]
                self.cpu[stage] += dc - frame[2]
                if self._stack:
                    self._stack[-1][1] += dt
                    self._stack[-1][2] += dc

        return timed


def instrument(rag: Any, timer: StageTimer) -> None:
    """Install the timing wrappers on this pipeline's objects (instance attributes) and on the
    fusion functions the searcher calls (module attributes)."""
    import rulerag.retrieval.search as search_mod

    searcher, retriever = rag.searcher, rag.retriever
    base = getattr(searcher, "base_encoder", searcher.encoder)
    base.encode = timer.wrap("query encoding", base.encode)
    searcher.encode = timer.wrap("query encoding", searcher.encode)
    searcher.bm25.search = timer.wrap("BM25", searcher.bm25.search)
    if searcher.dense is not None:
        searcher.dense.search = timer.wrap("FAISS", searcher.dense.search)
    for name in ("rrf", "weighted_sum"):
        setattr(search_mod, name, timer.wrap("fusion", getattr(search_mod, name)))
    retriever.match_rules = timer.wrap("rule matching", retriever.match_rules)
    if rag.rules is not None:
        rag.rules.match_many = timer.wrap("rule matching", rag.rules.match_many)
    retriever._merge = timer.wrap("merge / dedup", retriever._merge)
    retriever._collapse = timer.wrap("merge / dedup", retriever._collapse)


class TextLog:
    """The texts each encoder call receives (recorded, not timed: tokenised after the question)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def logged(texts: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(list(texts))
            return fn(texts, *args, **kwargs)

        return logged


def padded_tokens(tokenizer: Any, calls: list[list[str]], max_length: int) -> int:
    """Tokens the encoder computes for ``calls``: each call one batch, padded to its longest text."""
    total = 0
    for texts in calls:
        if texts:
            lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
            total += len(texts) * max(lengths)
    return total


def matmul_gflops(d: int, hidden: int, rows: int = 128, repeat: int = 200) -> float:
    """float32 GFLOP/s of (rows x d) @ (d x hidden) products in torch on its configured threads."""
    import torch

    a, b = torch.randn(rows, d), torch.randn(d, hidden)
    for _ in range(20):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * rows * d * hidden * repeat / (time.perf_counter() - t0) / 1e9


def load_questions(path: Path, n: int, skip: int = 0) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    if len(rows) < skip + n:
        raise SystemExit(f"{path} has {len(rows)} questions; --n {n} needs {skip + n} (the first {skip} warm up)")
    return rows[skip : skip + n]


def hnsw_from_flat(flat: Any, work: Path, ef_search: int | None = None) -> tuple[Any, float, bool]:
    """An HNSW :class:`~rulerag.retrieval.dense.DenseIndex` (library defaults; ``ef_search``
    overrides efSearch) over the flat index's vectors, cached in ``work``. Returns
    ``(index, build seconds, loaded from cache)``."""
    import faiss

    from rulerag.config import IndexSettings
    from rulerag.retrieval.dense import DenseIndex

    settings = IndexSettings(faiss_type="hnsw", **({"hnsw_ef_search": ef_search} if ef_search else {}))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"hnsw-m{settings.hnsw_m}-{flat.size}.faiss"
    if path.is_file():
        return DenseIndex.load(path, settings), 0.0, True
    t0 = time.perf_counter()
    vectors = flat.cpu_index.reconstruct_n(0, flat.size)
    index = DenseIndex.build(vectors, settings)
    seconds = time.perf_counter() - t0
    faiss.write_index(index.cpu_index, str(path))
    return index, seconds, False


def other_cores(t0: tuple[float, float], t1: tuple[float, float], seconds: float) -> float:
    busy = (t1[0] - t0[0]) - (t1[1] - t0[1])
    return round(max(0.0, busy) / seconds, 2) if seconds > 0 else 0.0


def cpu_sample() -> tuple[float, float]:
    sys_t = psutil.cpu_times()
    me = psutil.Process().cpu_times()
    return sum(sys_t) - sys_t.idle - getattr(sys_t, "iowait", 0.0), me.user + me.system


def profile(rag: Any, timer: StageTimer, questions: list[dict[str, Any]], structured: bool, k: int,
            texts: TextLog | None = None, count: Callable[[list[list[str]]], int] | None = None) -> dict[str, Any]:
    """Time every question; returns per-stage lists of milliseconds (wall and CPU), the top-k ids and
    (with ``texts`` and ``count``) the padded encoder tokens per question."""
    wall: dict[str, list[float]] = {s: [] for s in STAGES}
    cpu: dict[str, list[float]] = {s: [] for s in STAGES}
    totals, totals_cpu, prompts, ids, n_queries, hits, tokens = [], [], [], [], [], [], []
    for row in questions:
        kw = {"relation": row.get("relation"), "time": row.get("time")} if structured else {}
        timer.reset()
        if texts is not None:
            texts.calls.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        result = rag.retrieve(row["question"], k=k, **kw)
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        t1 = time.perf_counter()
        rag.build_prompt(result)
        prompts.append(1000 * (time.perf_counter() - t1))
        stages, stages_cpu = dict(timer.wall), dict(timer.cpu)
        stages["other"] = total - sum(stages.values())
        stages_cpu["other"] = total_cpu - sum(stages_cpu.values())
        for s in STAGES:
            wall[s].append(1000 * stages.get(s, 0.0))
            cpu[s].append(1000 * stages_cpu.get(s, 0.0))
        totals.append(1000 * total)
        totals_cpu.append(1000 * total_cpu)
        ids.append([d.id for d in result.documents])
        hits.append(recall_at_k([d.contents for d in result.documents], row.get("golden_answers") or [], k))
        n_queries.append(len(result.queries))
        if texts is not None and count is not None:
            tokens.append(count(texts.calls))
    return {"stages_ms": wall, "stages_cpu_ms": cpu, "retrieval_ms": totals, "retrieval_cpu_ms": totals_cpu,
            "prompt_ms": prompts, "ids": ids, "queries": n_queries, "recall": hits, "encoder_tokens": tokens}


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    mean_total = statistics.fmean(run["retrieval_ms"])
    mean_cpu = statistics.fmean(run["retrieval_cpu_ms"])
    rows = []
    for s in STAGES:
        vals, cpus = run["stages_ms"][s], run["stages_cpu_ms"][s]
        rows.append({"stage": s, "mean_ms": round(statistics.fmean(vals), 2), "median_ms": round(statistics.median(vals), 2),
                     "share": round(statistics.fmean(vals) / mean_total, 4), "cpu_mean_ms": round(statistics.fmean(cpus), 2),
                     "cpu_share": round(statistics.fmean(cpus) / mean_cpu, 4) if mean_cpu else None})
    enc = statistics.fmean(run["stages_ms"]["query encoding"])
    enc_cpu = statistics.fmean(run["stages_cpu_ms"]["query encoding"])
    ordered = sorted(run["retrieval_ms"])
    return {
        "stages": rows,
        "retrieval_mean_ms": round(mean_total, 2),
        "retrieval_median_ms": round(statistics.median(ordered), 2),
        "retrieval_p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "retrieval_p99_ms": round(ordered[int(round(0.99 * (len(ordered) - 1)))], 2),
        "retrieval_cpu_mean_ms": round(mean_cpu, 2),
        "prompt_mean_ms": round(statistics.fmean(run["prompt_ms"]), 3),
        "queries_per_question": round(statistics.fmean(run["queries"]), 2),
        "recall_at_k": round(100 * statistics.fmean(run["recall"]), 1),
        "non_encoding_share": round((mean_total - enc) / mean_total, 4),
        "non_encoding_cpu_share": round((mean_cpu - enc_cpu) / mean_cpu, 4) if mean_cpu else None,
        "encoder_tokens_per_question": round(statistics.fmean(run["encoder_tokens"]), 1) if run["encoder_tokens"] else None,
    }


def write_markdown(report: dict[str, Any], path: Path) -> None:
    env, st = report["environment"], report["settings"]
    runs = report["runs"]
    names = list(runs)
    lines = [
        "# Query-path profile",
        "",
        f"`{report['command']}`",
        "",
        f"{env['date']}, {env['cpus']} CPU cores ({env['machine']}), torch/FAISS threads {st['threads']}, index `{st['index']}` "
        f"({env['documents']:,} documents), {env['rules']:,} rules, {st['n']} questions of `{st['questions']}` "
        f"(after {st['warmup']} warm-up questions), one at a time, "
        + ("structured (relation, time given)" if st["structured"] else "free text as the web API receives them (rules matched by mention + embedding)")
        + f", mode rulerag, {st['retriever']} retriever, k = {st['k']}, retrieval settings as configured "
        f"(depth {st['retrieval']['depth']}, dedup {st['retrieval']['dedup']}, merge {st['retrieval']['merge']}; "
        f"{st['retrieval']['depth'] * (1 if st['retrieval']['dedup'] == 'none' and not st['structured'] else 4)} candidates per list "
        "before fusion and merging: depth, x4 with dedup or a question time). "
        "In-process (no HTTP). Times are exclusive per stage (a stage that calls another is charged only for its own work): "
        "wall-clock mean and median, share of the mean retrieval time, and this process's CPU time (all its threads), "
        "which other jobs on the machine inflate far less than wall time.",
        "",
        "| stage | " + " | ".join(f"{n}: wall mean ms | median | share | CPU mean ms | CPU share" for n in names) + " |",
        "|---|" + "---:|---:|---:|---:|---:|" * len(names),
    ]
    for i, stage in enumerate(STAGES):
        cells = []
        for n in names:
            r = runs[n]["summary"]["stages"][i]
            cells.append(f"{r['mean_ms']:.2f} | {r['median_ms']:.2f} | {100 * r['share']:.1f}% | {r['cpu_mean_ms']:.2f} | {100 * (r['cpu_share'] or 0):.1f}%")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append("| **retrieval total** | " + " | ".join(
        f"**{runs[n]['summary']['retrieval_mean_ms']:.2f}** | **{runs[n]['summary']['retrieval_median_ms']:.2f}** | 100% | "
        f"**{runs[n]['summary']['retrieval_cpu_mean_ms']:.2f}** | 100%" for n in names) + " |")
    lines.append("| prompt building (after retrieval) | " + " | ".join(
        f"{runs[n]['summary']['prompt_mean_ms']:.3f} | | | | " for n in names) + " |")
    lines += ["", "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append("| queries per question (question + matched rules) | " + " | ".join(str(runs[n]["summary"]["queries_per_question"]) for n in names) + " |")
    lines.append(f"| Recall@{st['k']} (gold answer in the top {st['k']}; these questions) | " + " | ".join(str(runs[n]["summary"]["recall_at_k"]) for n in names) + " |")
    lines.append("| retrieval p90 ms (wall) | " + " | ".join(str(runs[n]["summary"]["retrieval_p90_ms"]) for n in names) + " |")
    lines.append("| retrieval p99 ms (wall) | " + " | ".join(str(runs[n]["summary"]["retrieval_p99_ms"]) for n in names) + " |")

    def verdict(share: float | None) -> str:
        return "n/a" if share is None else f"{100 * share:.1f}% ({'met' if share < 0.25 else 'NOT met'})"

    lines.append("| everything but query encoding, wall (target < 25%) | " + " | ".join(verdict(runs[n]["summary"]["non_encoding_share"]) for n in names) + " |")
    lines.append("| everything but query encoding, CPU | " + " | ".join(verdict(runs[n]["summary"]["non_encoding_cpu_share"]) for n in names) + " |")
    lines.append("| other jobs on the machine (cores, mean) | " + " | ".join(str(runs[n]["other_cores"]) for n in names) + " |")
    enc = report.get("encoder")
    if enc:
        lines.append("| encoder tokens per question (padded, as batched) | " + " | ".join(
            str(runs[n]["summary"]["encoder_tokens_per_question"]) for n in names) + " |")
        lines.append("| encoder GFLOP/s (2 x non-embedding weights per token / encoding CPU time) | " + " | ".join(
            str(runs[n]["encoder_gflops"]) for n in names) + " |")
    for n in names:
        agree = runs[n].get("same_top_k_as_flat")
        if agree is not None:
            lines.append(f"| {n}: questions whose top-{st['k']} documents equal flat's (same order) | "
                         + " | ".join(f"{100 * agree:.1f}%" if m == n else "" for m in names) + " |")
            lines.append(f"| {n}: top-{st['k']} documents shared with flat's | "
                         + " | ".join(f"{100 * runs[n]['overlap_with_flat']:.1f}%" if m == n else "" for m in names) + " |")
        if runs[n].get("ef_search"):
            lines.append(f"| {n}: efSearch (FAISS searches max(efSearch, depth) candidates) | " + " | ".join(
                str(runs[n]["ef_search"]) if m == n else "" for m in names) + " |")
        if runs[n].get("build_s"):
            lines.append(f"| {n}: index build from the flat vectors (s) | " + " | ".join(
                str(runs[n]["build_s"]) if m == n else "" for m in names) + " |")
    if enc:
        lines += ["", f"Encoder: {enc['model']}, {enc['non_embedding_params']:,} non-embedding weights "
                      f"({enc['gflop_per_token'] * 1000:.1f} MFLOP per token), {enc['layers']} layers of width {enc['width']}; "
                      f"float32 matrix products of its shapes on the same threads: {enc['matmul_gflops']} GFLOP/s "
                      f"((128 x {enc['width']}) @ ({enc['width']} x {enc['ffn']}), torch). Encoding runs at "
                      + ", ".join(f"{n} {100 * runs[n]['encoder_gflops'] / enc['matmul_gflops']:.0f}%" for n in names)
                      + " of that rate: below it, query encoding gets faster only with fewer tokens or less precise arithmetic."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=Path("/tmp/ruleqa/ruleqa-i"),
                    help="RuleQA directory with index/, rules.jsonl and questions.jsonl (default /tmp/ruleqa/ruleqa-i)")
    ap.add_argument("--index", type=Path, default=None, help="index directory (default BENCH/index)")
    ap.add_argument("--rules", type=Path, default=None, help="rule file (default BENCH/rules.jsonl)")
    ap.add_argument("--questions", type=Path, default=None, help="questions JSONL (default BENCH/questions.jsonl)")
    ap.add_argument("--n", type=int, default=200, help="questions timed (default 200)")
    ap.add_argument("--warmup", type=int, default=10, help="questions run first, untimed (default 10)")
    ap.add_argument("--k", type=int, default=5, help="documents per question (default 5, as the load test)")
    ap.add_argument("--retriever", default="hybrid", choices=["bm25", "dense", "hybrid"])
    ap.add_argument("--structured", action="store_true", help="pass each question's relation and time (rules by head relation)")
    ap.add_argument("--threads", type=int, default=1, help="torch and FAISS threads per operation (default 1)")
    ap.add_argument("--faiss-types", default="flat",
                    help="comma-separated runs: flat (the index as built), hnsw (built from its vectors, the library's efSearch), "
                         "hnsw:EF (that efSearch)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rulerag-profile"), help="cache for the HNSW index built from the flat vectors")
    ap.add_argument("--out", type=Path, default=RESULTS / "profile_query", help="output path without suffix (.md and .json)")
    args = ap.parse_args()
    index_dir = args.index or args.bench / "index"
    rules = args.rules or args.bench / "rules.jsonl"
    questions_file = args.questions or args.bench / "questions.jsonl"
    kinds = [t.strip() for t in args.faiss_types.split(",") if t.strip()]
    def ef_of(kind: str) -> int | None:
        return int(kind.split(":", 1)[1]) if kind.startswith("hnsw:") and kind.split(":", 1)[1].isdigit() else None

    if any(t not in ("flat", "hnsw") and ef_of(t) is None for t in kinds):
        ap.error("--faiss-types takes flat, hnsw and hnsw:EF (EF an integer efSearch)")

    import faiss
    import torch

    from rulerag.config import load_settings
    from rulerag.pipeline import RuleRAG

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    settings = load_settings(overrides={"generation": {"backend": "fixed"}, "retrieval": {"retriever": args.retriever, "mode": "rulerag"}})
    rag = RuleRAG.from_index(index_dir, rules, settings=settings)
    if rag.index.dense is None and args.retriever != "bm25":
        raise SystemExit(f"{index_dir} has no dense index; use --retriever bm25")
    warm = load_questions(questions_file, args.warmup)
    measured = load_questions(questions_file, args.n, skip=args.warmup)
    timer = StageTimer()
    instrument(rag, timer)
    flat_dense = rag.index.dense
    st_model = rag.searcher.base_encoder.model  # the sentence-transformers model behind the encoder
    auto = st_model[0].auto_model
    weights = sum(p.numel() for name, p in auto.named_parameters() if "embeddings" not in name)
    config = auto.config
    encoder = {"model": rag.searcher.base_encoder.model_name, "non_embedding_params": int(weights), "gflop_per_token": 2 * weights / 1e9,
               "layers": config.num_hidden_layers, "width": config.hidden_size, "ffn": config.intermediate_size,
               "matmul_gflops": round(matmul_gflops(config.hidden_size, config.intermediate_size), 1)}
    texts = TextLog()
    rag.searcher.base_encoder.encode = texts.wrap(rag.searcher.base_encoder.encode)

    def count(calls: list[list[str]]) -> int:
        return padded_tokens(st_model.tokenizer, calls, st_model.max_seq_length)

    runs: dict[str, Any] = {}
    for kind in kinds:
        build_s, cached = None, None
        if kind.startswith("hnsw"):
            hnsw, build_s, cached = hnsw_from_flat(flat_dense, args.work, ef_of(kind))
            hnsw.search = timer.wrap("FAISS", hnsw.search)
            rag.searcher.dense = hnsw
        else:
            rag.searcher.dense = flat_dense
        rag.searcher._cache.clear()  # every run starts with the same (empty) query-embedding cache
        profile(rag, timer, warm, args.structured, args.k)
        c0, t0 = cpu_sample(), time.perf_counter()
        run = profile(rag, timer, measured, args.structured, args.k, texts, count)
        seconds = time.perf_counter() - t0
        summary = summarise(run)
        encoding_cpu_s = sum(run["stages_cpu_ms"]["query encoding"]) / 1000
        ef = int(rag.searcher.dense.cpu_index.hnsw.efSearch) if kind.startswith("hnsw") else None
        entry: dict[str, Any] = {"summary": summary, "ef_search": ef, "other_cores": other_cores(c0, cpu_sample(), seconds),
                                 "build_s": round(build_s, 1) if build_s else None, "build_cached": cached,
                                 "retrieval_ms": [round(x, 2) for x in run["retrieval_ms"]], "ids": run["ids"],
                                 "encoder_gflops": round(encoder["gflop_per_token"] * sum(run["encoder_tokens"]) / encoding_cpu_s, 1)
                                 if encoding_cpu_s else None}
        if kind != "flat" and "flat" in runs:
            flat_ids = runs["flat"]["ids"]
            entry["same_top_k_as_flat"] = round(statistics.fmean(a == b for a, b in zip(run["ids"], flat_ids)), 4)
            entry["overlap_with_flat"] = round(statistics.fmean(
                len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(run["ids"], flat_ids)), 4)
        runs[kind] = entry
        print(f"{kind}: retrieval mean {summary['retrieval_mean_ms']} ms, median {summary['retrieval_median_ms']} ms, CPU {summary['retrieval_cpu_mean_ms']} ms; "
              + ", ".join(f"{r['stage']} {r['mean_ms']}" for r in summary["stages"])
              + f"; non-encoding share {100 * summary['non_encoding_share']:.1f}%", flush=True)

    command = "python benchmarks/profile_query.py " + " ".join(sys.argv[1:])
    report = {
        "command": command.replace("python ", ".venv/bin/python ", 1),
        "environment": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "faiss": faiss.__version__,
            "documents": len(rag.index.docs),
            "rules": len(rag.rules or ()),
            "loadavg_at_end": os.getloadavg(),
        },
        "settings": {"index": str(index_dir), "rules": str(rules), "questions": str(questions_file), "n": args.n, "warmup": args.warmup,
                     "k": args.k, "retriever": args.retriever, "structured": args.structured, "threads": args.threads,
                     "faiss_types": kinds, "retrieval": rag.settings.retrieval.model_dump(mode="json"),
                     "rules_settings": rag.settings.rules.model_dump(mode="json")},
        "runs": {k: {key: v for key, v in r.items() if key != "ids"} for k, r in runs.items()},
        "encoder": encoder,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    write_markdown(report, out.with_suffix(".md"))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
