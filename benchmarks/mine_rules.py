"""Rule-mining benchmark: ICEWS14 train+valid (temporal) and FB15k-237 train (static).

    .venv/bin/python benchmarks/mine_rules.py [--data ../shared/data] [--only icews14|fb15k-237]

Each dataset is mined in a fresh child process so that its peak memory (max RSS) is its own.
Writes ``benchmarks/results/mine_rules.md`` (and ``.json``): load and mining wall time, peak
memory, rules by length, and the top rules of a few head relations. Default ``MineConfig``
(max_length=2, min_support=2, min_pairs=2, min_head_coverage=0.01, min_confidence=0.1, 50 rules per head).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

DATASETS = ("icews14", "fb15k-237")
SHOW_HEADS = 4  # top rules are shown for the most frequent head relations that have rules


def _read_tsv(path: Path, width: int) -> list[tuple]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != width:
            sys.exit(f"{path}:{lineno}: expected {width} tab-separated columns, got {len(cols)}")
        rows.append(tuple(cols))
    return rows


def load(name: str, data: Path):
    """The table to mine; uses rulerag.kg.loaders.load_kg when it exists, else parses the files."""
    from rulerag.kg import FactTable

    try:
        from rulerag.kg.loaders import load_kg  # written by another engineer; may not exist yet
    except ImportError:
        load_kg = None
    if load_kg is not None:
        ds = load_kg(name, data / "kg" / name)
        table = ds.train.concat(ds.valid) if name == "icews14" else ds.train
        return table, "rulerag.kg.loaders.load_kg"
    folder = data / "kg" / name
    if name == "icews14":
        rows = _read_tsv(folder / "train.txt", 4) + _read_tsv(folder / "valid.txt", 4)
        return FactTable.from_triples(rows, time_unit="day", name="icews14"), "train.txt + valid.txt parsed here"
    rows = _read_tsv(folder / "train.txt", 3)
    return FactTable.from_triples(rows, name="fb15k-237"), "train.txt parsed here"


def worker(name: str, data: Path) -> dict:
    from rulerag.rules.mine import MineConfig, mine_rules

    t0 = time.perf_counter()
    kg, source = load(name, data)
    t1 = time.perf_counter()
    cfg = MineConfig()
    rules = mine_rules(kg, cfg, progress=sys.stderr.isatty())
    t2 = time.perf_counter()
    by_len: dict[int, int] = {}
    for r in rules:
        by_len[r.length] = by_len.get(r.length, 0) + 1
    import numpy as np

    freq = np.bincount(kg.relation_ids, minlength=kg.num_relations)
    with_rules = {r.head.relation for r in rules}
    shown = [kg.relations[i] for i in np.argsort(-freq, kind="stable") if kg.relations[i] in with_rules][:SHOW_HEADS]
    top = {}
    for head in shown:
        top[head] = [{"rule": r.datalog, "support": r.support, "confidence": round(r.confidence, 3),
                      "head_coverage": round(r.head_coverage, 3),
                      "pca_confidence": None if r.pca_confidence is None else round(r.pca_confidence, 3)}
                     for r in rules if r.head.relation == head][:3]
    return {
        "dataset": name, "source": source, "temporal": kg.temporal, "facts": len(kg),
        "entities": kg.num_entities, "relations": kg.num_relations,
        "load_s": round(t1 - t0, 1), "mine_s": round(t2 - t1, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rules": len(rules), "rules_by_length": {str(k): v for k, v in sorted(by_len.items())},
        "heads_with_rules": len({r.head.relation for r in rules}), "config": asdict(cfg), "top": top,
    }


def render(results: list[dict], machine: str, command: str) -> str:
    header = ("| dataset | mode | facts | entities | relations | load (s) | mine (s) | peak RSS (MiB) | rules "
              "| length 1 | length 2 | heads with rules |")
    lines = [
        "# Rule mining (`rulerag.rules.mine`)", "",
        f"Produced by `benchmarks/mine_rules.py` on {dt.date.today().isoformat()}.", "",
        "```", command, "```", "",
        (f"Machine: {machine}. Each dataset is mined in its own child process; peak memory = that process's "
         "max RSS (Python, numpy, scipy and the loaded table included)."), "",
        ("Config: `MineConfig()` defaults: max_length=2, min_support=2, min_pairs=2, min_head_coverage=0.01, "
         "min_confidence=0.1, max_rules_per_head=50; temporal mining strict (body strictly before head)."), "",
        header, "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {'temporal' if r['temporal'] else 'static'} | {r['facts']:,} | {r['entities']:,} | "
            f"{r['relations']} | {r['load_s']} | {r['mine_s']} | {r['peak_rss_mib']} | {r['rules']:,} | "
            f"{r['rules_by_length'].get('1', 0):,} | {r['rules_by_length'].get('2', 0):,} | {r['heads_with_rules']} |")
    lines += ["", "- ICEWS14: train + valid (the RuleRAG corpus facts); FB15k-237: train.",
              ("- Measures: see the `rulerag.rules.mine` docstring (static: AMIE support, standard and PCA "
               "confidence, head coverage over distinct pairs; temporal: support = head facts preceded by a "
               "time-ordered body, confidence = body pairs followed by the head / body pairs).")]
    for r in results:
        lines += ["", f"## Top rules: {r['dataset']}", "",
                  (f"Loaded with {r['source']}. The {SHOW_HEADS} most frequent head relations that have rules, "
                   "3 best rules each (by confidence, then support)."), ""]
        lines += ["| head | rule | support | confidence | head coverage | PCA confidence |",
                  "|---|---|---|---|---|---|"]
        for head, rules in r["top"].items():
            for x in rules:
                pca = "-" if x["pca_confidence"] is None else x["pca_confidence"]
                lines.append(f"| `{head}` | `{x['rule']}` | {x['support']} | {x['confidence']} | "
                             f"{x['head_coverage']} | {pca} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--only", choices=DATASETS, default=None, help="one dataset (results are not written)")
    ap.add_argument("--worker", choices=DATASETS, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data)))
        return
    if not (args.data / "kg").is_dir():
        sys.exit(f"{args.data / 'kg'} not found. Fix: pass --data pointing at the shared data folder")
    results = []
    for name in [args.only] if args.only else DATASETS:
        print(f"mining {name} ...", file=sys.stderr)
        proc = subprocess.run([sys.executable, __file__, "--worker", name, "--data", str(args.data)],
                              stdout=subprocess.PIPE, check=True, text=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{name}: {r['rules']} rules in {r['mine_s']} s, peak {r['peak_rss_mib']} MiB", file=sys.stderr)
    if args.only:
        print(json.dumps(results, indent=1))
        return
    import numpy
    import scipy

    machine = (f"{platform.machine()} CPU, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"numpy {numpy.__version__}, scipy {scipy.__version__}")
    command = ".venv/bin/python benchmarks/mine_rules.py"
    out = HERE / "results" / "mine_rules"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "command": command, "results": results},
                                                   indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render(results, machine, command), encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
