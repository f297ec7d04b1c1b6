"""Tune the rule reasoner's settings on a development split, never on the test questions.

    .venv/bin/python benchmarks/tune_reasoner.py [--data ../shared/data] [--kg icews14] [--n 1500] [--quick]

The development split mirrors RuleQA-I one period earlier: the corpus is ICEWS14's *train* facts
only, rules are mined from them with the benchmark builder's settings, and the questions are a
balanced sample (popular and long-tail subjects, seed 0) of the distinct ``(subject, relation,
time)`` queries of the *validation* facts, which come after the training period; every object of a
query is a right answer (the filtered setting). The reasoner reads the second hop, the subject's
history and the relation prior from the train facts (nothing dated on or after a question's time),
with no retrieved documents, which is what it mostly reads in the benchmark runner too.

The sweep changes one setting at a time around the defaults in ``ReasonerSettings`` and reports
Hits@1 (the reasoner's top answer is right; the runner's entity EM for this answerer), also by
popularity, and the previous defaults. Writes ``benchmarks/results/tune_reasoner.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rulerag.bench.ruleqa import BuildConfig, popularity, sample_queries  # noqa: E402
from rulerag.config import ReasonerSettings  # noqa: E402
from rulerag.corpus import Document  # noqa: E402
from rulerag.kg.loaders import load_kg  # noqa: E402
from rulerag.rules.mine import mine_rules  # noqa: E402
from rulerag.rules.reason import DAYS_PER_YEAR, FactIndex, Query, RuleReasoner  # noqa: E402
from rulerag.rules.store import RuleStore  # noqa: E402

HERE = Path(__file__).resolve().parent
#: the defaults before this tuning (rulerag 0.1 as of session 2)
PREVIOUS = {"recency_decay": 0.01, "history_decay": 0.01, "history_same_relation": 5.0, "prior_weight": 0.0}
#: The reasoner counted a yearly fact's age in years until it counted every age in days; on a
#: yearly KG, dividing the (per-day) decays by the days in a year scores exactly as before.
PER_YEAR = "decays / 365.2425 (on a yearly KG: ages in years, as before)"
SWEEP = {
    "history_weight": [0.0, 0.5, 2.0],
    "history_decay": [0.001, 0.01, 0.03],
    "history_same_relation": [1.0, 5.0, 20.0],
    "recency_decay": [0.001, 0.01, 0.03],
    "prior_weight": [0.0, 0.1, 0.5],
    "prior_decay": [0.003, 0.03],
}


def period_split(history, later, n: int, seed: int = 0):
    """Questions from ``later`` facts over a corpus of ``history`` facts: rules mined from
    ``history`` with the benchmark builder's settings, its facts as a :class:`FactIndex`, and a
    balanced sample of ``n`` distinct ``(subject, relation, time)`` queries of ``later``, each as
    ``(Query, right answers, popular subject?)`` (every object of the query is right: filtered)."""
    cfg = BuildConfig(benchmark="ruleqa-i")
    rules = RuleStore(mine_rules(history, cfg.mine))
    index = FactIndex([Document(f"d{i}", "", {"subject": s, "relation": r, "object": o, "time": t})
                       for i, (s, r, o, t) in enumerate(history)])
    freq, threshold = popularity(history, cfg.popular_share)
    keys, picks, chosen = sample_queries(later, freq, threshold, n, "balanced", np.random.default_rng(seed))
    answers: dict[int, set[str]] = defaultdict(set)
    for i, k in enumerate(keys.tolist()):
        answers[k].add(later.fact(i)[2])
    questions = []
    for i in chosen.tolist():
        s, r, _, t = later.fact(i)
        questions.append((Query(s, r, t), answers[int(keys[i])], bool(freq[later.subjects[i]] >= max(threshold, 1))))
    return rules, index, questions, {"train_facts": len(history), "dev_queries": len(picks), "rules": len(rules), "popular_threshold": max(threshold, 1.0)}


def dev_split(kg_name: str, data: Path | None, n: int, seed: int = 0):
    """:func:`period_split` of ``kg_name``: train facts as the corpus, validation facts as questions."""
    kg = load_kg(kg_name, data)
    return period_split(kg.train, kg.valid, n, seed)


def hits_at_1(settings: ReasonerSettings, rules: RuleStore, index: FactIndex, questions) -> dict[str, float]:
    reasoner = RuleReasoner.from_settings(settings)
    hit = {True: [], False: []}
    for q, gold, popular in questions:
        cands = reasoner.reason_with(q, rules.by_head(q.relation), [], index)
        hit[popular].append(bool(cands) and cands[0].answer in gold)
    every = hit[True] + hit[False]
    return {"all": 100 * float(np.mean(every)), "popular": 100 * float(np.mean(hit[True] or [0])),
            "long_tail": 100 * float(np.mean(hit[False] or [0]))}


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default: $RULERAG_DATA or ../shared/data)")
    ap.add_argument("--kg", default="icews14", help="temporal KG whose train/valid splits make the development split")
    ap.add_argument("--n", type=int, default=1500, help="development questions (balanced sample)")
    ap.add_argument("--quick", action="store_true", help="the defaults, the previous defaults and the per-year decays only (no sweep)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tune_reasoner")
    args = ap.parse_args()

    t0 = time.perf_counter()
    rules, index, questions, info = dev_split(args.kg, args.data, args.n)
    default = ReasonerSettings()
    runs = [("defaults", {}), ("previous defaults", PREVIOUS)]
    runs.append((PER_YEAR, {k: getattr(default, k) / DAYS_PER_YEAR for k in ("recency_decay", "history_decay", "prior_decay")}))
    if not args.quick:
        runs += [(f"{name} = {value:g}", {name: value}) for name, values in SWEEP.items() for value in values]
    rows = []
    for label, change in tqdm(runs, desc="settings", unit="run"):
        scores = hits_at_1(default.model_copy(update=change), rules, index, questions)
        rows.append({"setting": label, "change": change, **scores})
    seconds = time.perf_counter() - t0

    result = {"kg": args.kg, "questions": len(questions), **info, "defaults": default.model_dump(), "rows": rows,
              "seconds": round(seconds, 1), "machine": f"{platform.machine()}, python {platform.python_version()}",
              "command": f"python benchmarks/tune_reasoner.py --kg {args.kg} --n {args.n}" + (" --quick" if args.quick else "")
              + ("" if args.out == HERE / "results" / "tune_reasoner" else f" --out {args.out}")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    best = max(rows, key=lambda r: r["all"])
    lines = [
        "# Rule reasoner: settings on a development split", "",
        f"`{result['command']}` ({seconds:.0f} s). Corpus: {args.kg} train facts ({info['train_facts']:,}); "
        f"{info['rules']:,} rules mined from them; {len(questions):,} balanced questions (half popular subjects) from the "
        f"{info['dev_queries']:,} distinct validation-period queries. Hits@1 in % (the reasoner's top answer is a right "
        "answer; filtered). One setting changed at a time from the defaults:", "",
        "`" + ", ".join(f"{k}={_fmt(v)}" for k, v in default.model_dump().items()) + "`.", "",
        "| setting | Hits@1 | popular | long-tail |", "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['all']:.1f} | {r['popular']:.1f} | {r['long_tail']:.1f} |")
    lines += ["", f"Best row: {best['setting']} ({best['all']:.1f}). The previous defaults were "
              + ", ".join(f"{k}={_fmt(v)}" for k, v in PREVIOUS.items()) + ".", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
