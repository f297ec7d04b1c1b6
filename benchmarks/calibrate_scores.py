"""Does calibrating the LLM's candidate scores help? PMI against an empty question, on a development split.

    .venv/bin/python benchmarks/calibrate_scores.py --set ruleqa-n [--set ruleqa-i ...]
        [--cache benchmarks/results/tune_generator/cache] [--out benchmarks/results/score_calibration]

A small model prefers popular names (*United States of America*) whatever the question. Domain-
conditional PMI (Holtzman et al., 2021, "Surface Form Competition") removes that preference: a
candidate's score becomes ``log p(candidate | prompt) - a * log p(candidate | empty prompt)``,
where the empty prompt is the grounded-path prompt with no question, documents or paths. ``a = 0``
is plain candidate scoring (``benchmarks/tune_generator.py``), ``a = 1`` full PMI.

Reads the rows ``tune_generator.py`` cached for the set (reasoner candidates, their scores and
log-probabilities on the development split: run it first), scores each distinct candidate once
after the empty prompt (cached beside them, so a rerun needs no LLM), and sweeps ``a`` with every
(norm, weight) of ``tune_generator.GRID``. Development questions only; nothing here reads test
questions. Writes ``benchmarks/results/score_calibration.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_generator import GRID, hits  # noqa: E402

from rulerag.bench.runner import mcnemar  # noqa: E402
from rulerag.config import BackendKind, load_settings  # noqa: E402
from rulerag.generation import PROMPT_VERSION, make_backend  # noqa: E402
from rulerag.generation.prompts import grounded_prompt  # noqa: E402
from rulerag.generation.scoring import NORMS, rerank, score_candidates  # noqa: E402

HERE = Path(__file__).resolve().parent
#: calibration strengths tried: 0 = plain log-probabilities, 1 = full PMI
STRENGTHS = (0.0, 0.25, 0.5, 1.0)


def calibrated(rows: list[dict], null: dict[str, float], a: float) -> list[dict]:
    """The rows with ``llm`` replaced by ``llm - a * null[candidate]`` (rows with no LLM scores kept)."""
    return [r if r["llm"] is None else {**r, "llm": [x - a * null[c] for x, c in zip(r["llm"], r["candidates"])]}
            for r in rows]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="sets", action="append", required=True, help="RuleQA set (repeatable)")
    ap.add_argument("--cache", type=Path, default=HERE / "results" / "tune_generator" / "cache",
                    help="tune_generator.py's cache folder")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "score_calibration", help="result path without suffix")
    ap.add_argument("--n", type=int, default=1500, help="development split size, as given to tune_generator.py")
    ap.add_argument("--top", type=int, default=5, help="candidates per question, as given to tune_generator.py")
    ap.add_argument("--answer-k", type=int, default=0, help="context documents, as given to tune_generator.py")
    ap.add_argument("--backend", choices=[b.value for b in BackendKind], default=None,
                    help="generator backend, as given to tune_generator.py (default: settings)")
    ap.add_argument("--model", default=None, help="generator model, as given to tune_generator.py (default: settings)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    gen = load_settings(overrides={"generation": {"backend": args.backend, "model": args.model}}).generation
    generator = None
    result: dict = {"model": gen.model, "backend": gen.backend.value, "prompt_version": PROMPT_VERSION, "sets": {}}
    lines = ["# Calibrated candidate scores (PMI) on the development splits", "",
             f"`python benchmarks/calibrate_scores.py {' '.join('--set ' + s for s in args.sets)}`. Hits@1 in % of "
             "`reasoner score + weight * LLM score`, the LLM score being `log p(candidate | prompt) - a * log p(candidate | empty prompt)`; "
             "per `a` the best (norm, weight) on the development split (`a = 0`: plain scoring, as `tune_generator.py`).", "",
             "| set | reasoner | a | best norm, weight | Hits@1 | vs reasoner (won / lost, p) |", "|---|---:|---:|---|---:|---|"]
    for s in args.sets:
        tag = f"{s}-n{args.n}-{gen.backend.value}-{gen.model}-p{PROMPT_VERSION}-top{args.top}-k{args.answer_k}".replace("/", "_")
        path = args.cache / f"{tag}.jsonl"
        if not path.exists():
            sys.exit(f"no development rows at {path}. Fix: run benchmarks/tune_generator.py --set {s} --n {args.n} --top {args.top}"
                     f" --answer-k {args.answer_k} first (same backend and model)")
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        null_path = args.cache / f"{tag}.null.json"
        null = json.loads(null_path.read_text()) if null_path.exists() else {}
        todo = sorted({c for r in rows if r["llm"] for c in r["candidates"]} - set(null))
        if todo:
            generator = generator or make_backend(gen)
            empty = grounded_prompt("", [], [])
            for i in range(0, len(todo), 32):
                null.update(zip(todo[i:i + 32], score_candidates(generator, empty, todo[i:i + 32])))
            tmp = null_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(null), encoding="utf-8")
            tmp.replace(null_path)
        base = hits(rows, lambda r: 0)
        per = []
        for a in STRENGTHS:
            cal = calibrated(rows, null, a)
            table = [{"norm": n, "weight": w, **hits(cal, lambda r, w=w, n=n: rerank(r["reasoner"], r["llm"], w, n)[0])}
                     for n in NORMS for w in GRID]
            best = max(table, key=lambda r: (r["all"], -r["weight"]))
            test = mcnemar(base["flags"], best["flags"])
            per.append({"a": a, "norm": best["norm"], "weight": best["weight"], "hits1": best["all"], "vs_reasoner": test})
            lines.append(f"| {s} | {base['all']:.1f} | {a:g} | {best['norm']}, {best['weight']:g} | {best['all']:.1f} | "
                         f"{test['b_only']} / {test['a_only']}, p = {test['p_value']:.2g} |")
        result["sets"][s] = {"questions": len(rows), "reasoner": base["all"], "by_strength": per}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    lines += ["", f"{result['seconds']:.0f} s for this run on 2 CPU cores ({gen.backend.value} / {gen.model}; the empty-prompt "
              "scores are cached beside the development rows, so only a first run per set calls the model).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
