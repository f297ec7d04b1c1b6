"""Fit the candidate-scoring weight (answerer ``llm-score``) on a development split, never on test questions.

    .venv/bin/python benchmarks/tune_generator.py --set ruleqa-i [--data ../shared/data] [--n 1500] [--limit 200]
        [--top 5] [--backend llamacpp] [--model qwen2.5-coder-0.5b-instruct] [--out benchmarks/results/tune_generator_ruleqa-i]

The development split is ``benchmarks/tune_reasoner.py``'s, for the set's source KG: the corpus is
the KG's *train* facts, rules are mined from them with the benchmark builder's settings, and the
questions are a balanced sample (seed 0) of the distinct ``(subject, relation, time)`` queries of
the *validation* facts (every object of a query is right: filtered). ``--limit`` takes a seeded
sample of those for the LLM.

Per question the reasoner (the configured ``reasoner`` settings) reads the second hop, history and
prior from the train facts, as in ``tune_reasoner.py``, and its ``--top`` best candidates are
scored by the generator under the grounded-path prompt (:func:`rulerag.generation.prompts.grounded_prompt`)
whose documents stand in for retrieval: the subject's ``--answer-k`` latest facts before the
question, then the candidates' evidence (:func:`rulerag.rules.paths.render_paths`). Reasoner
scores and log-probabilities are cached line by line (resumable; one file per set, split size,
backend, model, prompt version and ``--top``), so the sweep never re-runs the LLM: every weight of
:data:`GRID` under both normalisations of :mod:`rulerag.generation.scoring`, reporting Hits@1 (the
top re-ranked answer is right: the runner's entity EM for ``llm-score``), by popularity, the LLM
alone and the top-K oracle. The best (norm, weight), smallest weight first among ties, is the one to
pass as ``rulerag bench run --answerers llm-score --score-weight W --score-norm NORM``. Writes
``benchmarks/results/tune_generator_<set>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_reasoner import period_split  # noqa: E402

from rulerag.bench.ruleqa import BENCHMARKS, question_text  # noqa: E402
from rulerag.bench.runner import _append_jsonl, _read_cache, mcnemar, seeded_sample  # noqa: E402
from rulerag.config import BackendKind, load_settings  # noqa: E402
from rulerag.corpus import linearise_fact  # noqa: E402
from rulerag.generation import PROMPT_VERSION, make_backend  # noqa: E402
from rulerag.generation.prompts import grounded_prompt  # noqa: E402
from rulerag.generation.scoring import NORMS, rerank, score_candidates  # noqa: E402
from rulerag.kg.loaders import dataset_name, load_kg  # noqa: E402
from rulerag.rules.paths import render_paths  # noqa: E402
from rulerag.rules.reason import RuleReasoner, time_value  # noqa: E402

HERE = Path(__file__).resolve().parent
#: weights tried for ``reasoner score + weight * LLM score``; 0 is the reasoner alone
GRID = (0.0, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0)


def score_rows(kg, rules, index, questions, generator, cache: Path, *, top: int, answer_k: int, reasoner: RuleReasoner,
               progress: bool = True) -> list[dict]:
    """One cached row per question: ``candidates`` (the reasoner's ``top`` best), their ``reasoner``
    scores and ``llm`` log-probabilities (None with fewer than two candidates: nothing to re-rank),
    ``gold`` and ``popular``. Rows already in ``cache`` are not recomputed."""
    done = _read_cache(cache)
    rules_by_id = {r.id: r for r in rules}
    fact_of = {f.doc_id: f for f in index.facts if f is not None}.get
    for q, gold, popular in tqdm(questions, desc="score", unit="q", disable=not progress):
        key = f"{q.subject}|{q.relation}|{q.time}"
        if key in done:
            continue
        cands = reasoner.reason_with(q, rules.by_head(q.relation), [], index)[:top]
        row = {"id": key, "gold": sorted(gold), "popular": popular, "candidates": [c.answer for c in cands],
               "reasoner": [round(c.score, 6) for c in cands], "llm": None}
        if len(cands) > 1:
            t = time_value(q.time)
            past = [f for f in index.about(q.subject) if t is None or f.time is None or time_value(f.time) < t]
            latest = sorted(past, key=lambda f: -math.inf if f.time is None else time_value(f.time))
            context = [f.doc_id for f in latest[len(latest) - answer_k:]] if answer_k else []  # ([-0:] would be all)
            paths = render_paths(cands, context, fact_of, rules_by_id, q, top=top)
            docs = [linearise_fact(f.subject, f.relation, f.object, f.time) for f in map(fact_of, paths.doc_ids)]
            prompt = grounded_prompt(question_text(q.subject, q.relation, q.time, kg.train.time_unit), docs, paths.lines)
            row["llm"] = score_candidates(generator, prompt, row["candidates"])
        _append_jsonl(cache, [row])
        done[key] = row
    return [done[f"{q.subject}|{q.relation}|{q.time}"] for q, _, _ in questions]


def hits(rows: list[dict], pick) -> dict[str, float]:
    """Hits@1 in % (all, popular, long-tail) of the candidate position ``pick(row)`` chooses, and
    the 0/1 ``flags`` per question (for McNemar's test)."""
    flags = [bool(r["candidates"]) and r["candidates"][pick(r)] in r["gold"] for r in rows]
    by = {p: [f for f, r in zip(flags, rows) if r["popular"] == p] for p in (True, False)}
    return {"all": 100 * float(np.mean(flags or [0])), "popular": 100 * float(np.mean(by[True] or [0])),
            "long_tail": 100 * float(np.mean(by[False] or [0])), "flags": flags}


def sweep(rows: list[dict]) -> tuple[list[dict], dict]:
    """Hits@1 of every (norm, weight) of :data:`GRID`, and the best one (smallest weight among ties)."""
    table = []
    for norm in NORMS:
        for w in GRID:
            table.append({"norm": norm, "weight": w, **hits(rows, lambda r: rerank(r["reasoner"], r["llm"], w, norm)[0])})
    best = max(table, key=lambda r: (r["all"], -r["weight"]))
    return table, best


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="bench_set", required=True, choices=list(BENCHMARKS), help="RuleQA set whose source KG makes the split")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder holding kg/<name>/ (default: $RULERAG_DATA or ../shared/data)")
    ap.add_argument("--n", type=int, default=1500, help="development questions (balanced sample, as tune_reasoner.py)")
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of N development questions for the LLM")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    ap.add_argument("--top", type=int, default=5, help="reasoner candidates the LLM scores (the runner's --score-top)")
    ap.add_argument("--answer-k", type=int, default=0,
                    help="context documents (the subject's latest facts) in the prompt besides the evidence; 0 = evidence only, "
                         "as the runner's grounded_k default")
    ap.add_argument("--backend", choices=[b.value for b in BackendKind], default=None, help="generator backend (default: settings)")
    ap.add_argument("--model", default=None, help="generator model (default: settings)")
    ap.add_argument("--cache", type=Path, default=HERE / "results" / "tune_generator" / "cache", help="cache folder (resumable)")
    ap.add_argument("--out", type=Path, default=None, help="result path without suffix (default: results/tune_generator_<set>)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.top < 2 or (args.limit is not None and args.limit < 1) or args.n < 1:
        ap.error("--top must be >= 2, --n and --limit >= 1")
    out = args.out or HERE / "results" / f"tune_generator_{args.bench_set}"

    t0 = time.perf_counter()
    settings = load_settings(overrides={"generation": {"backend": args.backend, "model": args.model}})
    gen = settings.generation
    kg_name = BENCHMARKS[args.bench_set][0]
    kg = load_kg(kg_name, args.data / "kg" / dataset_name(kg_name) if args.data else None)
    rules, index, questions, info = period_split(kg.train, kg.valid, args.n)
    questions = seeded_sample(questions, args.limit, args.seed)
    tag = f"{args.bench_set}-n{args.n}-{gen.backend.value}-{gen.model}-p{PROMPT_VERSION}-top{args.top}-k{args.answer_k}".replace("/", "_")
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = score_rows(kg, rules, index, questions, make_backend(gen), args.cache / f"{tag}.jsonl", top=args.top,
                      answer_k=args.answer_k, reasoner=RuleReasoner.from_settings(settings.reasoner), progress=not args.quiet)
    table, best = sweep(rows)
    base = next(r for r in table if r["weight"] == 0.0)
    llm_alone = hits(rows, lambda r: rerank([0.0] * len(r["candidates"]), r["llm"], 1.0, "logprob")[0])
    oracle = 100 * float(np.mean([any(c in r["gold"] for c in r["candidates"]) for r in rows] or [0]))
    test = mcnemar(base["flags"], best["flags"])
    seconds = time.perf_counter() - t0

    command = (f"python benchmarks/tune_generator.py --set {args.bench_set} --n {args.n} --top {args.top} --answer-k {args.answer_k}"
               f" --backend {gen.backend.value} --model {gen.model}" + (f" --limit {args.limit}" if args.limit else ""))
    strip = lambda r: {k: v for k, v in r.items() if k != "flags"}  # noqa: E731
    result = {"set": args.bench_set, "kg": kg_name, "questions": len(rows), **info, "top": args.top, "answer_k": args.answer_k,
              "backend": gen.backend.value, "model": gen.model, "prompt_version": PROMPT_VERSION,
              "scored": sum(r["llm"] is not None for r in rows), "rows": [strip(r) for r in table], "best": strip(best),
              "llm_alone": strip(llm_alone), "oracle_top": oracle, "best_vs_reasoner": test, "seconds": round(seconds, 1),
              "machine": f"{platform.machine()}, python {platform.python_version()}", "command": command}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# Candidate scoring (llm-score) on a development split: {args.bench_set}", "",
        f"`{command}` ({seconds:.0f} s). Corpus: {kg_name} train facts ({info['train_facts']:,}); {info['rules']:,} rules "
        f"mined from them; {len(rows):,} balanced validation-period questions ({result['scored']:,} with two or more "
        f"candidates, scored by {gen.backend.value} / {gen.model}, prompt version {PROMPT_VERSION}). Hits@1 in % of "
        f"`reasoner score + weight * LLM score` over the reasoner's top {args.top} (weight 0: the reasoner alone).", "",
        f"Top-{args.top} oracle (a right answer among the candidates): {oracle:.1f}. LLM alone (highest log-probability): "
        f"{llm_alone['all']:.1f}.", "",
        "| norm | weight | Hits@1 | popular | long-tail |", "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['norm']} | {r['weight']:g} | {r['all']:.1f} | {r['popular']:.1f} | {r['long_tail']:.1f} |" for r in table]
    lines += ["", f"Best: {best['norm']}, weight {best['weight']:g} ({best['all']:.1f} vs the reasoner's {base['all']:.1f}; "
              f"only the reasoner right {test['a_only']}, only the re-ranking right {test['b_only']}, McNemar p = {test['p_value']:.2g}). "
              f"Use it with `rulerag bench run --answerers llm-score --score-weight {best['weight']:g} --score-norm {best['norm']}`.", ""]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
