"""Retrieval ablations on a RuleQA benchmark: which rule-guided retrieval choices matter.

    .venv/bin/python benchmarks/ablations.py --bench /tmp/ruleqa/ruleqa-i [--retrievers bm25,hybrid] [--limit N]

One factor at a time from the defaults: merge policy for the per-rule lists, rule query style
(body relations appended, the paper's full rule text appended, the question rewritten with the
body relations), number of rules per question, hybrid fusion constant and weights, near-duplicate
collapse, and time-aware filtering. Each rule-guided row is compared with the standard (question
only) retrieval of the same retriever and the same de-duplication by an exact McNemar test on
Recall@10 hits. Writes ``benchmarks/results/ablations_<bench>.md`` and ``.json``; retrieval caches
go to ``--work`` (outside git), so re-runs are cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from rulerag.bench.runner import RunConfig, Runner, mcnemar  # noqa: E402
from rulerag.config import load_settings  # noqa: E402
from rulerag.metrics import recall_at_k  # noqa: E402

HERE = Path(__file__).resolve().parent

#: every variant starts from the paper-style setting (no de-duplication, no reasoner evidence, rules only),
#: whatever the toolkit's defaults are, so the table stays comparable across versions
BASE_RETRIEVAL = {"dedup": "none", "rule_evidence": 0, "evidence_merge": "interleave"}
#: the reasoner as it was when the table was made (rules only; the history rows add it with the
#: decays of that time; no relation prior; body atoms looked up only when no retrieved fact has them):
#: later tuning of the defaults does not move these rows (except that lookups now keep an atom's
#: latest facts rather than the corpus's first ones)
BASE_REASONER = {"history_weight": 0.0, "prior_weight": 0.0, "recency_decay": 0.01, "history_decay": 0.01, "history_same_relation": 5.0,
                 "lookup": "missing"}
#: name -> (mode, retrieval overrides[, reasoner overrides]); every row also varies by retriever
HISTORY = {"history_weight": 1.0}
EV10 = {"rule_evidence": 10, "evidence_merge": "first"}
VARIANTS: dict[str, tuple] = {
    "standard": ("standard", {}),
    "rulerag (defaults: body query, round-robin, 3 rules)": ("rulerag", {}),
    "merge rrf": ("rulerag", {"merge": "rrf"}),
    "query = question + rule text (paper)": ("rulerag", {"rule_query": "rule"}),
    "query = question rewritten with body relation": ("rulerag", {"rule_query": "rewrite"}),
    "1 rule per question": ("rulerag", {"max_rules": 1}),
    "5 rules per question": ("rulerag", {"max_rules": 5}),
    "10 rules per question": ("rulerag", {"max_rules": 10}),
    "no time filter": ("rulerag", {"time_filter": False}),
    "standard, dedup fact": ("standard", {"dedup": "fact"}),
    "rulerag, dedup fact": ("rulerag", {"dedup": "fact"}),
    "standard, dedup pair": ("standard", {"dedup": "pair"}),
    "rulerag, dedup pair": ("rulerag", {"dedup": "pair"}),
    "rulerag, dedup pair, rewrite": ("rulerag", {"dedup": "pair", "rule_query": "rewrite"}),
    "rulerag, dedup pair, 5 rules": ("rulerag", {"dedup": "pair", "max_rules": 5}),
    "rulerag, dedup pair, 10 rules": ("rulerag", {"dedup": "pair", "max_rules": 10}),
    "rulerag, dedup pair, merge rrf": ("rulerag", {"dedup": "pair", "merge": "rrf"}),
    "rulerag, rule evidence 5": ("rulerag", {"rule_evidence": 5}),
    "rulerag, dedup pair, rule evidence 5": ("rulerag", {"dedup": "pair", "rule_evidence": 5}),
    "rulerag, dedup pair, rule evidence 5 + history": ("rulerag", {"dedup": "pair", "rule_evidence": 5}, HISTORY),
    "rulerag, dedup pair, rule evidence 10 first": ("rulerag", {"dedup": "pair", **EV10}),
    "rulerag, dedup pair, rule evidence 10 first + history": ("rulerag", {"dedup": "pair", **EV10}, HISTORY),
    "rulerag, rule evidence 10 first + history": ("rulerag", EV10, HISTORY),
}
HYBRID_ONLY: dict[str, tuple] = {
    "hybrid rrf_k 10": ("rulerag", {"rrf_k": 10}),
    "hybrid weights bm25 0.7 / dense 0.3": ("rulerag", {"bm25_weight": 0.7, "dense_weight": 0.3}),
    "hybrid weights bm25 0.3 / dense 0.7": ("rulerag", {"bm25_weight": 0.3, "dense_weight": 0.7}),
    "hybrid weighted-sum fusion": ("rulerag", {"fusion": "weighted"}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, required=True)
    ap.add_argument("--retrievers", default="bm25,hybrid")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/rulerag-ablations"))
    ap.add_argument("--only", default=None, help="run only the variants whose name contains this text (and their baselines)")
    args = ap.parse_args()

    name = args.bench.name
    rows, hits = [], {}
    retrievers = args.retrievers.split(",")
    runner = Runner(RunConfig(bench=args.bench, out=args.work / name, retrievers=retrievers, modes=["standard"],
                              answerers=["none"], limit=args.limit, progress=False))
    for retriever in retrievers:
        variants = dict(VARIANTS, **(HYBRID_ONLY if retriever == "hybrid" else {}))
        if args.only:
            wanted = {label for label in variants if args.only in label}
            wanted |= {"standard"} | {f"standard, dedup {v[1]['dedup']}" for label, v in variants.items() if label in wanted and "dedup" in v[1]}
            variants = {label: v for label, v in variants.items() if label in wanted}
        for label, (mode, overrides, *reasoner) in variants.items():
            t0 = time.perf_counter()
            # one runner: index and caches shared
            runner.settings = load_settings(overrides={"retrieval": {**BASE_RETRIEVAL, **overrides},
                                                       "reasoner": {**BASE_REASONER, **(reasoner[0] if reasoner else {})}})
            got = runner.retrieve(retriever, mode)
            qs = runner.questions
            h = {k: [recall_at_k(runner.texts(got[q["id"]]["docs"]), q["golden_answers"], k) for q in qs] for k in (1, 5, 10, 50)}
            hits[(retriever, label)] = h[10]
            rows.append({"retriever": retriever, "variant": label, "mode": mode, "overrides": overrides,
                         "reasoner": reasoner[0] if reasoner else {},
                         **{f"recall@{k}": float(np.mean(v)) for k, v in h.items()}, "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{retriever:7s} {label:55s} R@10 {100 * rows[-1]['recall@10']:.1f}", flush=True)
    for row in rows:
        if row["mode"] != "rulerag":
            continue
        dedup = row["overrides"].get("dedup")
        base = "standard" if dedup is None else f"standard, dedup {dedup}"
        row["baseline"] = base
        row.update({f"vs_{k}": v for k, v in mcnemar(hits[(row["retriever"], base)], hits[(row["retriever"], row["variant"])]).items()})

    results = args.work if args.only else HERE / "results"  # a partial run never overwrites the committed table
    out_json = results / f"ablations_{name}.json"
    out_json.write_text(json.dumps({"bench": str(args.bench), "questions": len(qs), "rows": rows}, indent=2) + "\n")
    lines = [
        f"# Retrieval ablations: {name} ({len(qs)} questions)",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/ablations.py --bench DIR/{name} --retrievers {args.retrievers}`"
        + (f" --limit {args.limit}" if args.limit else "") + " (DIR from `rulerag bench build`). 2 CPU cores.",
        "",
        "Recall@k in %. Rule-guided rows are compared with the standard retrieval of the same retriever and the same "
        "de-duplication (exact McNemar test on Recall@10 hits: questions only the baseline finds / only the variant finds).",
        "",
        "| retriever | variant | R@1 | R@5 | R@10 | R@50 | baseline | only baseline | only variant | p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        test = (f"{r['baseline']} | {r['vs_a_only']} | {r['vs_b_only']} | {r['vs_p_value']:.2g}" if "baseline" in r else " | | | ")
        lines.append(f"| {r['retriever']} | {r['variant']} | {100 * r['recall@1']:.1f} | {100 * r['recall@5']:.1f} | "
                     f"{100 * r['recall@10']:.1f} | {100 * r['recall@50']:.1f} | {test} |")
    (results / f"ablations_{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
