"""FollowRAG tables from the answer files alone (scores per setting, a paired refinement test,
pass rates per instruction type: table and bar chart), and :func:`run_followrag`, which answers and then reports.

Scores (every answer is checked with :func:`rulerag.checking.check`):

- **IF** (instruction following), as IFEval and FollowRAG report it: prompt-level accuracy (share
  of items whose answer follows *all* its instructions) and instruction-level accuracy (share of
  instructions followed), each *strict* (the answer as is) and *loose* (the best of IFEval's 8
  variants: first / last line dropped, ``*`` removed). FollowRAG's IF score is the
  instruction-level loose accuracy. Items whose instructions contradict each other
  (``unsatisfiable``) are left out of IF.
- **RAG score: answer accuracy** (the headline): the share of items whose answer contains a gold
  alias as whole words, both normalised (lower case, punctuation and articles removed;
  :func:`~rulerag.checking.faithfulness.gold_in_answer`), after removing the text the instructions
  forced in (titles, postscripts, end phrases, JSON syntax ...). Exact match is near zero by
  construction for answers that must be 3 paragraphs long, so it is shown only beside it, with
  token F1 and token recall (share of the best gold alias's tokens in the answer).
- **Paired tests** on the same items: for each item, did the answer follow all its instructions
  (prompt-level strict) in one setting and not the other; ``fixed`` / ``broken`` count the two
  kinds of disagreement, p is the exact McNemar (two-sided binomial sign) test; the same for
  answer accuracy, with the difference in points.
- **Cost**: seconds, model calls and tokens per item (``refine`` without and with its first answer).

Example:
    >>> report_followrag(FollowRAGRun(Path("followRAG_ifnq.json"), Path("out")))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from rulerag.bench.followrag import SETTING_NOTES, SETTINGS, FollowRAGRun, generate_answers, parse_settings
from rulerag.bench.plots import PLOTS_SKIPPED, pyplot
from rulerag.bench.runner import _read_cache, mcnemar
from rulerag.checking import CheckReport, check, followrag_prompt_parts, summarise
from rulerag.checking.faithfulness import answer_content, gold_in_answer
from rulerag.checking.followrag import FollowRAGItem
from rulerag.checking.instructions import INSTRUCTIONS
from rulerag.checking.repair import repaired_by
from rulerag.config import Settings
from rulerag.generation import PROMPT_VERSION, Generator
from rulerag.io import atomic_file
from rulerag.retrieval.index import library_versions

log = logging.getLogger(__name__)

_IF_KEYS = ("prompt_level_strict_acc", "prompt_level_loose_acc", "instruction_level_strict_acc",
            "instruction_level_loose_acc", "followrag_if_score", "instruction_items", "unsatisfiable")
_RAG_KEYS = ("em", "f1", "recall", "k_precision", "k_f1", "grounding_rate")


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def check_answer(item: FollowRAGItem, answer: str) -> CheckReport:
    """The full check of ``answer`` to ``item``: instructions, faithfulness to its passages,
    correctness against its gold answers."""
    question, _, documents = followrag_prompt_parts(item)
    return check(answer, list(item.instruction_id_list), [dict(k) for k in item.kwargs], question=question,
                 documents=documents, golden_answers=list(item.golden_answers), key=item.key)


def answer_accuracy(item: FollowRAGItem, report: CheckReport) -> float:
    """1.0 when a gold alias occurs in the answer's content (forced text removed)."""
    content = report.faithfulness.content if report.faithfulness else answer_content(
        report.response, report.instruction_id_list, report.kwargs)
    return gold_in_answer(content, item.golden_answers)


def _scores(items: Sequence[FollowRAGItem], rows: dict[str, dict]) -> dict[str, Any]:
    """Scores of one setting over the ``items`` it answered (``flags`` are per item, for pairing)."""
    answered = [i for i in items if str(i.key) in rows]
    reports = [check_answer(i, rows[str(i.key)]["answer"]) for i in answered]
    summary = summarise(reports)
    accuracy = [answer_accuracy(i, r) for i, r in zip(answered, reports)]
    follow = {str(i.key): r.strict.follow_all_instructions for i, r in zip(answered, reports)
              if r.canonical_ids and not r.unsatisfiable}
    return {
        "answered": len(answered),
        "if": {k: summary[k] for k in _IF_KEYS},
        "rag": {"answer_accuracy": _mean(accuracy), **{k: summary[k] for k in _RAG_KEYS}},
        "per_instruction": summary["per_instruction"],
        "flags": {"follow_all_strict": follow,
                  "answer_accuracy": {str(i.key): a for i, a in zip(answered, accuracy)}},
    }


