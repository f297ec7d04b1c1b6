"""Index-build benchmark on the ICEWS14 corpus (train + valid = 77,508 linearised facts).

    .venv/bin/python benchmarks/index_build.py [--data ../shared/data] [--limit N]

Writes ``benchmarks/results/index_build.md`` (and ``.json``): total time, the split into
embedding / BM25 / FAISS / writing, docs/s, peak memory (max RSS of this process) and index size.
The corpus and index go to a temporary directory outside git and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rulerag.config import load_settings  # noqa: E402
from rulerag.corpus import Document, linearise_fact, write_corpus  # noqa: E402
from rulerag.retrieval.index import build_index, library_versions  # noqa: E402

HERE = Path(__file__).resolve().parent


def icews14_corpus(data: Path, limit: int | None = None) -> list[Document]:
    """ICEWS14 train + valid, linearised as ``Time DATE Subject Relation Object.``"""
    docs = []
    for split in ("train", "valid"):
        path = data / "kg" / "icews14" / f"{split}.txt"
        if not path.is_file():
            sys.exit(f"{path} not found. Fix: pass --data pointing at the shared data folder")
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            s, r, o, t = (x.replace("_", " ") for x in line.split("\t"))
            docs.append(Document(f"icews14-{split}-{lineno}", linearise_fact(s, r, o, t)))
    return docs[:limit] if limit else docs


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=None, help="only the first N documents (smoke runs; not written to results)")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    docs = icews14_corpus(args.data, args.limit)
    settings = load_settings(overrides={"embedding": {"batch_size": args.batch_size}})
    with tempfile.TemporaryDirectory(prefix="rulerag-bench-") as tmp:
        corpus = Path(tmp) / "icews14.jsonl"
        write_corpus(docs, corpus)
        t0 = time.perf_counter()
        manifest = build_index(corpus, Path(tmp) / "index", settings, progress=True)
        total = time.perf_counter() - t0
        size = dir_size(Path(tmp) / "index")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = manifest.timings
    non_embedding = total - t["embedding"]
    result = {
        "documents": manifest.num_docs,
        "total_s": round(total, 1),
        "timings_s": t,
        "docs_per_s": round(manifest.num_docs / total, 1),
        "non_embedding_share": round(non_embedding / total, 4),
        "peak_rss_mb": round(peak_mb),
        "index_size_mb": round(size / 2**20, 1),
        "embedding_model": manifest.embedding_model,
        "batch_size": args.batch_size,
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
        "libraries": library_versions(),
        "date": dt.date.today().isoformat(),
    }
    print(json.dumps(result, indent=2))
    if args.limit:
        return
    (HERE / "results" / "index_build.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("documents", f"{manifest.num_docs:,}"),
        ("total", f"{total:.1f} s"),
        ("embedding", f"{t['embedding']:.1f} s ({t['embedding'] / total:.1%})"),
        ("BM25 (bm25s)", f"{t['bm25']:.1f} s ({t['bm25'] / total:.1%})"),
        ("FAISS (flat IP)", f"{t['faiss']:.2f} s ({t['faiss'] / total:.1%})"),
        ("writing", f"{t['writing']:.1f} s ({t['writing'] / total:.1%})"),
        ("reading + checksums", f"{t['read']:.1f} s ({t['read'] / total:.1%})"),
        ("embedding model load", f"{t['model_load']:.1f} s ({t['model_load'] / total:.1%})"),
        ("everything except embedding", f"{non_embedding:.1f} s ({non_embedding / total:.1%}; target < 20%)"),
        ("throughput", f"{manifest.num_docs / total:.0f} docs/s"),
        ("peak memory (max RSS)", f"{peak_mb:,.0f} MB"),
        ("index size on disk", f"{size / 2**20:,.1f} MB"),
    ]
    md = [
        "# Index build: ICEWS14 corpus (train + valid)",
        "",
        f"Measured {result['date']} on {result['machine']}; embedding model {manifest.embedding_model} "
        f"(batch {args.batch_size}), FAISS flat inner product, bm25s.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/index_build.py` (reads `../shared/data/kg/icews14`).",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in result["libraries"].items()),
        "",
    ]
    (HERE / "results" / "index_build.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
