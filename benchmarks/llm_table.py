"""One LLM answer table from several ``rulerag bench run`` result folders, with paired tests.

    .venv/bin/python benchmarks/llm_table.py benchmarks/results/ruleqa-i-llm300-standard \\
        benchmarks/results/ruleqa-i-llm300 --out benchmarks/results/ruleqa-i-llm300-table

Each folder's ``results.json`` holds, per answer row (``retriever/mode/answerer``), the entity EM of
every question (``entity_em_flags``, in ``question_ids`` order). Runs on the same seeded sample are
paired question by question: every row is compared with the reasoner alone and with standard RAG
(``*/standard/llm``) by an exact McNemar test. Rows with other question samples are refused.
Writes ``OUT.md`` and ``OUT.json``.
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="result folders of `rulerag bench run` on the same questions")
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .json are written)")
    args = ap.parse_args(argv)
    table = build(args.folders)
    command = " ".join([".venv/bin/python", "benchmarks/llm_table.py", *sys.argv[1:]]) if argv is None else "llm_table"
    with atomic_file(args.out.with_suffix(".json")) as fh:
        json.dump(table, fh, indent=2)
    with atomic_file(args.out.with_suffix(".md")) as fh:
        fh.write(markdown(table, command))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
