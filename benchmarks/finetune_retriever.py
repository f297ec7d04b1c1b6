"""RuleRAG-FT retriever table: base vs fine-tuned encoders, with and without rules, over a full corpus.

    .venv/bin/python benchmarks/finetune_retriever.py --bench /tmp/ruleqa/ruleqa-i [--limit N] [--epochs N]

Rows (dense retrieval, Recall@1/5/10/50 on the benchmark's test questions, scored by
:class:`rulerag.bench.runner.Runner` exactly as ``rulerag bench run`` scores them):

(a) the base encoder, question only (standard RAG);
(b) the base encoder with rules: RuleRAG-ICL's rule-guided retrieval (our ``RuleGuidedRetriever``,
    mode ``rulerag``), once with the paper's query (question + rule text, the fine-tuning input) and
    once with our default query (question + body relations);
(c) the encoder fine-tuned without rules (the paper's SSFT: question -> document), question only,
    and with rule-guided queries;
(d) the encoder fine-tuned with rules (RuleRAG-FT: question + rule -> document), with rule-guided
    queries (both query styles) and question only.

Each fine-tuned encoder is trained with ``rulerag.finetune.retriever.train_retriever`` on the
benchmark's ``finetune_retriever.jsonl`` (never on test facts) and the whole corpus is embedded
again with it (a dense index per encoder: minutes per encoder on a CPU). Models, indexes and
retrieval caches go to ``--work`` (outside git); an existing complete model or index there is
reused, so an interrupted run resumes (a model only when it was trained on the same fine-tuning file); an
encoder whose early stopping kept the base weights uses the base index. ``--retrieval paper`` (default) retrieves with the paper-style
retriever so the encoders are compared on their own; ``--retrieval defaults`` with the toolkit's
retrieval defaults. Writes ``benchmarks/results/finetune_<bench>[_defaults].md`` and
``.json`` with training and indexing times, the settings and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from rulerag.bench.ruleqa import load_questions  # noqa: E402
from rulerag.bench.runner import RunConfig, Runner, mcnemar  # noqa: E402
from rulerag.config import DEFAULT_EMBEDDING_MODEL, load_settings  # noqa: E402
from rulerag.corpus import file_sha256  # noqa: E402
from rulerag.errors import RuleRAGError  # noqa: E402
from rulerag.checkpoint import fingerprint, read_marker, validate_model_dir  # noqa: E402
from rulerag.finetune.data import RETRIEVER_FILE  # noqa: E402
from rulerag.finetune.retriever import RetrieverConfig  # noqa: E402
from rulerag.metrics import recall_at_k  # noqa: E402
from rulerag.retrieval.index import build_index, read_manifest  # noqa: E402

HERE = Path(__file__).resolve().parent
KS = (1, 5, 10, 50)
#: the paper's RuleQA-I retriever numbers (DPR with rules; RGFT-DPR), Recall@1/5/10, for the record
PAPER = {"ruleqa-i": {"DPR with rules (RG-DPR)": (6.6, 17.9, 24.2), "RGFT-DPR (RuleRAG-FT)": (22.9, 36.7, 45.1),
                      "SSFT-DPR (R@10 only)": (None, None, 38.4)}}

#: (row label, encoder key, mode, rule query style)
ROWS = [
    ("(a) base, question only", "base", "standard", None),
    ("(b) base + rules (question + rule text)", "base", "rulerag", "rule"),
    ("(b') base + rules (question + body relations, our default)", "base", "rulerag", "body"),
    ("(c) fine-tuned without rules (SSFT), question only", "ssft", "standard", None),
    ("(c') SSFT + rules (question + rule text)", "ssft", "rulerag", "rule"),
    ("(d) fine-tuned with rules (RuleRAG-FT) + rules (question + rule text)", "rgft", "rulerag", "rule"),
    ("(d') RuleRAG-FT + rules (question + body relations)", "rgft", "rulerag", "body"),
    ("(d'') RuleRAG-FT, question only", "rgft", "standard", None),
]
#: paired tests on Recall@10 hits: (baseline row, variant row)
TESTS = [(0, 1), (1, 5), (0, 3), (3, 5), (4, 5), (0, 5)]
#: ``--retrieval``: settings the rows retrieve with. ``paper``: the paper's retriever (rule queries
#: only: no de-duplication, no reasoner evidence, no history), so the encoders are compared on their
#: own; ``defaults``: the toolkit's defaults, where the reasoner's evidence leads every rule-guided list.
RETRIEVAL = {
    "paper": {"retrieval": {"rule_evidence": 0, "dedup": "none"}, "reasoner": {"history_weight": 0}},
    "defaults": {},
}


def train(args, name: str, with_rules: bool, models: Path) -> tuple[Path, dict]:
    """The fine-tuned model ``models/name`` (trained now unless a complete one is there) and its training summary."""
    from rulerag.finetune.retriever import train_retriever

    out = models / name
    if out.is_dir():
        try:
            validate_model_dir(out)
            marker = read_marker(out) or {}
            settings = marker.get("training", {}).get("settings", {})
            wanted = {"base": args.base, "with_rules": with_rules, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                      "hard_negatives": args.hard_negatives, "limit": args.limit, "seed": args.seed, "eval_pool": args.eval_pool,
                      "patience": args.patience}
            same_data = marker.get("training", {}).get("data", {}).get("sha256") == file_sha256(args.bench / RETRIEVER_FILE)
            if all(settings.get(k) == v for k, v in wanted.items()) and same_data:
                print(f"reusing {out} (trained with the same settings and data)", flush=True)
                return out, marker["training"]
        except RuleRAGError as exc:
            print(f"retraining {out}: {exc}", flush=True)
    cfg = RetrieverConfig(bench=args.bench, out=out, base=args.base, with_rules=with_rules, epochs=args.epochs, batch_size=args.batch_size,
                          hard_negatives=args.hard_negatives, limit=args.limit, seed=args.seed, lr=args.lr, eval_pool=args.eval_pool,
                          patience=args.patience, threads=args.threads, overwrite=True, progress=not args.quiet)
    result = train_retriever(cfg)
    return out, result.summary()


def index_for(args, model: str, path: Path) -> tuple[Path, dict]:
    """A dense index of the benchmark corpus built with ``model`` (reused when its manifest matches)."""
    if (path / "manifest.json").is_file():
        m = read_manifest(path)
        enc = m.encoder or {}
        same = m.embedding_model == model if model == DEFAULT_EMBEDDING_MODEL else enc.get("fingerprint") == fingerprint(model)
        if same and m.embedding_model is not None:
            print(f"reusing {path}", flush=True)
            return path, {"build_seconds": m.build_seconds, "embedding_seconds": m.timings.get("embedding"), "reused": True}
    settings = load_settings(overrides={"embedding": {"model": model, "batch_size": args.embed_batch}})
    t = time.perf_counter()
    m = build_index(args.bench / "corpus.jsonl", path, settings, overwrite=True, progress=not args.quiet)
    return path, {"build_seconds": round(time.perf_counter() - t, 1), "embedding_seconds": m.timings.get("embedding"), "reused": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, required=True, help="benchmark directory from `rulerag bench build`")
    ap.add_argument("--base", default=DEFAULT_EMBEDDING_MODEL, help="encoder to fine-tune (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--base-index", type=Path, default=None, help="dense index of the corpus built with --base (default: BENCH/index when it matches)")
    ap.add_argument("--work", type=Path, default=None, help="models, indexes and caches (default: /tmp/rulerag-finetune/<bench>)")
    # training defaults are `rulerag finetune retriever`'s (RetrieverConfig), so the tables use the command's defaults
    ap.add_argument("--epochs", type=int, default=RetrieverConfig.epochs)
    ap.add_argument("--batch-size", type=int, default=RetrieverConfig.batch_size)
    ap.add_argument("--hard-negatives", type=int, default=RetrieverConfig.hard_negatives)
    ap.add_argument("--lr", type=float, default=RetrieverConfig.lr)
    ap.add_argument("--limit", type=int, default=None, help="train on a seeded sample of about N pairs (whole questions)")
    ap.add_argument("--questions", type=int, default=None, help="score a seeded sample of N test questions (default: all)")
    ap.add_argument("--eval-pool", type=int, default=RetrieverConfig.eval_pool)
    ap.add_argument("--patience", type=int, default=RetrieverConfig.patience)
    ap.add_argument("--seed", type=int, default=RetrieverConfig.seed)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training and embedding (1 is often fastest on a busy CPU)")
    ap.add_argument("--embed-batch", type=int, default=64)
    ap.add_argument("--retrieval", choices=sorted(RETRIEVAL), default="paper",
                    help="paper: the paper's retriever, encoders compared on their own (writes finetune_<bench>.md); "
                         "defaults: the toolkit's retrieval defaults (writes finetune_<bench>_defaults.md)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # training and embedding: on a busy CPU one thread is often fastest
    name = args.bench.name
    work = args.work or Path("/tmp/rulerag-finetune") / name
    models = work / "models"
    t_all = time.perf_counter()

    # ---- encoders and their indexes
    base_index = args.base_index
    if base_index is None:
        candidate = args.bench / "index"
        if (candidate / "manifest.json").is_file() and read_manifest(candidate).embedding_model == args.base:
            base_index = candidate
    encoders: dict[str, dict] = {"base": {"model": args.base, "training": None}}
    for key, with_rules in (("rgft", True), ("ssft", False)):
        path, summary = train(args, f"{name}-{key}", with_rules, models)
        encoders[key] = {"model": str(path), "training": summary}
    for key, enc in encoders.items():
        # early stopping that kept the base weights (no epoch beat the base on the held-out slice): the base index serves
        kept_base = key != "base" and (enc["training"] or {}).get("best_epoch") == 0
        if (key == "base" or kept_base) and base_index is not None:
            m = read_manifest(base_index)
            enc["index"], enc["indexing"] = str(base_index), {"build_seconds": m.build_seconds, "embedding_seconds": m.timings.get("embedding"),
                                                              "reused": True, "base_weights": kept_base}
            continue
        path, info = index_for(args, enc["model"], work / f"index-{key}")
        enc["index"], enc["indexing"] = str(path), info

    # ---- retrieval, scored like `rulerag bench run`
    rows, hits = [], {}
    runners: dict[str, Runner] = {}
    for label, key, mode, style in ROWS:
        runner = runners.get(key)
        if runner is None:
            # the runner's retrieval cache does not key on the encoder: one cache directory per encoder fingerprint
            manifest = read_manifest(Path(encoders[key]["index"]))
            tag = ((manifest.encoder or {}).get("fingerprint") or str(manifest.embedding_model))[:12]
            runner = runners[key] = Runner(RunConfig(bench=args.bench, out=work / "runs" / f"{key}-{tag}", retrievers=["dense"], modes=[mode],
                                                     answerers=["none"], limit=args.questions, seed=args.seed,
                                                     index=Path(encoders[key]["index"]), progress=not args.quiet))
        overrides = copy.deepcopy(RETRIEVAL[args.retrieval])
        if style:
            overrides.setdefault("retrieval", {})["rule_query"] = style
        runner.settings = load_settings(overrides=overrides or None)
        t = time.perf_counter()
        got = runner.retrieve("dense", mode)
        qs = runner.questions
        h = {k: [recall_at_k(runner.texts(got[q["id"]]["docs"]), q["golden_answers"], k) for q in qs] for k in KS}
        hits[len(rows)] = h[10]
        rows.append({"row": label, "encoder": key, "mode": mode, "rule_query": style or "-",
                     **{f"recall@{k}": float(np.mean(v)) for k, v in h.items()}, "seconds": round(time.perf_counter() - t, 1)})
        print(f"{label:75s} R@1 {100 * rows[-1]['recall@1']:.1f}  R@5 {100 * rows[-1]['recall@5']:.1f}  R@10 {100 * rows[-1]['recall@10']:.1f}", flush=True)
    tests = []
    for a, b in TESTS:
        t = mcnemar(hits[a], hits[b])
        tests.append({"baseline": rows[a]["row"], "variant": rows[b]["row"], "recall@10_baseline": rows[a]["recall@10"],
                      "recall@10_variant": rows[b]["recall@10"], **t})

    command = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/finetune_retriever.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results = {
        "bench": str(args.bench), "questions": len(next(iter(runners.values())).questions),
        "questions_total": len(load_questions(args.bench)), "rows": rows, "paired_tests": tests,
        "encoders": encoders, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "documents": read_manifest(Path(encoders["base"]["index"])).num_docs,
        "command": command, "total_seconds": round(time.perf_counter() - t_all, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "paper": PAPER.get(name),
    }
    stem = f"finetune_{name}" + ("" if args.retrieval == "paper" else f"_{args.retrieval}")
    out_json = HERE / "results" / f"{stem}.json"
    out_json.write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results" / f"{stem}.md").write_text(render(results))
    print(f"wrote {out_json} and {stem}.md in {results['total_seconds']:.0f}s")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


RETRIEVAL_TEXT = {
    "paper": "`--retrieval paper`: the paper-style retriever (rule queries only; no de-duplication, no reasoner evidence, "
             "no history), so the encoders are compared on their own. With the toolkit defaults, see `--retrieval defaults`.",
    "defaults": "`--retrieval defaults`: the toolkit's retrieval defaults (de-duplication, the reasoner's evidence first in "
                "rule-guided lists), which can mask the encoder: compare with the `--retrieval paper` table.",
}


def render(results: dict) -> str:
    name = Path(results["bench"]).name
    s = results["settings"]
    lines = [
        f"# RuleRAG-FT retriever: {name} ({results['questions']} test questions, dense retrieval over the full corpus of "
        f"{results.get('documents', '?')} documents)",
        "",
        f"Reproduce: `{results['command']}` ({results['machine']}, shared with other jobs). The models and indexes are "
        "trained and built by this command unless complete ones with the same settings are already in `--work` (then reused); "
        "their training and embedding times are listed under Encoders. "
        f"This invocation took {results['total_seconds'] / 60:.0f} min.",
        "",
        RETRIEVAL_TEXT[s.get("retrieval", "defaults")],
        "",
        "Recall@k in % (a question is a hit when a gold answer occurs in the top k documents, as in `rulerag bench run`); "
        "time filter on, round-robin merge, 3 rules per question (the runner's defaults).",
        "",
        "| row | R@1 | R@5 | R@10 | R@50 |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['row']} | {_pct(r['recall@1'])} | {_pct(r['recall@5'])} | {_pct(r['recall@10'])} | {_pct(r['recall@50'])} |"
              for r in results["rows"]]
    lines += ["", "Paired tests on Recall@10 hits (exact McNemar; questions only the baseline / only the variant finds):", "",
              "| baseline | variant | R@10 | R@10 | only baseline | only variant | p |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['baseline']} | {t['variant']} | {_pct(t['recall@10_baseline'])} | {_pct(t['recall@10_variant'])} | "
              f"{t['a_only']} | {t['b_only']} | {t['p_value']:.2g} |" for t in results["paired_tests"]]
    lines += ["", "## Encoders", "", "| encoder | training data | held-out R@10 before -> after (epoch) | training | embedding the corpus |",
              "|---|---|---|---|---|"]
    for key, enc in results["encoders"].items():
        tr = enc.get("training")
        idx = enc.get("indexing") or {}
        emb = ("none: no epoch beat the base, so the base weights and the base index serve" if idx.get("base_weights") else
               f"{idx.get('embedding_seconds') or 0:.0f} s" + (" (existing index)" if idx.get("reused") else ""))
        if tr is None:
            lines.append(f"| {key}: `{enc['model']}` | - | - | - | {emb} |")
            continue
        d = tr["data"]
        pairs = f"{d['pairs_used']} of {d['pairs_in_file']} pairs" + (f" (`--limit {tr['settings']['limit']}`)" if tr["settings"].get("limit") else "")
        lines.append(
            f"| {key} ({'question + rule' if tr['settings']['with_rules'] else 'question only'}) | {pairs}, {d['train_examples']} examples, "
            f"{tr['settings']['hard_negatives']} BM25 hard negative(s) each | {_pct(tr['baseline'].get('recall@10'))} -> "
            f"{_pct(tr['best'].get('recall@10'))} ({tr['best_epoch']}) | {tr['train_seconds']:.0f} s ({tr['settings']['epochs']} epoch(s), "
            f"batch {tr['settings']['batch_size']}, lr {tr['settings']['lr']}) | {emb} |"
        )
    lines += ["", "Held-out R@10: the fine-tuning's own held-out questions, positives ranked among "
              f"{s['eval_pool']} candidates (not comparable with the table above).", ""]
    if results.get("paper"):
        lines += ["Paper (RuleQA-I, DPR, Recall@1/5/10): " + "; ".join(
            f"{k} {' / '.join('-' if v is None else str(v) for v in vals)}" for k, vals in results["paper"].items())
            + ". Our base encoder (all-MiniLM-L6-v2) is much stronger than the paper's DPR on this corpus, so the "
              "fine-tuning starts higher.", ""]
    if s.get("limit"):
        lines += [f"Training used `--limit {s['limit']}` pairs per encoder (CPU time budget), not the whole split.", ""]
    if s.get("questions"):
        lines += [f"Scored on a seeded sample of {results['questions']} of the {results['questions_total']} test questions "
                  "(`--questions`, CPU time budget); every encoder retrieves from the full corpus.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
