"""Does the LLM help more when it only decides where the reasoner is unsure? A margin-gated re-ranking.

    .venv/bin/python benchmarks/gate_scores.py [--set ruleqa-i ...] [--cache benchmarks/results/tune_generator/cache]
        [--results benchmarks/results] [--out benchmarks/results/score_gating]

Candidate scoring (``--answerers llm-score``) adds ``weight * LLM score`` to every candidate's
reasoner score. The gated variant leaves the reasoner's answer alone unless another candidate's
reasoner score is within ``tau`` of the best one; among those close candidates the LLM's
log-probability decides (ties: the reasoner's order). ``tau`` is chosen on the development split
(the rows ``benchmarks/tune_generator.py`` cached: run it first), smallest first among ties, and
then applied once to the test questions of the 300-question table (the rows the runner cached for
``llm-score`` in ``RESULTS/ruleqa-<set>-llm300/cache/``). No LLM call is made here: both splits'
log-probabilities are read from those caches.

A candidate is right when it is one of the question's gold answers, as strings (Hits@1, the
development split's measure); the test reasoner's Hits@1 is shown beside the runner's entity EM
for the same answers, which matches names more loosely. Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_generator import hits  # noqa: E402

from rulerag.bench.ruleqa import load_questions  # noqa: E402
from rulerag.bench.runner import _read_cache, mcnemar  # noqa: E402

HERE = Path(__file__).resolve().parent
SETS = ("ruleqa-i", "ruleqa-y", "ruleqa-w", "ruleqa-f", "ruleqa-n")
#: margins tried on the development split (reasoner-score units: its scores are mostly in [0, 1.5])
TAUS = (0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def gated_pick(reasoner: list[float], llm: list[float] | None, tau: float | None) -> int:
    """Position of the chosen candidate: the reasoner's first, unless ``tau`` is set and other
    candidates score within ``tau`` of it; then the LLM's best of those (stable).

    Example:
        >>> gated_pick([0.9, 0.85, 0.2], [-5.0, -1.0, -0.1], None), gated_pick([0.9, 0.85, 0.2], [-5.0, -1.0, -0.1], 0.1)
        (0, 1)
    """
    if tau is None or not llm or not reasoner:
        return 0
    top = max(reasoner)
    close = [i for i, s in enumerate(reasoner) if s >= top - tau - 1e-9]
    return max(close, key=lambda i: (llm[i], -i))


def dev_rows(cache: Path, bench_set: str) -> list[dict]:
    files = sorted(cache.glob(f"{bench_set}-n1500-*-top5-k0.jsonl"))
    if not files:
        raise SystemExit(f"no development rows for {bench_set} in {cache}. Fix: run benchmarks/tune_generator.py --set {bench_set} --limit 200")
    return [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines() if line.strip()]


def table_rows(results: Path, bench_set: str) -> tuple[list[dict], dict]:
    run = results / f"{bench_set}-llm300"
    report = json.loads((run / "results.json").read_text(encoding="utf-8"))
    files = sorted((run / "cache").glob("answers-*-llm-score-*.jsonl"))
    if not files:
        raise SystemExit(f"no llm-score answers in {run / 'cache'}. Fix: run the set's 300-question table first (docs/benchmarks.md)")
    scored = _read_cache(files[0])
    gold = {q["id"]: q["golden_answers"] for q in load_questions(report["config"]["bench"])}
    rows = [{**scored[i], "gold": gold[i], "popular": None} for i in report["question_ids"]]
    return rows, report


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="sets", action="append", choices=SETS, help="RuleQA set (repeatable; default: all five)")
    ap.add_argument("--cache", type=Path, default=HERE / "results" / "tune_generator" / "cache", help="tune_generator.py's cache folder")
    ap.add_argument("--results", type=Path, default=HERE / "results", help="folder of the ruleqa-<set>-llm300 runs")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "score_gating")
    args = ap.parse_args(argv)
    out = []
    for bench_set in args.sets or SETS:
        dev = dev_rows(args.cache, bench_set)
        base = hits(dev, lambda r: 0)
        sweep = [{"tau": tau, **hits(dev, lambda r, t=tau: gated_pick(r["reasoner"], r["llm"], t))} for tau in TAUS]
        best = max(sweep, key=lambda r: (r["all"], -r["tau"]))
        if best["all"] <= base["all"]:  # no margin helps on the development split: keep the reasoner
            best = {"tau": None, **base}
        rows, report = table_rows(args.results, bench_set)
        t_base = hits(rows, lambda r: 0)
        t_gate = hits(rows, lambda r: gated_pick(r["reasoner"], r["llm"], best["tau"]))
        flags = report["entity_em_flags"]
        em = {k.rsplit("/", 1)[1]: 100 * sum(f) / len(f) for k, f in flags.items()}  # by answerer
        out.append({
            "set": bench_set, "dev_questions": len(dev), "dev_reasoner": base["all"], "tau": best["tau"], "dev_gated": best["all"],
            "dev_test": mcnemar(base["flags"], best["flags"]), "dev_sweep": [{"tau": r["tau"], "all": r["all"]} for r in sweep],
            "test_questions": len(rows), "test_reasoner": t_base["all"], "test_gated": t_gate["all"],
            "test_test": mcnemar(t_base["flags"], t_gate["flags"]), "runner_entity_em": em,
        })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    command = "python benchmarks/gate_scores.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Margin-gated candidate scoring: the LLM decides only where the reasoner is unsure", "",
        f"`{command}`. Hits@1 in % (the chosen candidate is a gold answer, as strings). `tau` chosen on the development "
        "split (200 questions, `tune_generator.py`'s rows), then applied once to the 300 test questions of each set's "
        "LLM table (the runner's cached `llm-score` rows); won / lost against the reasoner alone, exact McNemar p. "
        "Entity EM: the runner's measure for the same reasoner and `llm-score` answers.", "",
        "| set | dev: reasoner | dev: best tau | dev: gated (won / lost, p) | test: reasoner | test: gated (won / lost, p) "
        "| test entity EM: reasoner / llm-score |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for r in out:
        d, t, em = r["dev_test"], r["test_test"], r["runner_entity_em"]
        tau = "none (keeps the reasoner)" if r["tau"] is None else f"{r['tau']:g}"
        lines.append(f"| {r['set']} | {r['dev_reasoner']:.1f} | {tau} | {r['dev_gated']:.1f} ({d['b_only']} / {d['a_only']}, "
                     f"p {d['p_value']:.2g}) | {r['test_reasoner']:.1f} | {r['test_gated']:.1f} ({t['b_only']} / {t['a_only']}, "
                     f"p {t['p_value']:.2g}) | {em.get('reasoner', float('nan')):.1f} / {em.get('llm-score', float('nan')):.1f} |")
    lines += ["", "Development sweep (Hits@1 by tau):", "",
              "| set | " + " | ".join(f"{t:g}" for t in TAUS) + " |", "|---|" + "---:|" * len(TAUS)]
    for r in out:
        lines.append(f"| {r['set']} | " + " | ".join(f"{s['all']:.1f}" for s in r["dev_sweep"]) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return {"rows": out}


if __name__ == "__main__":
    main()
