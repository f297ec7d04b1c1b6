"""One LLM answer table from several ``rulerag bench run`` result folders, with paired tests.

    .venv/bin/python benchmarks/llm_table.py benchmarks/results/ruleqa-i-llm300-standard \\
        benchmarks/results/ruleqa-i-llm300 --out benchmarks/results/ruleqa-i-llm300-table

Each folder's ``results.json`` holds, per answer row (``retriever/mode/answerer``), the entity EM of
every question (``entity_em_flags``, in ``question_ids`` order). Runs on the same seeded sample are
paired question by question: every row is compared with the reasoner alone and with standard RAG
(``*/standard/llm``) by an exact McNemar test. Rows with other question samples are refused.
Writes ``OUT.md`` and ``OUT.json``.

With ``--summary``, the arguments are such tables' JSON files, one per set (named
``ruleqa-<set>-...-table.json``), and the output is one table across the sets with the issue's
targets checked per set: grounded paths or RuleRAG-ICL at least match standard RAG; the best LLM
setting at least matches the reasoner alone, and beats it (more questions won than lost, p < 0.05)::

    .venv/bin/python benchmarks/llm_table.py --summary benchmarks/results/ruleqa-*-llm300-table.json \
        --out benchmarks/results/llm300-summary
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rulerag.bench.runner import mcnemar
from rulerag.io import atomic_file

LABELS = {"llm": "LLM", "reasoner": "reasoner alone (no LM)", "llm+reasoner": "LLM + reasoner candidates",
          "llm+paths": "LLM + grounded rule paths", "llm-score": "reasoner + LLM candidate scoring"}


def label(key: str) -> str:
    retriever, mode, answerer = key.split("/")
    if answerer == "llm":
        return "standard RAG" if mode == "standard" else "RuleRAG-ICL"
    return f"{LABELS.get(answerer, answerer)} ({mode})"


def build(folders: list[Path]) -> dict:
    ids, flags, sources = None, {}, {}
    for folder in folders:
        data = json.loads((folder / "results.json").read_text())
        if "entity_em_flags" not in data:
            raise SystemExit(f"{folder}/results.json has no per-question flags: rerun its `rulerag bench run` (answers are cached)")
        if ids is None:
            ids = data["question_ids"]
        elif data["question_ids"] != ids:
            raise SystemExit(f"{folder} was run on other questions than {folders[0]}: use the same --limit and --seed")
        for key, values in data["entity_em_flags"].items():
            flags[key], sources[key] = values, str(folder)
    reasoner = next((k for k in flags if k.endswith("/rulerag/reasoner")), None)
    standard = next((k for k in flags if k.endswith("/standard/llm")), None)
    rows = []
    for key, values in flags.items():
        row = {"setting": key, "label": label(key), "entity_em": 100 * sum(values) / len(values), "source": sources[key]}
        for name, ref in (("vs_reasoner", reasoner), ("vs_standard_rag", standard)):
            if ref is not None and ref != key:
                row[name] = mcnemar(flags[ref], values)
        rows.append(row)
    return {"questions": len(ids or []), "reasoner": reasoner, "standard_rag": standard, "rows": rows}


def markdown(table: dict, command: str) -> str:
    def test(t):
        return "-" if t is None else f"{t['a_only']} / {t['b_only']}, p = {t['p_value']:.2g}"

    lines = [f"# LLM answers: {table['questions']} questions, entity EM in %", "", f"`{command}`", "",
             "won/lost = questions only the reference / only this setting answers right (exact McNemar).", "",
             "| setting | entity EM | vs reasoner alone (ref right only / this right only) | vs standard RAG |",
             "|---|---|---|---|"]
    for r in sorted(table["rows"], key=lambda r: r["entity_em"]):
        lines.append(f"| {r['label']} | {r['entity_em']:.1f} | {test(r.get('vs_reasoner'))} | {test(r.get('vs_standard_rag'))} |")
    return "\n".join(lines) + "\n"


#: Rows of the summary, by answerer and mode; the LLM settings are the ones that may "beat the reasoner".
SUMMARY_ROWS = (("hybrid/standard/llm", "standard RAG"), ("hybrid/rulerag/llm", "RuleRAG-ICL (abstract rules in the prompt)"),
                ("hybrid/rulerag/llm+paths", "LLM + grounded rule paths"), ("hybrid/rulerag/reasoner", "reasoner alone (no LM)"),
                ("hybrid/rulerag/llm-score", "reasoner + LLM candidate scoring"))
LLM_SETTINGS = ("hybrid/rulerag/llm", "hybrid/rulerag/llm+paths", "hybrid/rulerag/llm-score")
ALPHA = 0.05


def _set_name(path: Path) -> str:
    return path.name.split("-llm")[0]


def summarise_sets(tables: dict[str, dict]) -> dict:
    """One row per setting across the sets, and the targets per set (see the module docstring)."""
    sets = {}
    for name, table in tables.items():
        rows = {r["setting"]: r for r in table["rows"]}
        # the rule-guided run's reasoner is the reference ("reasoner alone"); standard/reasoner is the same answers
        std = rows.get("hybrid/standard/llm")
        rule_llm = [rows[k] for k in ("hybrid/rulerag/llm", "hybrid/rulerag/llm+paths") if k in rows]
        best = max((rows[k] for k in LLM_SETTINGS if k in rows), key=lambda r: r["entity_em"], default=None)
        reasoner = rows.get("hybrid/rulerag/reasoner")
        target = {"questions": table["questions"]}
        if std and rule_llm:
            top = max(rule_llm, key=lambda r: r["entity_em"])
            target["rule_prompt_matches_standard"] = top["entity_em"] >= std["entity_em"]
            target["rule_prompt_setting"] = top["setting"]
        if best and reasoner:
            t = best.get("vs_reasoner", {"a_only": 0, "b_only": 0, "p_value": 1.0})
            target["best_llm_setting"] = best["setting"]
            target["best_llm_matches_reasoner"] = best["entity_em"] >= reasoner["entity_em"]
            target["best_llm_beats_reasoner"] = t["b_only"] > t["a_only"] and t["p_value"] < ALPHA
        sets[name] = {"rows": rows, "targets": target}
    return {"sets": sets, "beats_reasoner_on": sorted(n for n, s in sets.items() if s["targets"].get("best_llm_beats_reasoner"))}


def summary_markdown(summary: dict, command: str) -> str:
    names = sorted(summary["sets"])
    cols = " | ".join(f"RuleQA-{n.removeprefix('ruleqa-').upper()}" for n in names)
    lines = ["# LLM answers on the RuleQA sets: entity EM in %", "", f"`{command}`", "",
             "Per set the same seeded question sample for every setting (hybrid retrieval, Qwen2.5-Coder-0.5B on llama.cpp). "
             "In brackets: questions won / lost against the reference and the exact McNemar p; the reference is standard RAG "
             "for RuleRAG-ICL and grounded paths, the reasoner alone for candidate scoring. Per-set tables: "
             + ", ".join(f"`{n}-llm300-table.md`" for n in names) + ".", "",
             f"| setting | {cols} |", "|---|" + "---|" * len(names)]

    def cell(name: str, key: str) -> str:
        row = summary["sets"][name]["rows"].get(key)
        if row is None:
            return "not run"
        ref = "vs_reasoner" if key == "hybrid/rulerag/llm-score" else ("vs_standard_rag" if key in LLM_SETTINGS else None)
        t = row.get(ref) if ref else None
        return f"{row['entity_em']:.1f}" + (f" ({t['b_only']} / {t['a_only']}, p = {t['p_value']:.2g})" if t else "")

    for key, text in SUMMARY_ROWS:
        lines.append(f"| {text} | " + " | ".join(cell(n, key) for n in names) + " |")
    lines += ["", "Targets (issue #19):", "", f"| target | {cols} |", "|---|" + "---|" * len(names)]
    yes = {True: "yes", False: "**no**", None: "-"}
    for key, text in (("rule_prompt_matches_standard", "rule guidance in the prompt (best of ICL, grounded paths) >= standard RAG"),
                      ("best_llm_matches_reasoner", "best LLM setting >= reasoner alone"),
                      ("best_llm_beats_reasoner", f"best LLM setting beats the reasoner (p < {ALPHA})")):
        lines.append(f"| {text} | " + " | ".join(yes[summary['sets'][n]['targets'].get(key)] for n in names) + " |")
    won = summary["beats_reasoner_on"]
    lines += ["", f"The best LLM setting beats the reasoner significantly on {len(won)} of {len(names)} sets"
              + (f" ({', '.join(won)})" if won else "") + "; the target is at least 3 of 5."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path,
                    help="result folders of `rulerag bench run` on the same questions (with --summary: per-set table JSON files)")
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .json are written)")
    ap.add_argument("--summary", action="store_true", help="one table across sets from per-set table JSON files")
    args = ap.parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/llm_table.py", *sys.argv[1:]]) if argv is None else "llm_table"
    if args.summary:
        missing = [str(p) for p in args.folders if not p.is_file()]
        if missing:
            raise SystemExit(f"not a table file: {', '.join(missing)}. Fix: pass the ruleqa-<set>-...-table.json files llm_table.py wrote")
        table = summarise_sets({_set_name(p): json.loads(p.read_text()) for p in args.folders})
        text = summary_markdown(table, command)
    else:
        table = build(args.folders)
        text = markdown(table, command)
    with atomic_file(args.out.with_suffix(".json")) as fh:
        json.dump(table, fh, indent=2)
    with atomic_file(args.out.with_suffix(".md")) as fh:
        fh.write(text)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
