"""Beyond one machine, simulated: split an index into shards, search each, merge. Is the merged
top k the unsharded one, and what does a query cost when the shards run in parallel?

    .venv/bin/python benchmarks/shard_merge.py --bench ~/rulerag-data/ruleqa-f [--shards 4] [--limit 500] [--depth 200]

The benchmark's index is split into ``--shards`` contiguous shards, as a cluster would hold them:
BM25 shards scoring with the corpus-wide statistics (:class:`rulerag.retrieval.shards.ShardedBM25`)
and exact FAISS shards of the stored vectors (:class:`~rulerag.retrieval.shards.ShardedDenseIndex`).
For each question (one query, ``--depth`` hits) the shards are searched one after another on this
machine, each timed; the latency of a cluster that searches them in parallel is estimated as the
slowest shard plus the merge (network time not included). Reported: the merged lists equal to the
unsharded ones (BM25 and dense), and per-query times: unsharded, the slowest shard, the merge.
Writes ``--out``.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from rulerag.config import GpuPolicy, IndexSettings  # noqa: E402
from rulerag.retrieval.index import load_index  # noqa: E402
from rulerag.retrieval.shards import ShardedBM25, ShardedDenseIndex, canonical_order, top_k  # noqa: E402

HERE = Path(__file__).resolve().parent


def ms(values: list[float]) -> dict[str, float]:
    return {"mean": round(1000 * statistics.fmean(values), 3), "p50": round(1000 * statistics.median(values), 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, required=True, help="a built benchmark directory with index/ (flat FAISS)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--limit", type=int, default=500, help="questions (the first N)")
    ap.add_argument("--depth", type=int, default=200, help="hits per list (what rule-guided retrieval asks for)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "shard_merge")
    args = ap.parse_args(argv)
    index = load_index(args.bench / "index", index_settings=IndexSettings(gpu=GpuPolicy.never))
    questions = [json.loads(line)["question"] for line in (args.bench / "questions.jsonl").read_text(encoding="utf-8").splitlines()
                 if line.strip()][: args.limit]
    t = time.perf_counter()
    bm25_shards = ShardedBM25.build([d.contents for d in index.docs], num_shards=args.shards)
    build_bm25_s = time.perf_counter() - t
    vectors = index.dense.stored_vectors()
    one = ShardedDenseIndex.build(vectors, num_shards=1)  # canonical tie order, as the shards merge
    dense_shards = ShardedDenseIndex.build(vectors, num_shards=args.shards)
    del vectors
    query_vectors = index.encoder().encode(questions)  # the model the index was built with

    same = {"bm25": 0, "dense": 0}
    times: dict[str, list[float]] = {k: [] for k in ("bm25_unsharded", "bm25_slowest", "bm25_merge", "dense_unsharded", "dense_slowest", "dense_merge")}
    for q, vec in zip(questions, query_vectors):
        t = time.perf_counter()
        whole = index.bm25.search([q], args.depth)
        times["bm25_unsharded"].append(time.perf_counter() - t)
        parts, slowest = [], 0.0
        for i in range(len(bm25_shards.shards)):
            t = time.perf_counter()
            parts.append(bm25_shards.shard_hits(i, [q], args.depth))
            slowest = max(slowest, time.perf_counter() - t)
        t = time.perf_counter()
        merged = ShardedBM25.merge(parts, args.depth)
        times["bm25_merge"].append(time.perf_counter() - t)
        times["bm25_slowest"].append(slowest)
        same["bm25"] += merged == whole

        v = vec[None, :].astype(np.float32)
        t = time.perf_counter()
        whole_d = one.search_arrays(v, args.depth)
        times["dense_unsharded"].append(time.perf_counter() - t)
        got_s, got_i, slowest = [], [], 0.0
        for shard, offset in zip(dense_shards.shards, dense_shards.offsets):
            t = time.perf_counter()
            s, ids = top_k(shard.index, v, min(args.depth, shard.size))
            slowest = max(slowest, time.perf_counter() - t)
            got_s.append(s)
            got_i.append(np.where(ids >= 0, ids + offset, -1))
        t = time.perf_counter()
        merged_d = canonical_order(np.concatenate(got_s, axis=1), np.concatenate(got_i, axis=1), args.depth)
        times["dense_merge"].append(time.perf_counter() - t)
        times["dense_slowest"].append(slowest)
        same["dense"] += bool(np.array_equal(merged_d[1], whole_d[1]) and np.array_equal(merged_d[0], whole_d[0]))

    n = len(questions)
    result = {"bench": args.bench.name, "documents": len(index.docs), "shards": args.shards, "questions": n, "depth": args.depth,
              "same": same, "times_ms": {k: ms(v) for k, v in times.items()}, "bm25_shard_build_s": round(build_bm25_s, 1),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}", "load": os.getloadavg(),
              "command": f"python benchmarks/shard_merge.py --bench {args.bench} --shards {args.shards} --limit {args.limit} --depth {args.depth}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tm = result["times_ms"]
    lines = [f"# Sharded search, simulated: {result['bench']} in {args.shards} shards", "",
             f"`{result['command']}` ({result['machine']}; one thread; load average {result['load'][0]:.1f} from other jobs). "
             f"{len(index.docs):,} documents, {n:,} questions, one query each, {args.depth} hits per list.", "",
             "| | merged = unsharded (documents and scores, in order) | unsharded ms (mean / p50) | slowest shard ms | merge ms | "
             "parallel estimate: slowest + merge (mean) |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in ("bm25", "dense"):
        est = tm[f"{kind}_slowest"]["mean"] + tm[f"{kind}_merge"]["mean"]
        lines.append(f"| {'BM25' if kind == 'bm25' else 'dense (exact FAISS)'} | {same[kind]:,} / {n:,} | "
                     f"{tm[f'{kind}_unsharded']['mean']:.2f} / {tm[f'{kind}_unsharded']['p50']:.2f} | "
                     f"{tm[f'{kind}_slowest']['mean']:.2f} / {tm[f'{kind}_slowest']['p50']:.2f} | {tm[f'{kind}_merge']['mean']:.3f} | {est:.2f} |")
    lines += ["", "Network time between the shards and the merger is not included; on one machine the shards run one after "
              "another, so only their slowest is counted as a cluster would see it.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
