"""Growing an index: is `rulerag index add` cheap, and does it give what a fresh build gives?

    .venv/bin/python benchmarks/index_update.py --bench ~/rulerag-data/ruleqa-i [--share 0.01] [--seed 0]
        [--out benchmarks/results/index_update]

On a RuleQA benchmark directory (``rulerag bench build``): a seeded ``--share`` of its corpus is
held out; the script builds

1. a **fresh index** of the whole corpus (the held-out documents last, the order an update
   gives), timed: the reference build;
2. a **base index** of the rest (its vectors taken from the fresh build: its time is not measured);

then **adds** the held-out documents to the base index with ``rulerag index add`` (timed as a
user runs it, a new process: the target is under 10% of the fresh ``rulerag index build``),
and compares, for every benchmark question, the BM25 top 10 and the flat-FAISS top 10 of the
grown index with the fresh one's. Then it **removes** them again (``rulerag index remove``,
timed) and compares with the base index. Writes ``--out``.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from rulerag.config import IndexSettings, Settings  # noqa: E402
from rulerag.corpus import read_corpus  # noqa: E402
from rulerag.retrieval.index import build_index, load_index, make_encoder  # noqa: E402

HERE = Path(__file__).resolve().parent


class Recorded:
    """An encoder that returns vectors already computed for these texts (the base build)."""

    def __init__(self, model_name: str, vectors: dict[str, np.ndarray]) -> None:
        self.model_name = model_name
        self.vectors = vectors

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


def cli(*args: object) -> float:
    """Seconds a `rulerag ...` command takes as a user runs it (a new process: start-up and model load included)."""
    exe = Path(sys.executable).with_name("rulerag")
    t = time.perf_counter()
    subprocess.run([str(exe), *map(str, args)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def top10(path: Path, questions: list[str], query_vectors: np.ndarray) -> tuple[list[list[str]], list[list[str]]]:
    index = load_index(path)
    ids = [d.id for d in index.docs]
    bm25 = [[ids[h.pos] for h in hits] for hits in index.bm25.search(questions, 10)]
    dense = [[ids[h.pos] for h in hits] for hits in index.dense.search(query_vectors, 10)]
    return bm25, dense


def compare(a: tuple, b: tuple) -> dict[str, int]:
    return {"bm25_same": sum(x == y for x, y in zip(a[0], b[0])), "dense_same": sum(x == y for x, y in zip(a[1], b[1])),
            "dense_same_set": sum(set(x) == set(y) for x, y in zip(a[1], b[1]))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, required=True, help="a RuleQA benchmark directory (corpus.jsonl, questions.jsonl)")
    ap.add_argument("--share", type=float, default=0.01, help="share of the corpus to add (default 1%%)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed after)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "index_update")
    args = ap.parse_args(argv)
    corpus = args.bench / "corpus.jsonl"
    if not corpus.is_file():
        sys.exit(f"{corpus} not found. Fix: rulerag bench build ruleqa-i --out {args.bench}")
    work = args.work or Path(tempfile.mkdtemp(prefix="index-update-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(index=IndexSettings(faiss_type="flat"))
    try:
        docs = read_corpus(corpus)
        held = set(random.Random(args.seed).sample(range(len(docs)), max(1, round(args.share * len(docs)))))
        base = [d for i, d in enumerate(docs) if i not in held]
        extra = [d for i, d in enumerate(docs) if i in held]
        for name, part in (("all", base + extra), ("base", base), ("extra", extra)):
            (work / f"{name}.jsonl").write_bytes(b"".join(orjson.dumps(d.to_dict()) + b"\n" for d in part))
        (work / "extra-ids.txt").write_text("".join(f"{d.id}\n" for d in extra), encoding="utf-8")

        fresh_s = cli("index", "build", "--corpus", work / "all.jsonl", "--out", work / "fresh", "--faiss-type", "flat", "-q")
        fresh = load_index(work / "fresh")
        vectors = fresh.dense.stored_vectors()
        recorded = Recorded(fresh.manifest.embedding_model, {d.contents: v for d, v in zip(fresh.docs, vectors)})
        build_index(work / "base.jsonl", work / "grown", settings, progress=False, encoder=recorded)
        shutil.copytree(work / "grown", work / "base-copy")

        add_s = cli("index", "add", "--index", work / "grown", "--corpus", work / "extra.jsonl", "-q")
        added = load_index(work / "grown").manifest

        questions = [json.loads(line)["question"] for line in (args.bench / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        query_vectors = make_encoder(settings).encode(questions)
        after_add = compare(top10(work / "grown", questions, query_vectors), top10(work / "fresh", questions, query_vectors))

        remove_s = cli("index", "remove", "--index", work / "grown", "--ids", work / "extra-ids.txt")
        after_remove = compare(top10(work / "grown", questions, query_vectors), top10(work / "base-copy", questions, query_vectors))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    n = len(questions)
    result = {"bench": str(args.bench.name), "documents": len(docs), "added": len(extra), "questions": n,
              "fresh_build_s": round(fresh_s, 2), "add_s": round(add_s, 2), "add_share_of_build": round(add_s / fresh_s, 4),
              "add_timings": {k: round(v, 3) for k, v in added.updates[-1]["timings"].items()},
              "remove_s": round(remove_s, 2), "after_add": after_add, "after_remove": after_remove,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
              "command": f"python benchmarks/index_update.py --bench {args.bench} --share {args.share} --seed {args.seed}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in result["add_timings"].items())
    lines = [
        f"# Growing an index: {result['bench']}", "",
        f"`{result['command']}` ({result['machine']}; flat FAISS, the packaged MiniLM encoder; each command timed as a "
        "new process, start-up and model load included).", "",
        "| | seconds | share of the fresh build |", "|---|---:|---:|",
        f"| `rulerag index build` of all {len(docs):,} documents | {fresh_s:.1f} | 100% |",
        f"| `rulerag index add` of {len(extra):,} documents ({100 * args.share:g}%) to an index of the rest | {add_s:.1f} | "
        f"**{100 * add_s / fresh_s:.1f}%** |",
        f"| `rulerag index remove` of the same documents | {remove_s:.1f} | {100 * remove_s / fresh_s:.1f}% |", "",
        f"Where the add's time goes: {steps}.", "",
        f"Same top 10 as the fresh build, over all {n:,} questions: BM25 {after_add['bm25_same']:,} / {n:,}, flat FAISS "
        f"{after_add['dense_same']:,} / {n:,} (same set of 10: {after_add['dense_same_set']:,}). After removing them again, "
        f"against the index of the rest: BM25 {after_remove['bm25_same']:,} / {n:,}, flat FAISS {after_remove['dense_same']:,} / {n:,}.", "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