def _cost(rows: Sequence[dict]) -> dict[str, Any]:
    def mean(name: str) -> float | None:
        return _mean([float(r.get(name, 0)) for r in rows])

    return {
        "seconds_per_item": mean("seconds"),
        "generation_seconds_per_item": mean("generation_seconds"),
        "model_calls_per_item": mean("rounds"),
        "prompt_tokens_per_item": mean("prompt_tokens"),
        "completion_tokens_per_item": mean("completion_tokens"),
        "total_tokens": sum(int(r.get("prompt_tokens", 0)) + int(r.get("completion_tokens", 0)) for r in rows),
        "tokens_estimated": any(r.get("tokens_estimated") for r in rows),
    }


def _repairs(rows: Sequence[dict]) -> dict[str, Any]:
    kept: dict[str, int] = {}
    for r in rows:
        for cid in r.get("repairs", []):
            kept[cid] = kept.get(cid, 0) + 1
    return {
        "items_repaired": sum(1 for r in rows if r.get("repairs")),
        "items_reasked": sum(1 for r in rows if r.get("rounds", 0) > 0),
        "reasks_echoed": sum(1 for r in rows for a in r.get("attempts", []) if a.get("echo")),
        "kept_by_instruction": dict(sorted(kept.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def paired(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` against ``base`` on the items both answered: prompt-level strict following and
    answer accuracy, ``fixed`` (only ``new`` right), ``broken`` (only ``base`` right), exact McNemar p."""
    out: dict[str, Any] = {}
    for flag in ("follow_all_strict", "answer_accuracy"):
        a, b = base["flags"][flag], new["flags"][flag]
        keys = [k for k in a if k in b]
        test = mcnemar([a[k] for k in keys], [b[k] for k in keys])
        out[flag] = {"items": len(keys), "base": _mean([float(a[k]) for k in keys]), "new": _mean([float(b[k]) for k in keys]),
                     "fixed": test["b_only"], "broken": test["a_only"], "p_value": test["p_value"]}
        if keys:
            out[flag]["difference_points"] = 100 * (out[flag]["new"] - out[flag]["base"])
    return out


def per_family(scores: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per instruction type: FollowRAG id (IFEval id where FollowRAG has none), count,
    strict and loose pass rate per setting, and who repairs it in ``refine``."""
    ids = sorted({cid for s in scores.values() for cid in s["per_instruction"]},
                 key=lambda cid: (INSTRUCTIONS[cid].followrag_id or cid))
    rows = []
    for cid in ids:
        cells = {name: s["per_instruction"].get(cid) for name, s in scores.items()}
        count = max((c["count"] for c in cells.values() if c), default=0)
        rows.append({"instruction": INSTRUCTIONS[cid].followrag_id or cid, "ifeval_id": cid, "count": count,
                     "strict": {n: c["strict_acc"] if c else None for n, c in cells.items()},
                     "loose": {n: c["loose_acc"] if c else None for n, c in cells.items()},
                     "repaired_by": repaired_by(cid)})
    return rows


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _num(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _markdown(results: dict[str, Any]) -> str:
    names = list(results["settings"])
    s = results["settings"]
    cfg = results["config"]
    lines = [f"# FollowRAG: {Path(results['data']).name}, {results['items']} items", "",
             f"Generator {cfg['backend']}:{cfg['model']}, max {cfg['max_new_tokens']} new tokens, at most "
             f"{cfg['refine_rounds']} model rounds in refine, prompt version {cfg['prompt_version']}, temperature {cfg['temperature']}."
             + (f" First {cfg['limit']} records of the file." if cfg["limit"] else ""), ""]
    lines += [f"- `{n}`: {SETTING_NOTES[n]}" for n in names]
    if results["skipped_count"]:
        lines += ["", f"**{results['skipped_count']} malformed item(s) skipped** (all in results.json):", ""]
        lines += [f"- {x['where']} (key {x['key']!r}): {x['field']}: {x['problem']}. Fix: {x['fix']}" for x in results["skipped"][:10]]
    head = "| measure | " + " | ".join(names) + " |"
    rule = "|---|" + "---|" * len(names)

    def row(label: str, get, fmt=_pct) -> str:
        return f"| {label} | " + " | ".join(fmt(get(s[n])) for n in names) + " |"

    lines += ["", "## Scores (%)", "", head, rule,
              row("items answered", lambda x: x["answered"], str),
              row("IF prompt-level strict", lambda x: x["if"]["prompt_level_strict_acc"]),
              row("IF prompt-level loose", lambda x: x["if"]["prompt_level_loose_acc"]),
              row("IF instruction-level strict", lambda x: x["if"]["instruction_level_strict_acc"]),
              row("IF instruction-level loose (FollowRAG IF score)", lambda x: x["if"]["instruction_level_loose_acc"]),
              row("RAG: answer accuracy (gold in answer)", lambda x: x["rag"]["answer_accuracy"]),
              row("RAG: exact match", lambda x: x["rag"]["em"]),
              row("RAG: token F1", lambda x: x["rag"]["f1"]),
              row("RAG: token recall", lambda x: x["rag"]["recall"]),
              row("faithfulness: K-Precision", lambda x: x["rag"]["k_precision"]),
              row("faithfulness: grounded answers", lambda x: x["rag"]["grounding_rate"]),
              "", "Unsatisfiable items (left out of IF): " + ", ".join(f"{n} {s[n]['if']['unsatisfiable']}" for n in names) + ".",
              "", "## Cost per item", "", head, rule,
              row("seconds", lambda x: x["cost"]["seconds_per_item"], _num),
              row("model calls", lambda x: x["cost"]["model_calls_per_item"], lambda v: _num(v, 2)),
              row("prompt tokens", lambda x: x["cost"]["prompt_tokens_per_item"], lambda v: _num(v, 0)),
              row("completion tokens", lambda x: x["cost"]["completion_tokens_per_item"], lambda v: _num(v, 0)),
              row("total tokens (all items)", lambda x: x["cost"]["total_tokens"], lambda v: f"{v:,}")]
    if "refine" in s and s["refine"]["cost"].get("with_first_answer"):
        w = s["refine"]["cost"]["with_first_answer"]
        lines += ["", f"`refine` with its first (`constraint`) answer: {_num(w['seconds_per_item'])} s, "
                      f"{_num(w['model_calls_per_item'], 2)} model calls and {w['total_tokens']:,} tokens in all."]
    if any(s[n]["cost"]["tokens_estimated"] for n in names):
        lines += ["", "Token counts are estimated (words and punctuation): the backend does not report them."]
    if "refine" in s:
        r = s["refine"]["repairs"]
        kept = ", ".join(f"{cid} {n}" for cid, n in r["kept_by_instruction"].items()) or "none"
        lines += ["", "## Refinement", "",
                  f"Repairs by code kept in {r['items_repaired']} of {s['refine']['answered']} answers ({kept}); "
                  f"the model was re-asked for {r['items_reasked']}"
                  + (f"; {r['reasks_echoed']} re-asked answers copied the prompt's tags and were discarded." if r.get("reasks_echoed") else ".")]
    if results["paired"]:
        lines += ["", "## Paired tests", "", "On the items both settings answered; first / second = the two settings' scores, "
                  "fixed = right only in the second, broken = right only in the first, p = exact McNemar (two-sided sign test).", "",
                  "| comparison | measure | items | first | second | fixed | broken | p |", "|---|---|---|---|---|---|---|---|"]
        for name, test in results["paired"].items():
            for flag, label in (("follow_all_strict", "IF prompt-level strict"), ("answer_accuracy", "answer accuracy")):
                t = test[flag]
                lines.append(f"| {name} | {label} | {t['items']} | {_pct(t['base'])} | {_pct(t['new'])} | {t['fixed']} | "
                             f"{t['broken']} | {t['p_value']:.3g} |")
    fam = results["per_family"]
    lines += ["", "## Pass rate per instruction type (strict, %)", "",
              "| instruction | IFEval id | n | " + " | ".join(names) + " | repaired by |", "|---|---|---|" + "---|" * len(names) + "---|"]
    for f in fam:
        lines.append(f"| {f['instruction']} | {f['ifeval_id']} | {f['count']} | " + " | ".join(_pct(f["strict"][n]) for n in names)
                     + f" | {f['repaired_by']} |")
    lines += ["", "## Metrics", "",
              "IF: IFEval's prompt-level (all instructions of an item followed) and instruction-level accuracy, strict and "
              "loose; FollowRAG's IF score is instruction-level loose. RAG score: answer accuracy, the share of answers that "
              "contain a gold alias as whole words after normalisation (lower case, no punctuation or articles), with the "
              "text the instructions forced in removed. Exact match, token F1 and token recall against the best gold alias "
              "are shown beside it.", ""]
    if results["plots"]:
        lines += [f"![pass rate per instruction type]({p})" for p in results["plots"]] + [""]
    elif results.get("plots_skipped"):
        lines += [f"Plots skipped: {results['plots_skipped']}.", ""]
    return "\n".join(lines)


def plot_per_family(rows: Sequence[dict[str, Any]], names: Sequence[str], path: Path, title: str) -> bool:
    """A horizontal grouped bar chart of strict pass rates; False (nothing written) without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    import numpy as np

    y = np.arange(len(rows))
    height = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(7, 0.15 * len(rows) * max(len(names), 1) + 1.5))
    for j, name in enumerate(names):
        vals = [100 * (r["strict"].get(name) or 0.0) for r in rows]
        ax.barh(y + (j - (len(names) - 1) / 2) * height, vals, height, label=name)
    ax.set_yticks(y, [f"{r['instruction']} ({r['count']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("strict pass rate (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report_followrag(run: FollowRAGRun) -> dict[str, Any]:
    """Score the answer files of ``run``; write ``results.json``, ``results.md`` and
    ``per_family.png`` (when matplotlib is installed) in ``run.out``; return the results."""
    items, skipped = run.items()
    names = run.needed()
    rows = {n: _read_cache(run.answers_path(n)) for n in names}
    scores = {n: _scores(items, rows[n]) for n in names}
    keys = {str(i.key) for i in items}
    for n in names:
        mine = [r for k, r in rows[n].items() if k in keys]
        scores[n]["cost"] = _cost(mine)
        if n == "refine":
            scores[n]["repairs"] = _repairs(mine)
            firsts = [(r, rows["constraint"].get(k)) for k, r in rows[n].items() if k in keys]
            both = [{f: r.get(f, 0) + c.get(f, 0) for f in ("seconds", "rounds", "prompt_tokens", "completion_tokens")}
                    for r, c in firsts if c]
            scores[n]["cost"]["with_first_answer"] = _cost(both)
    pairs = [("constraint", "plain"), ("refine", "constraint")]
    g = run.generation
    results: dict[str, Any] = {
        "data": str(run.data),
        "items": len(items),
        "skipped_count": len(skipped),
        "skipped": [s.to_dict() for s in skipped],
        "settings": {n: {k: v for k, v in scores[n].items() if k != "flags"} for n in names},
        "paired": {f"{new} vs {base}": paired(scores[base], scores[new]) for new, base in pairs if new in names and base in names},
        "per_family": per_family(scores),
        "config": {"settings": list(names), "limit": run.limit, "refine_rounds": run.refine_rounds,
                   "max_new_tokens": run.max_new_tokens, "backend": g.backend.value, "model": g.model,
                   "temperature": g.temperature, "prompt_version": PROMPT_VERSION,
                   "answer_files": {n: str(run.answers_path(n)) for n in names}},
        "libraries": library_versions(),
        "machine": f"{platform.machine()}, python {platform.python_version()}",
        "plots": [],
    }
    run.out.mkdir(parents=True, exist_ok=True)
    title = f"FollowRAG {run.data.stem}: strict pass rate per instruction type ({len(items)} items)"
    chart = run.out / "per_family.png"
    if results["per_family"] and plot_per_family(results["per_family"], names, chart, title):
        results["plots"].append(chart.name)
    else:
        chart.unlink(missing_ok=True)  # an older chart would show other results
        if results["per_family"]:
            results["plots_skipped"] = PLOTS_SKIPPED
    with atomic_file(run.out / "results.json", "wb") as fh:
        fh.write(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    with atomic_file(run.out / "results.md") as fh:
        fh.write(_markdown(results))
    return results


def run_followrag(data: str | Path, out: str | Path, *, settings: Settings | None = None,
                  setups: str | Sequence[str] = SETTINGS, limit: int | None = None, refine_rounds: int = 2,
                  max_new_tokens: int = 256, progress: bool = True, generator: Generator | None = None,
                  generate: bool = True) -> dict[str, Any]:
    """Answer (unless ``generate`` is False) and report: ``OUT/results.json``, ``OUT/results.md``
    and ``OUT/per_family.png``; returns the results. ``setups``: which of :data:`SETTINGS`."""
    run = FollowRAGRun(Path(data), Path(out), parse_settings(setups), limit, refine_rounds, max_new_tokens,
                       (settings or Settings()).generation)
    if generate:
        generate_answers(run, generator=generator, progress=progress)
    return report_followrag(run)
