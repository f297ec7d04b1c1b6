"""FollowRAG benchmark: answer FollowRAG items with their passages, check every answer.

Each item's question, its natural-language instructions and its passages go into the standard-RAG
prompt (instructions in their own section, passages as the documents); the answer is checked
against the item's verifiable instructions, its passages (faithfulness) and its gold answers
(correctness). With ``refine_rounds > 0`` the verify-and-refine loop runs, and both the first
answer ("without refinement") and the kept one ("with refinement") are scored, from one pass.

Answers are cached in ``OUT/cache/`` as they are produced, so an interrupted run resumes.

Example:
    >>> run_followrag("../shared/data/followrag/followRAG_ifnq.json", "benchmarks/results/followrag-nq", limit=100)  # doctest: +SKIP
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tqdm.auto import tqdm

from rulerag.checking import check, load_followrag, summarise
from rulerag.checking.followrag import followrag_prompt_parts
from rulerag.config import Settings
from rulerag.generation import PROMPT_VERSION, make_backend, standard_prompt
from rulerag.io import atomic_file
from rulerag.refine import Constraint, verify_and_refine
from rulerag.retrieval.index import library_versions

SUMMARY_KEYS = (
    "followrag_if_score", "prompt_level_strict_acc", "prompt_level_loose_acc", "instruction_level_strict_acc",
    "instruction_level_loose_acc", "unsatisfiable", "k_precision", "k_precision_pp", "k_f1", "grounding_rate", "em", "f1", "recall",
)


def run_followrag(
    data: str | Path,
    out: str | Path,
    *,
    settings: Settings | None = None,
    limit: int | None = None,
    refine_rounds: int = 2,
    max_new_tokens: int = 256,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the pipeline's generator over FollowRAG items; write results JSON and Markdown."""
    settings = settings or Settings()
    data, out = Path(data), Path(out)
    items = load_followrag(data, limit=limit)
    g = settings.generation
    cache = out / "cache" / f"answers-{g.backend.value}-{g.model.replace('/', '_')}-p{PROMPT_VERSION}-r{refine_rounds}-t{max_new_tokens}.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
    if cache.exists():
        for line in cache.read_bytes().splitlines():
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:  # a torn last line from an interruption
                continue
            done[str(row["key"])] = row
    generator = None
    with open(cache, "ab") as fh:
        for item in tqdm(items, desc=f"followrag {data.stem}", unit="item", disable=not progress):
            if str(item.key) in done:
                continue
            generator = generator or make_backend(g)
            question, instructions, documents = followrag_prompt_parts(item)
            prompt = standard_prompt(question, documents, [instructions] if instructions else [])
            constraints = [Constraint(i, dict(kw)) for i, kw in zip(item.instruction_id_list, item.kwargs)]
            result = verify_and_refine(generator, prompt, constraints, rounds=refine_rounds, max_new_tokens=max_new_tokens,
                                       temperature=g.temperature, question=question, documents=documents)
            row = {"key": str(item.key), "first": result.first_answer, "kept": result.answer, "rounds": len(result.rounds)}
            fh.write(orjson.dumps(row) + b"\n")
            fh.flush()
            done[row["key"]] = row

    def reports(which: str):
        out_reports = []
        for item in items:
            question, _, documents = followrag_prompt_parts(item)
            out_reports.append(check(done[str(item.key)][which], list(item.instruction_id_list), [dict(k) for k in item.kwargs],
                                     question=question, documents=documents, golden_answers=list(item.golden_answers), key=item.key))
        return out_reports

    first, kept = summarise(reports("first")), summarise(reports("kept"))
    results = {
        "data": str(data),
        "items": len(items),
        "without_refinement": {k: first.get(k) for k in SUMMARY_KEYS},
        "with_refinement": {k: kept.get(k) for k in SUMMARY_KEYS},
        "mean_rounds": float(np.mean([done[str(i.key)]["rounds"] for i in items])) if items else 0.0,
        "config": {"refine_rounds": refine_rounds, "max_new_tokens": max_new_tokens, "backend": g.backend.value, "model": g.model,
                   "temperature": g.temperature, "prompt_version": PROMPT_VERSION, "limit": limit},
        "libraries": library_versions(),
        "machine": f"{platform.machine()}, python {platform.python_version()}",
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "results.json", "wb") as fh:
        fh.write(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    lines = [f"# FollowRAG: {data.name}, {len(items)} items", "",
             f"Generator {g.backend.value}:{g.model}, max {max_new_tokens} new tokens, refinement rounds {refine_rounds}, "
             f"prompt version {PROMPT_VERSION}. Scores in %; unsatisfiable items are left out of the instruction scores.", "",
             "| measure | without refinement | with refinement |", "|---|---|---|"]
    def fmt(v: Any) -> str:
        return "-" if v is None else (f"{100 * v:.1f}" if isinstance(v, float) else str(v))

    for key in SUMMARY_KEYS:
        a, b = results["without_refinement"][key], results["with_refinement"][key]
        lines.append(f"| {key} | {fmt(a)} | {fmt(b)} |")
    lines += ["", f"Mean generation rounds per item: {results['mean_rounds']:.2f}.", ""]
    with atomic_file(out / "results.md") as fh:
        fh.write("\n".join(lines))
    return results
