"""The headline table: standard vs rule-guided retrieval on all five RuleQA sets, next to the paper.

    .venv/bin/python benchmarks/ruleqa_headline.py [--results benchmarks/results]

Reads ``RESULTS/ruleqa-{i,y,w,f,n}/results.json`` (written by ``rulerag bench run``) and writes
``RESULTS/ruleqa_headline.md``: per set and retriever, Recall@10 standard and rule-guided with the
exact McNemar test, and the reasoner's entity EM, beside the paper's Recall@10 (Table 2, DPR and
RG-DPR; Table 4, Contriever and RG-Contriever). Sets or retrievers without a result are left out
and named at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = ("ruleqa-i", "ruleqa-y", "ruleqa-w", "ruleqa-f", "ruleqa-n")
#: the paper's Recall@10 (arXiv 2410.22353 v1): (DPR, RG-DPR) from Table 2, (Contriever, RG-Contriever) from Table 4
PAPER_R10 = {
    "ruleqa-i": ((14.1, 24.2), (41.2, 45.5)),
    "ruleqa-y": ((3.8, 6.6), (52.7, 55.2)),
    "ruleqa-w": ((7.4, 22.6), (62.2, 63.2)),
    "ruleqa-f": ((18.9, 29.9), (80.6, 83.9)),
    "ruleqa-n": ((19.3, 26.5), (87.6, 88.5)),
}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def headline(results: Path) -> str:
    lines = [
        "# RuleQA headline: standard vs rule-guided retrieval",
        "",
        "Recall@10 in %, all questions of each rebuilt set (the paper's balanced popular/long-tail sample), toolkit "
        "defaults (rule queries with body relations merged round-robin, one document per entity pair, time filter, "
        "the reasoner's evidence for its 10 best candidates first). p: exact McNemar test on Recall@10 hits, same "
        "retriever and same de-duplication. Reasoner: the symbolic reasoner's entity EM (no LM) over the rule-guided "
        "top 10. Paper: Recall@10 of DPR / RG-DPR (Table 2) and Contriever / RG-Contriever (Table 4) on the "
        "paper's sets, which ours rebuild (comparable in kind, not identical: see ruleqa_stats.md).",
        "",
        "Reproduce: `rulerag bench run --bench DIR/<set> --out benchmarks/results/<set> --retrievers <r> "
        "--answerers none,reasoner` (DIR from `rulerag bench build`), then "
        "`.venv/bin/python benchmarks/ruleqa_headline.py`.",
        "",
        "| set | retriever | R@10 standard | R@10 rule-guided | gain | only std / only RG | p | reasoner entity EM "
        "| paper DPR / RG-DPR | paper Contriever / RG |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    missing = []
    for name in SETS:
        path = results / name / "results.json"
        if not path.is_file():
            missing.append(name)
            continue
        data = json.loads(path.read_text())
        tests = {t["retriever"]: t for t in data["paired_tests"] if t["metric"] == "recall@10"}
        reasoner = {r["retriever"]: r.get("entity_em") for r in data["rows"] if r["mode"] == "rulerag" and r["answerer"] == "reasoner"}
        (dpr, rg_dpr), (con, rg_con) = PAPER_R10[name]
        for retriever, t in tests.items():
            gain = 100 * (t["rulerag"] - t["standard"])
            lines.append(
                f"| {name} ({data['questions']} q) | {retriever} | {_pct(t['standard'])} | {_pct(t['rulerag'])} | {gain:+.1f} | "
                f"{t['a_only']} / {t['b_only']} | {t['p_value']:.2g} | {_pct(reasoner.get(retriever))} | {dpr} / {rg_dpr} | {con} / {rg_con} |"
            )
    if missing:
        lines += ["", f"No results yet for: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args()
    text = headline(args.results)
    (args.results / "ruleqa_headline.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
