"""Dense-index scale benchmark: exact, IVF, HNSW and IVF-PQ FAISS indexes on a RuleQA corpus.

    .venv/bin/python benchmarks/index_scale.py --bench /tmp/ruleqa/ruleqa-w --limit-docs 60000 --threads 1 --synthetic-full

Steps (everything large goes to ``--work``, default ``/tmp/rulerag-scale/<bench>``, outside git):

1. **Embed** the first ``--limit-docs`` documents (all without it) once, in checkpointed chunks
   (``emb/<model>/chunk-NNNNNNNNN-SIZE.npy`` plus a JSON sidecar with the texts' SHA-256 and the
   time taken), so an interrupted run resumes and a longer run reuses a shorter one's chunks.
   ``--vectors-from-index DIR`` fills the missing chunks instead from the vectors a flat index of
   the same corpus stores (``rulerag index build``; no re-embedding); their time is the index
   build's (its manifest's ``timings.embedding``, prorated by documents), and the report says so.
   ``--calibrate-docs`` documents are encoded again to time the rate in wall and CPU seconds.
   The query side: ``--questions`` seeded questions, each with its rule-guided query batch (the
   question plus one ``body`` query per rule of the question's relation, at most 3: the
   retriever's defaults), encoded once; the encoding time of each batch is measured too.
2. **Build** every index variant (``--kinds``: ``VARIANTS`` below) at two corpus sizes (half the
   prefix, and the prefix), each in a fresh subprocess, so its peak RSS (``ru_maxrss``: vectors +
   index + Python) is its own. Build time (wall and CPU) covers training and adding; the file is
   then written and its size taken.
3. **Load and query** each index in a fresh subprocess, read normally and memory-mapped: load
   time, RSS after loading, the first query batch, then ``DenseIndex.search`` of every
   question's query batch at depth 50 (what rule-guided retrieval asks for): p50 / p95 latency
   (wall and CPU) and Recall@10 against exact search (the share of each query's exact top 10 that
   the index returns in its top 10). At the largest size the search knobs are swept.
4. **Extrapolate** to the whole corpus (``--full-docs``, default: the corpus's line count):
   sizes and memory linearly (``a + b n`` through the two sizes), times and latencies by the power
   law through the two sizes (``c n^alpha``, which follows IVF's sqrt(n) and flat's n), and
   the total build time as embedding (at the calibrated rate) + FAISS. Extrapolated numbers are
   labelled as such in the output.
5. With ``--synthetic-full``, **measure FAISS at the full size** on synthetic vectors (the real
   ones plus noisy copies): size, memory, build and query times at the real n, no embedding.

Every subprocess's result is cached in ``WORK/measurements`` (``--fresh`` ignores it), so an
interrupted run resumes where it stopped. ``--threads 1`` is advised on cores shared with other
jobs: OpenMP with 2 threads on oversubscribed cores was up to 5x slower here; CPU-time columns then
show an idle core's time. Writes ``benchmarks/results/index_scale_<bench>.json`` and ``.md``
(``--out``). Load times are for a fresh process with the file in the OS page cache (dropping the
cache would disturb the other jobs on the machine); the first-batch column shows the cost of
faulting pages in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
#: index variants measured: name -> IndexSettings overrides (defaults otherwise)
VARIANTS: dict[str, dict[str, Any]] = {
    "flat": {"faiss_type": "flat"},
    "ivf": {"faiss_type": "ivf"},
    "hnsw": {"faiss_type": "hnsw"},
    "ivfpq": {"faiss_type": "ivfpq"},
    "ivfpq-refine4": {"faiss_type": "ivfpq", "ivfpq_refine": 4},
}
KINDS = tuple(VARIANTS)
DEPTH = 50  # RetrievalSettings().depth: candidates per query list
RECALL_K = 10
SWEEPS: dict[str, tuple[str, list[int]]] = {
    "ivf": ("ivf_nprobe", [8, 16, 32, 64]),
    "ivfpq": ("ivf_nprobe", [8, 16, 32, 64]),
    "hnsw": ("hnsw_ef_search", [64, 128, 256]),
}


# ---------------------------------------------------------------------------------------------
# helpers


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def read_prefix(corpus: Path, n: int | None) -> list[str]:
    """The ``contents`` of the first ``n`` documents (all when ``n`` is None), in corpus order."""
    import orjson

    texts = []
    with open(corpus, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if n is not None and len(texts) >= n:
                break
            if line.strip():
                try:
                    texts.append(orjson.loads(line)["contents"])
                except (orjson.JSONDecodeError, KeyError) as exc:
                    sys.exit(f"{corpus}:{lineno}: not a corpus line with 'contents' ({exc})")
    return texts


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def texts_sha(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


THREADS: dict[str, int | None] = {"n": None}  # --threads, passed to every subprocess
CACHE: dict[str, Path | None] = {"dir": None}  # measurements already taken (resume); None with --fresh
REUSED: list[str] = []  # measurements taken from the cache in this run


def cache_path(key: str) -> Path:
    assert CACHE["dir"] is not None
    return CACHE["dir"] / f"{key}-t{THREADS['n'] or 0}.json"


def measured(key: str, args: list[str]) -> dict[str, Any]:
    """A subcommand's result, taken from the measurement cache when this run (or an interrupted
    one) already has it, else run and stored there."""
    path = cache_path(key) if CACHE["dir"] else None
    if path is not None and path.is_file():
        REUSED.append(key)
        return json.loads(path.read_text())
    result = child(args)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, result)
    return result


def child(args: list[str]) -> dict[str, Any]:
    """Run this script's subcommand in a fresh interpreter; its last stdout line is JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    env = dict(os.environ)
    if THREADS["n"]:
        env["OMP_NUM_THREADS"] = str(THREADS["n"])  # FAISS and torch (both OpenMP) in the child
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"subprocess failed ({proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def power_law(n1: float, y1: float, n2: float, y2: float, n: float) -> tuple[float, float]:
    """``c n^alpha`` through two points, evaluated at ``n``; returns (value, alpha)."""
    if min(y1, y2) <= 0 or n1 == n2:  # too small to time: fall back to a straight line
        return max(0.0, linear(n1, y1, n2, y2, n)), float("nan")
    alpha = math.log(y2 / y1) / math.log(n2 / n1)
    return y2 * (n / n2) ** alpha, alpha


def linear(n1: float, y1: float, n2: float, y2: float, n: float) -> float:
    """``a + b n`` through two points, evaluated at ``n``."""
    return y2 + (y2 - y1) / (n2 - n1) * (n - n2)


# ---------------------------------------------------------------------------------------------
# subcommand: embed (documents in checkpointed chunks, then the query batches)


def chunk_done(meta_path: Path, part: list[str]) -> bool:
    """Whether the chunk whose sidecar is ``meta_path`` holds the vectors of the texts ``part``."""
    return meta_path.is_file() and json.loads(meta_path.read_text()).get("sha256") == texts_sha(part)


def open_index_vectors(index_dir: Path, corpus: Path, texts: list[str]) -> tuple[Any, Any]:
    """The memory-mapped FAISS index and the manifest of ``index_dir`` (``--vectors-from-index``),
    after checking that its stored vectors are exact, from the benchmark's model, and those of
    ``texts`` (the corpus prefix) in the same order; exits with the fix otherwise."""
    from rulerag.config import DEFAULT_EMBEDDING_MODEL, IndexSettings
    from rulerag.corpus import file_sha256
    from rulerag.errors import IndexLoadError
    from rulerag.retrieval.index import DENSE, DOCS, check_encoder, check_files, load_dense, read_manifest

    import orjson

    flag = f"--vectors-from-index {index_dir}"
    build = f"`rulerag index build --corpus {corpus} --out DIR` (flat is its default)"
    try:
        manifest = read_manifest(index_dir)
    except IndexLoadError as exc:
        sys.exit(f"{flag}: {exc}")
    if manifest.embedding_model is None:
        sys.exit(f"{flag}: a BM25-only index (built with --no-dense) has no document vectors. "
                 f"Fix: pass a flat dense index of this corpus, built with {build}, or drop the flag")
    if manifest.faiss_type != "flat":
        sys.exit(f"{flag}: a {manifest.faiss_type} index; only a flat index returns the exact vectors the benchmark needs. "
                 f"Fix: pass a flat index of this corpus, e.g. `rulerag index convert --index {index_dir} --out "
                 f"{index_dir}-flat --faiss-type flat` (no re-embedding from hnsw, ivf or ivfpq with ivfpq_refine), or drop the flag")
    if manifest.embedding_model != DEFAULT_EMBEDDING_MODEL:
        sys.exit(f"{flag}: its vectors come from embedding model {manifest.embedding_model!r}, the benchmark embeds with "
                 f"{DEFAULT_EMBEDDING_MODEL!r}. Fix: pass an index built with {build} and the default --embedding-model, or drop the flag")
    if manifest.num_docs < len(texts):
        sys.exit(f"{flag}: the index holds {manifest.num_docs:,} documents, the benchmark needs the first {len(texts):,}. "
                 f"Fix: pass --limit-docs {manifest.num_docs} or an index of the whole corpus, built with {build}")
    try:
        check_encoder(index_dir, manifest)  # the model's files still have the fingerprint recorded at build time
        check_files(index_dir, manifest, verify=True)  # docs.jsonl and dense.faiss are read below only once they match
    except IndexLoadError as exc:
        sys.exit(f"{flag}: {exc}")
    if manifest.corpus_sha256 != file_sha256(corpus):  # not built from this very file: compare the prefix's documents
        with open(index_dir / DOCS, "rb") as fh:
            for pos, (line, text) in enumerate(zip(fh, texts)):
                doc = orjson.loads(line)
                if doc.get("contents") != text:
                    sys.exit(f"{flag}: its documents are not the corpus's: document {pos:,} (id {doc.get('id')!r}) of "
                             f"{index_dir / DOCS} differs from line {pos + 1:,} of {corpus} (the index was built from "
                             f"{manifest.corpus_path}, SHA-256 {manifest.corpus_sha256[:12]}). Fix: pass an index of this "
                             f"corpus, built with {build}, or drop the flag")
    try:  # size and dimension against the manifest, as `rulerag index convert` checks them
        dense = load_dense(index_dir, manifest, IndexSettings(gpu="never"), mmap=True)  # vectors paged in per chunk
    except IndexLoadError as exc:
        sys.exit(f"{flag}: {exc}")
    if dense.params()["type"] != "flat":
        sys.exit(f"{flag}: {index_dir / DENSE} is a {dense.params()['type']} index, the manifest says flat. "
                 f"Fix: rebuild the index with {build} --overwrite")
    return dense.cpu_index, manifest


def fill_from_index(index_dir: Path, corpus: Path, texts: list[str], chunk_dir: Path, chunk_docs: int) -> int:
    """Write the prefix's missing chunks (``chunk_docs`` documents each) from the vectors the flat
    index ``index_dir`` stores, one chunk at a time; returns the number of documents copied."""
    missing = []
    for start in range(0, len(texts), chunk_docs):
        part = texts[start : start + chunk_docs]
        if not chunk_done(chunk_dir / f"chunk-{start:09d}-{len(part)}.json", part):
            missing.append(start)
    if not missing:
        return 0
    index, manifest = open_index_vectors(index_dir, corpus, texts)
    embedding_s = manifest.timings.get("embedding")  # the whole corpus's; absent in a converted index
    batch_size = (manifest.settings.get("embedding") or {}).get("batch_size")
    copied = 0
    for start in missing:
        part = texts[start : start + chunk_docs]
        stem = chunk_dir / f"chunk-{start:09d}-{len(part)}"
        atomic_save_npy(stem.with_suffix(".npy"), np.asarray(index.reconstruct_n(start, len(part)), dtype=np.float32))
        atomic_write_json(stem.with_suffix(".json"), {
            "start": start, "n": len(part), "sha256": texts_sha(part),
            "seconds": embedding_s * len(part) / manifest.num_docs if embedding_s else None,  # the index build's, prorated
            "cpu_seconds": None, "threads": None, "batch_size": batch_size, "loadavg": None,
            "source": f"index:{index_dir.resolve()}", "index_built_at": manifest.built_at,
        })
        copied += len(part)
    print(f"copied the vectors of {copied:,} documents from {index_dir}", file=sys.stderr, flush=True)
    return copied


def cmd_embed(a: argparse.Namespace) -> None:
    from rulerag.config import DEFAULT_EMBEDDING_MODEL, RuleQuery
    from rulerag.embedding import Encoder
    from rulerag.retrieval.guided import rule_query
    from rulerag.rules import RuleStore

    work, bench = Path(a.work), Path(a.bench)
    texts = read_prefix(bench / "corpus.jsonl", a.n)
    n = len(texts)
    chunk_dir = work / "emb" / DEFAULT_EMBEDDING_MODEL
    chunk_dir.mkdir(parents=True, exist_ok=True)
    copied = fill_from_index(Path(a.vectors_from_index), bench / "corpus.jsonl", texts, chunk_dir, a.chunk_docs) if a.vectors_from_index else 0
    encoder = Encoder(DEFAULT_EMBEDDING_MODEL, batch_size=a.batch_size)
    t = time.perf_counter()
    dim = encoder.dimension
    model_load_s = time.perf_counter() - t
    new_docs, new_s = 0, 0.0
    for start in range(0, n, a.chunk_docs):
        part = texts[start : start + a.chunk_docs]
        stem = chunk_dir / f"chunk-{start:09d}-{len(part)}"
        sha = texts_sha(part)
        meta_path = stem.with_suffix(".json")
        if chunk_done(meta_path, part):
            continue
        t, cpu = time.perf_counter(), time.process_time()
        vecs = encoder.encode(part)
        seconds, cpu_s = time.perf_counter() - t, time.process_time() - cpu
        atomic_save_npy(stem.with_suffix(".npy"), vecs.astype(np.float32))
        atomic_write_json(meta_path, {"start": start, "n": len(part), "sha256": sha, "seconds": seconds, "cpu_seconds": cpu_s,
                                      "threads": torch_threads(),
                                      "batch_size": a.batch_size, "loadavg": os.getloadavg()[0], "source": "encoded"})
        new_docs += len(part)
        new_s += seconds
        done = start + len(part)
        print(f"embedded {done:,}/{n:,} ({len(part) / seconds:.0f} docs/s)", file=sys.stderr, flush=True)

    # assemble the prefix's vectors and read the rate from every chunk's sidecar
    vectors = np.lib.format.open_memmap(work / f"vectors-{n}.tmp.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    total_docs, total_s, total_cpu = 0, 0.0, 0.0  # total_s, total_cpu: None once a chunk lacks its time
    sources: dict[str, int] = {}  # "encoded" or "index:DIR" -> documents
    for start in range(0, n, a.chunk_docs):
        size = min(a.chunk_docs, n - start)
        stem = chunk_dir / f"chunk-{start:09d}-{size}"
        meta = json.loads(stem.with_suffix(".json").read_text())
        vectors[start : start + size] = np.load(stem.with_suffix(".npy"))
        total_docs += meta["n"]
        total_s = total_s + meta["seconds"] if total_s is not None and meta.get("seconds") is not None else None
        total_cpu = total_cpu + meta["cpu_seconds"] if total_cpu is not None and meta.get("cpu_seconds") is not None else None
        sources[meta.get("source", "encoded")] = sources.get(meta.get("source", "encoded"), 0) + meta["n"]
    vectors.flush()
    del vectors
    os.replace(work / f"vectors-{n}.tmp.npy", work / f"vectors-{n}.npy")

    # calibration: the same documents encoded again, wall and CPU time (chunks may come from other runs)
    sample = texts[: a.calibrate_docs]
    t, cpu = time.perf_counter(), time.process_time()
    encoder.encode(sample)
    calib_s, calib_cpu = time.perf_counter() - t, time.process_time() - cpu

    # the query side: seeded questions with their rule-guided query batches
    import orjson

    questions = [orjson.loads(line) for line in (bench / "questions.jsonl").read_bytes().splitlines() if line.strip()]
    questions = random.Random(0).sample(questions, min(a.questions, len(questions)))
    store = RuleStore.from_file(bench / "rules.jsonl")
    batches = []
    for q in questions:
        matches = store.match_relation(q["relation"], top_n=3) if q.get("relation") else []
        batches.append([q["question"], *(rule_query(q["question"], m, RuleQuery.body) for m in matches)])
    encoder.encode(["warm up the encoder"] * 4)
    encode_ms, encode_cpu_ms, qvecs = [], [], []
    for batch in batches:
        t, cpu = time.perf_counter(), time.process_time()
        qvecs.append(encoder.encode(batch))
        encode_ms.append((time.perf_counter() - t) * 1000)
        encode_cpu_ms.append((time.process_time() - cpu) * 1000)
    offsets = np.cumsum([0] + [len(b) for b in batches]).tolist()
    atomic_save_npy(work / "queries.npy", np.concatenate(qvecs).astype(np.float32))
    atomic_write_json(work / "queries.json", {"ids": [q["id"] for q in questions], "batches": batches, "offsets": offsets})
    print(json.dumps({
        "documents": n, "dimension": dim, "model": DEFAULT_EMBEDDING_MODEL, "batch_size": a.batch_size,
        "embedded_now": new_docs, "embedded_now_s": round(new_s, 1), "copied_now": copied, "sources": sources,
        "chunks_docs": total_docs, "chunks_s": round(total_s, 1) if total_s is not None else None,
        "docs_per_s": round(total_docs / total_s, 1) if total_s else None,  # None: a chunk copied from an index without embedding time
        "model_load_s": round(model_load_s, 2), "questions": len(batches), "query_vectors": offsets[-1],
        "mean_batch": round(offsets[-1] / max(1, len(batches)), 2),
        "encode_ms_p50": round(percentile(encode_ms, 50), 1), "encode_ms_p95": round(percentile(encode_ms, 95), 1),
        "encode_cpu_ms_p50": round(percentile(encode_cpu_ms, 50), 1), "encode_cpu_ms_p95": round(percentile(encode_cpu_ms, 95), 1),
        "chunks_cpu_s": round(total_cpu, 1) if total_cpu else None,  # None: chunks copied from an index, or from a version that did not time CPU
        "docs_per_cpu_s": round(total_docs / total_cpu, 1) if total_cpu else None,
        "threads": torch_threads(),
        "calibration": {"docs": len(sample), "seconds": round(calib_s, 2), "cpu_seconds": round(calib_cpu, 2),
                        "docs_per_s": round(len(sample) / calib_s, 1), "docs_per_cpu_s": round(len(sample) / calib_cpu, 1),
                        "loadavg": os.getloadavg()[0]},
        "peak_rss_mb": round(peak_rss_mb()),
    }))


# ---------------------------------------------------------------------------------------------
# subcommand: build one index in a fresh process


def cmd_build(a: argparse.Namespace) -> None:
    from rulerag.config import IndexSettings
    from rulerag.retrieval.dense import DenseIndex

    settings = IndexSettings(**json.loads(a.settings), gpu="never")
    vectors = np.array(np.load(a.vectors, mmap_mode="r")[: a.n])  # in RAM, as build_index has them
    rss_before = rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    index = DenseIndex.build(vectors, settings)
    build_s, build_cpu_s = time.perf_counter() - t, time.process_time() - cpu
    peak = peak_rss_mb()
    t = time.perf_counter()
    index.save(Path(a.out))
    save_s = time.perf_counter() - t
    print(json.dumps({
        "kind": settings.faiss_type.value, "documents": a.n, "build_s": round(build_s, 4), "build_cpu_s": round(build_cpu_s, 4), "save_s": round(save_s, 4),
        "size_mb": round(os.path.getsize(a.out) / 2**20, 2), "peak_rss_mb": round(peak), "rss_before_build_mb": round(rss_before),
        "params": index.params(), "faiss_threads": _omp_threads(),
    }))


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _omp_threads() -> int:
    import faiss

    return int(faiss.omp_get_max_threads())


# ---------------------------------------------------------------------------------------------
# subcommand: load one index (normally or memory-mapped) and query it in a fresh process


def cmd_query(a: argparse.Namespace) -> None:
    from rulerag.config import IndexSettings
    from rulerag.corpus import file_sha256
    from rulerag.retrieval.dense import DenseIndex

    settings = IndexSettings(**json.loads(a.settings), gpu="never")
    work = Path(a.work)
    queries = np.load(work / "queries.npy")
    offsets = json.loads((work / "queries.json").read_text())["offsets"]
    exact = np.load(a.exact)
    rss0 = rss_mb()
    t = time.perf_counter()
    index = DenseIndex.load(Path(a.index), settings, mmap=a.mmap)
    load_s = time.perf_counter() - t
    rss_loaded = rss_mb() - rss0
    batches = [queries[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    t = time.perf_counter()
    index.search(batches[0], DEPTH)
    first_ms = (time.perf_counter() - t) * 1000

    def run(knob: str | None = None, value: int | None = None) -> dict[str, Any]:
        if knob == "ivf_nprobe":
            import faiss

            faiss.extract_index_ivf(index.cpu_index).nprobe = value  # also inside an IVF-PQ with re-ranking
        elif knob == "hnsw_ef_search":
            index.cpu_index.hnsw.efSearch = value
        for b in batches[:5]:  # warm-up
            index.search(b, DEPTH)
        times, cpu_times, hits = [], [], []
        for b in batches:
            t, cpu = time.perf_counter(), time.process_time()
            res = index.search(b, DEPTH)
            times.append((time.perf_counter() - t) * 1000)
            cpu_times.append((time.process_time() - cpu) * 1000)
            hits.extend(res)
        found = [len({h.pos for h in row[:RECALL_K]} & set(exact[i].tolist())) / RECALL_K for i, row in enumerate(hits)]
        return {"knob": knob, "value": value, "p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2),
                "cpu_p50_ms": round(percentile(cpu_times, 50), 2), "cpu_p95_ms": round(percentile(cpu_times, 95), 2),
                "recall_at_10": round(float(np.mean(found)), 4)}

    default = run()
    sweep = []
    if a.sweep and settings.faiss_type.value in SWEEPS:
        knob, values = SWEEPS[settings.faiss_type.value]
        sweep = [run(knob, v) for v in values]
    t = time.perf_counter()
    file_sha256(Path(a.index))  # what load_index(verify=True) adds
    sha_s = time.perf_counter() - t
    print(json.dumps({
        "kind": settings.faiss_type.value, "mmap": a.mmap, "mmapped": index.mmapped, "load_s": round(load_s, 4),
        "rss_after_load_mb": round(rss_loaded, 1), "rss_after_queries_mb": round(rss_mb() - rss0, 1),
        "first_batch_ms": round(first_ms, 2), **{k: default[k] for k in ("p50_ms", "p95_ms", "cpu_p50_ms", "cpu_p95_ms", "recall_at_10")},
        "sweep": sweep, "checksum_s": round(sha_s, 3), "loadavg": os.getloadavg()[0],
    }))


# ---------------------------------------------------------------------------------------------
# driver


def exact_topk(vectors_path: Path, n: int, queries: np.ndarray, out: Path) -> None:
    """Exact top-``RECALL_K`` ids (inner product) of every query vector over the first ``n`` vectors."""
    if out.is_file():
        return
    import faiss

    index = faiss.IndexFlatIP(queries.shape[1])
    index.add(np.array(np.load(vectors_path, mmap_mode="r")[:n]))
    _, ids = index.search(queries, RECALL_K)
    atomic_save_npy(out, ids)


def synthetic_vectors(real: Path, n_real: int, total: int, out: Path, cos: float = 0.85, seed: int = 0) -> None:
    """``total`` unit vectors: the ``n_real`` measured ones, then noisy copies of random ones (mean
    cosine ``cos`` to their source), written in chunks to a ``.npy`` file."""
    if out.is_file():
        return
    src = np.load(real, mmap_mode="r")[:n_real]
    dim = src.shape[1]
    sigma = math.sqrt((1 / cos**2 - 1) / dim)
    rng = np.random.default_rng(seed)
    tmp = out.with_suffix(".tmp.npy")
    dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, dim))
    dst[:n_real] = src
    for start in range(n_real, total, 50_000):
        stop = min(total, start + 50_000)
        x = src[rng.integers(0, n_real, stop - start)] + sigma * rng.standard_normal((stop - start, dim), dtype=np.float32)
        dst[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    dst.flush()
    del dst
    os.replace(tmp, out)


def measure(work: Path, vectors: Path, size: int, kinds: list[str], queries: np.ndarray, tag: str, *, both_modes: bool, sweep: bool) -> tuple[dict, dict]:
    """Build every kind at ``size`` and load + query it; returns (builds, loads) keyed by kind."""
    exact = work / f"exact-{tag}{size}.npy"
    exact_topk(vectors, size, queries, exact)
    builds, loads = {}, {}
    for kind in kinds:
        if kind not in VARIANTS:
            sys.exit(f"unknown index kind {kind!r}. Fix: choose from {', '.join(VARIANTS)}")
        settings = json.dumps(VARIANTS[kind])
        path = work / "indexes" / f"{kind}-{tag}{size}.faiss"
        key = f"{tag}{kind}-{size}"
        modes = ["normal", "mmap"] if both_modes else ["normal"]
        parts = ["build", *modes]
        if CACHE["dir"] is not None and not all(cache_path(f"{key}-{part}").is_file() for part in parts):
            for part in parts:  # measure the build and its loads together (the index file may be gone)
                cache_path(f"{key}-{part}").unlink(missing_ok=True)
        b = measured(f"{key}-build", ["_build", "--vectors", str(vectors), "--n", str(size), "--out", str(path), "--settings", settings])
        print(json.dumps(b), file=sys.stderr, flush=True)
        builds[kind] = b
        loads[kind] = {}
        for mode in modes:
            q = measured(f"{key}-{mode}", ["_query", "--work", str(work), "--index", str(path), "--exact", str(exact), "--settings",
                                           settings, *(["--mmap"] if mode == "mmap" else []), *(["--sweep"] if sweep and mode == "normal" else [])])
            print(json.dumps(q), file=sys.stderr, flush=True)
            loads[kind][mode] = q
        if tag:  # synthetic indexes are large and not reused
            path.unlink(missing_ok=True)
    return builds, loads


def run_all(a: argparse.Namespace) -> dict[str, Any]:
    bench = Path(a.bench)
    corpus = bench / "corpus.jsonl"
    if not corpus.is_file():
        sys.exit(f"{corpus} not found. Fix: build the benchmark with `rulerag bench build ... --out {bench}`")
    name = bench.name
    work = Path(a.work or f"/tmp/rulerag-scale/{name}")
    (work / "indexes").mkdir(parents=True, exist_ok=True)
    full_docs = a.full_docs or count_lines(corpus)
    n = min(a.limit_docs or full_docs, full_docs)
    print(f"corpus {corpus}: {full_docs:,} documents; measuring on the first {n:,}", file=sys.stderr, flush=True)
    emb = child(["_embed", "--bench", str(bench), "--work", str(work), "--n", str(n), "--chunk-docs", str(a.chunk_docs),
                 "--batch-size", str(a.batch_size), "--questions", str(a.questions), "--calibrate-docs", str(a.calibrate_docs),
                 *(["--vectors-from-index", a.vectors_from_index] if a.vectors_from_index else [])])
    print(json.dumps(emb), file=sys.stderr, flush=True)
    if a.embed_only:
        return {"embedding": emb}
    vectors = work / f"vectors-{n}.npy"
    queries = np.load(work / "queries.npy")
    sizes = sorted({max(1, int(n * f)) for f in a.fractions})
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    builds: dict[str, dict[int, dict]] = {k: {} for k in kinds}
    loads: dict[str, dict[int, dict]] = {k: {} for k in kinds}
    for size in sizes:
        largest = size == sizes[-1]
        b, q = measure(work, vectors, size, kinds, queries, "", both_modes=largest, sweep=largest)
        for kind in kinds:
            builds[kind][size], loads[kind][size] = b[kind], q[kind]
    return {"embedding": emb, "sizes": sizes, "full_docs": full_docs, "builds": builds, "loads": loads, "work": str(work),
            "synthetic_full": {}}


def run_synthetic(a: argparse.Namespace, res: dict[str, Any]) -> dict[str, Any]:
    """FAISS at the full corpus size on the measured vectors plus noisy copies (see ``--synthetic-full``)."""
    work, n, full_docs = Path(res["work"]), res["sizes"][-1], res["full_docs"]
    path = work / f"vectors-synthetic-{n}-{full_docs}.npy"
    synthetic_vectors(work / f"vectors-{n}.npy", n, full_docs, path)
    kinds = [k.strip() for k in a.synthetic_kinds.split(",") if k.strip()]
    b, q = measure(work, path, full_docs, kinds, np.load(work / "queries.npy"), "synthetic-", both_modes=True, sweep=False)
    return {"documents": full_docs, "real": n, "cosine_to_source": 0.85, "builds": b, "loads": q}


def index_sources(emb: dict[str, Any]) -> dict[str, int]:
    """The index directories the embedding step copied document vectors from -> documents."""
    return {s.removeprefix("index:"): d for s, d in (emb.get("sources") or {}).items() if s.startswith("index:")}


def extrapolate(res: dict[str, Any]) -> dict[str, Any]:
    """Per index type, the whole corpus's numbers from the two measured sizes (labelled)."""
    if len(res["sizes"]) < 2:
        return {}
    n1, n2, full = res["sizes"][-2], res["sizes"][-1], res["full_docs"]
    emb = res["embedding"]
    calib = emb["calibration"]
    out: dict[str, Any] = {
        "documents": full,
        "embedding_s": round(full / emb["docs_per_s"]) if emb.get("docs_per_s") else None,
        "embedding_cpu_s": round(full / calib["docs_per_cpu_s"]),
        "method": {
            "size_mb, peak_rss_mb": "linear a + b*n through the two measured sizes",
            "build_s, build_cpu_s, p50/p95 (wall and CPU)": "power law c*n^alpha through the two measured sizes",
            "embedding_s": "documents / measured wall-clock embedding rate (shared cores)" if not index_sources(emb) else
                           "documents / wall-clock embedding rate of the cached chunks, partly or wholly the index build's "
                           f"(timings.embedding of {', '.join(index_sources(emb))}, prorated by documents)",
            "embedding_cpu_s": "documents / calibrated rate per CPU-second (one thread: an idle core's wall time)",
        },
    }
    for kind, by_size in res["builds"].items():
        b1, b2 = by_size[n1], by_size[n2]
        q1, q2 = res["loads"][kind][n1]["normal"], res["loads"][kind][n2]["normal"]
        e: dict[str, Any] = {}
        for key in ("build_s", "build_cpu_s"):
            e[key], e[key.replace("_s", "_alpha")] = power_law(n1, b1[key], n2, b2[key], full)
        for key in ("p50_ms", "p95_ms", "cpu_p50_ms", "cpu_p95_ms"):
            e[key], e[key + "_alpha"] = power_law(n1, q1[key], n2, q2[key], full)
        e["size_mb"] = linear(n1, b1["size_mb"], n2, b2["size_mb"], full)
        e["peak_rss_mb"] = linear(n1, b1["peak_rss_mb"], n2, b2["peak_rss_mb"], full)
        e["total_build_cpu_s"] = out["embedding_cpu_s"] + e["build_cpu_s"]
        out[kind] = {k: (round(v, 2) if isinstance(v, float) and v == v else v) for k, v in e.items()}
    return out


def write_results(res: dict[str, Any], a: argparse.Namespace) -> None:
    name = Path(a.bench).name
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from rulerag.retrieval.index import library_versions

    emb, sizes = res["embedding"], res["sizes"]
    calib = emb["calibration"]
    n = sizes[-1]
    ext = res["extrapolated"]
    cmd = (f".venv/bin/python benchmarks/index_scale.py --bench {a.bench}" + (f" --limit-docs {a.limit_docs}" if a.limit_docs else "")
           + (f" --threads {a.threads}" if a.threads else "") + (" --synthetic-full" if a.synthetic_full else "")
           + (f" --synthetic-kinds {a.synthetic_kinds}" if a.synthetic_full and a.synthetic_kinds != ",".join(KINDS) else "")
           + (f" --vectors-from-index {a.vectors_from_index}" if a.vectors_from_index else "")
           + (" --fractions " + ",".join(f"{f:g}" for f in a.fractions) if a.fractions != [0.5, 1.0] else "")
           + (f" --out {a.out}" if Path(a.out).resolve() != (HERE / "results").resolve() else ""))
    res.update(
        reproduce=cmd, date=dt.date.today().isoformat(), libraries=library_versions(), python=platform.python_version(),
        machine=f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}", threads=a.threads,
    )
    res["reused_measurements"] = {k: dt.datetime.fromtimestamp(cache_path(k).stat().st_mtime).isoformat(timespec="seconds")
                                  for k in REUSED if CACHE["dir"] is not None and cache_path(k).is_file()}
    loadavgs = [m["loadavg"] for by_size in res["loads"].values() for modes in by_size.values() for m in modes.values()]
    res["loadavg_min"], res["loadavg_max"] = min(loadavgs), max(loadavgs)
    (out / f"index_scale_{name}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")

    def mb(x: float) -> str:
        return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"

    def params(p: dict[str, Any]) -> str:
        keys = ("nlist", "nprobe", "m", "nbits", "refine", "hnsw_m", "ef_search", "ef_construction", "trained_on")
        return ", ".join(f"{k} {p[k]:,}" for k in keys if k in p) or "exact"

    copied = index_sources(emb)
    rate = (f"{emb['docs_per_s']} docs/s wall over the {emb['chunks_docs']:,} cached documents ({emb['chunks_s']:,.0f} s"
            + (")" if copied else ", shared cores)") if emb.get("chunks_s") else f"no wall rate over the {emb['chunks_docs']:,} cached documents")
    if copied:
        rate += (f", where the vectors of {sum(copied.values()):,} documents were copied from the index "
                 + ", ".join(f"`{d}`" for d in copied) + " (`--vectors-from-index`) instead of embedded: "
                 + ("this rate is that index build's (its manifest's `timings.embedding`, prorated by documents), not measured in this run"
                    if emb.get("chunks_s") else "its manifest records no embedding time (a converted index)"))
    threads = f"{res['threads']} thread" + ("s" if (res["threads"] or 0) > 1 else "") if res["threads"] else "the libraries' default threads"
    lines = [
        f"# Dense index scale: {name}",
        "",
        f"Measured {res['date']} on {res['machine']} with {threads} for FAISS and torch, while other jobs shared the cores "
        f"(load average {res['loadavg_min']:.1f}-{res['loadavg_max']:.1f} on 2 cores during the queries). Wall-clock times are "
        "therefore inflated; **CPU** columns are the process's CPU time (with one thread: the wall time on an idle core). "
        f"Embedding model {emb['model']} ({emb['dimension']}-d, batch {emb['batch_size']}), faiss-cpu {res['libraries'].get('faiss-cpu', '?')}.",
        "",
        f"Corpus: the first {n:,} of {res['full_docs']:,} documents of `{a.bench}/corpus.jsonl` (corpus order: the oldest facts). "
        f"Queries: {emb['questions']} seeded questions, each searched as its rule-guided batch (the question + one `body` query per "
        f"rule of its relation, up to 3: {emb['mean_batch']} vectors on average) with `DenseIndex.search` at depth {DEPTH}; latency "
        "is per batch, i.e. per question. Recall@10 is against exact search (flat) over the same documents.",
        "",
        f"Reproduce: `{cmd}` (vectors, indexes and measurements cached in `{res['work']}`: an interrupted run resumes; "
        "`--fresh` measures again)."
        + (f" {len(REUSED)} of the measurements below were taken by an earlier run into that cache (file times in the JSON's "
           "`reused_measurements`)." if REUSED else ""),
        "",
        f"## Measured at {n:,} documents",
        "",
        "Default parameters (`IndexSettings()`). Peak build RSS: the build process's max RSS (vectors in RAM + index + Python, "
        "about 60 MB). Load: a fresh process, file in the page cache; mmap = `DenseIndex.load(..., mmap=True)` (`index.mmap: true`).",
        "",
        "| index | parameters | build s (CPU s) | size MB | peak build RSS MB | load s: normal / mmap | RSS after load MB: normal / mmap "
        "| first batch ms: normal / mmap | p50 ms (CPU) | p95 ms (CPU) | Recall@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, by_size in res["builds"].items():
        b = by_size[n]
        q, m = res["loads"][kind][n]["normal"], res["loads"][kind][n]["mmap"]
        lines.append(
            f"| {kind} | {params(b['params'])} | {b['build_s']:.1f} ({b['build_cpu_s']:.1f}) | {mb(b['size_mb'])} | {b['peak_rss_mb']:,} | "
            f"{q['load_s']:.3f} / {m['load_s']:.4f} | {mb(q['rss_after_load_mb'])} / {mb(m['rss_after_load_mb'])} | "
            f"{q['first_batch_ms']:.1f} / {m['first_batch_ms']:.1f} | {q['p50_ms']:.1f} ({q['cpu_p50_ms']:.1f}) | "
            f"{q['p95_ms']:.1f} ({q['cpu_p95_ms']:.1f}) | {q['recall_at_10']:.3f} |"
        )
    lines += [
        "",
        f"- **Embedding throughput** (dominates build time): {rate}; calibration on {calib['docs']:,} documents: {calib['docs_per_s']} docs/s wall, "
        f"**{calib['docs_per_cpu_s']} docs per CPU-second** ({emb['threads']} torch thread(s), load average {calib['loadavg']:.1f}).",
        f"- **Query encoding** of the same batches: p50 {emb['encode_ms_p50']} ms wall ({emb['encode_cpu_ms_p50']} ms CPU), "
        f"p95 {emb['encode_ms_p95']} ms ({emb['encode_cpu_ms_p95']} ms CPU) per question.",
        "- SHA-256 of the index file, which `load_index(verify=True)` adds to every start: "
        + ", ".join(f"{k} {res['loads'][k][n]['normal']['checksum_s']:.2f} s" for k in res["builds"]) + ".",
        "",
        "### Search knobs (same queries)",
        "",
        "| index | knob | value | p50 ms (CPU) | p95 ms (CPU) | Recall@10 |",
        "|---|---|---|---|---|---|",
    ]
    for kind in res["builds"]:
        for sw in res["loads"][kind][n]["normal"]["sweep"]:
            lines.append(f"| {kind} | {sw['knob']} | {sw['value']} | {sw['p50_ms']:.1f} ({sw['cpu_p50_ms']:.1f}) | "
                         f"{sw['p95_ms']:.1f} ({sw['cpu_p95_ms']:.1f}) | {sw['recall_at_10']:.3f} |")
    if ext:
        n1 = sizes[-2]
        lines += [
            "",
            f"## Extrapolated to {ext['documents']:,} documents (not measured)",
            "",
            f"From the builds and queries at {n1:,} and {n:,} documents: size and memory on a straight line, times by the power law "
            "through the two points (exponent alpha shown: about 1 for flat search, 0.5 for IVF search at fixed nprobe). Embedding "
            "at the calibrated CPU rate. Recall is not extrapolated (at fixed nprobe / efSearch it usually falls as n grows).",
            "",
            "| index | FAISS build CPU s (alpha) | embedding + FAISS CPU min | size MB | peak build RSS MB | p50 ms CPU (alpha) | p95 ms CPU |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind in res["builds"]:
            e = ext[kind]
            lines.append(
                f"| {kind} | {e['build_cpu_s']:,.0f} ({e['build_cpu_alpha']}) | {e['total_build_cpu_s'] / 60:,.0f} | {mb(e['size_mb'])} | "
                f"{e['peak_rss_mb']:,.0f} | {e['cpu_p50_ms']:.1f} ({e['cpu_p50_ms_alpha']}) | {e['cpu_p95_ms']:.1f} |"
            )
        lines += [
            "",
            f"Embedding all {ext['documents']:,} documents: {ext['embedding_cpu_s'] / 60:,.0f} min of CPU on one thread"
            + (f"; {ext['embedding_s'] / 60:,.0f} min at " + ("the cached chunks' wall-clock rate (from the index build, see above)."
                                                             if copied else "this run's wall-clock rate on the shared cores.")
               if ext.get("embedding_s") else "."),
            "",
            f"Measured at {n1:,} documents (the first point of the fits):",
            "",
            "| index | build s (CPU s) | size MB | peak build RSS MB | p50 ms (CPU) | p95 ms (CPU) | Recall@10 |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, by_size in res["builds"].items():
            b, q = by_size[n1], res["loads"][kind][n1]["normal"]
            lines.append(f"| {kind} | {b['build_s']:.1f} ({b['build_cpu_s']:.1f}) | {mb(b['size_mb'])} | {b['peak_rss_mb']:,} | "
                         f"{q['p50_ms']:.1f} ({q['cpu_p50_ms']:.1f}) | {q['p95_ms']:.1f} ({q['cpu_p95_ms']:.1f}) | {q['recall_at_10']:.3f} |")
    syn = res.get("synthetic_full") or {}
    if syn:
        lines += [
            "",
            f"## Measured at {syn['documents']:,} documents on synthetic vectors (FAISS only)",
            "",
            f"The {syn['real']:,} real vectors plus {syn['documents'] - syn['real']:,} noisy copies of random ones (cosine "
            f"{syn['cosine_to_source']} to their source, re-normalised): size, build memory and time, load time and latency at the "
            "real scale, which depend on n and d far more than on the vectors. Recall here is against exact search on the same "
            "synthetic vectors (clusters of near-copies): not a prediction of recall on the real corpus.",
            "",
            "| index | parameters | build s (CPU s) | size MB | peak build RSS MB | load s: normal / mmap | RSS after load MB: normal / mmap "
            "| first batch ms: normal / mmap | p50 ms (CPU) | p95 ms (CPU) | Recall@10 (synthetic) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kind, b in syn["builds"].items():
            q, m = syn["loads"][kind]["normal"], syn["loads"][kind]["mmap"]
            lines.append(
                f"| {kind} | {params(b['params'])} | {b['build_s']:.1f} ({b['build_cpu_s']:.1f}) | {mb(b['size_mb'])} | {b['peak_rss_mb']:,} | "
                f"{q['load_s']:.3f} / {m['load_s']:.4f} | {mb(q['rss_after_load_mb'])} / {mb(m['rss_after_load_mb'])} | "
                f"{q['first_batch_ms']:.1f} / {m['first_batch_ms']:.1f} | {q['p50_ms']:.1f} ({q['cpu_p50_ms']:.1f}) | "
                f"{q['p95_ms']:.1f} ({q['cpu_p95_ms']:.1f}) | {q['recall_at_10']:.3f} |"
            )
    lines += ["", "Libraries: " + ", ".join(f"{k} {v}" for k, v in res["libraries"].items()), ""]
    (out / f"index_scale_{name}.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    e = sub.add_parser("_embed")
    e.add_argument("--bench", required=True)
    e.add_argument("--work", required=True)
    e.add_argument("--n", type=int, required=True)
    e.add_argument("--chunk-docs", type=int, default=5000)
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--questions", type=int, default=200)
    e.add_argument("--calibrate-docs", type=int, default=2000)
    e.add_argument("--vectors-from-index", default=None)
    b = sub.add_parser("_build")
    b.add_argument("--vectors", required=True)
    b.add_argument("--n", type=int, required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--settings", default="{}")
    q = sub.add_parser("_query")
    q.add_argument("--work", required=True)
    q.add_argument("--index", required=True)
    q.add_argument("--exact", required=True)
    q.add_argument("--settings", default="{}")
    q.add_argument("--mmap", action="store_true")
    q.add_argument("--sweep", action="store_true")
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        a = ap.parse_args()
        {"_embed": cmd_embed, "_build": cmd_build, "_query": cmd_query}[a.cmd](a)
        return

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="a RuleQA benchmark directory (corpus.jsonl, questions.jsonl, rules.jsonl)")
    ap.add_argument("--limit-docs", type=int, default=None, help="measure on the first N documents (default: all)")
    ap.add_argument("--full-docs", type=int, default=None, help="extrapolate to this many documents (default: the corpus's)")
    ap.add_argument("--work", default=None, help="cache of vectors and indexes (default /tmp/rulerag-scale/<bench>)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1.0],
                    help="build sizes as fractions of the measured prefix (the last two are used for extrapolation)")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--chunk-docs", type=int, default=5000, help="embedding checkpoint size")
    ap.add_argument("--calibrate-docs", type=int, default=2000, help="documents re-encoded to measure the embedding rate (wall and CPU)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--embed-only", action="store_true", help="only embed (and checkpoint) the documents and queries")
    ap.add_argument("--vectors-from-index", metavar="DIR", default=None,
                    help="fill the missing embedding chunks from the document vectors stored in DIR, a flat index of the same "
                         "corpus with the default model (`rulerag index build`), instead of embedding the corpus; the embedding "
                         "time is then the index build's (manifest timings.embedding, prorated). The calibration still encodes "
                         "--calibrate-docs documents")
    ap.add_argument("--synthetic-full", action="store_true",
                    help="also build and query FAISS indexes at the full corpus size on synthetic vectors (the measured ones "
                         "plus noisy copies): measured size, memory, build time and latency without embedding everything")
    ap.add_argument("--synthetic-kinds", default=",".join(KINDS))
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--fresh", action="store_true",
                    help="measure everything again (default: reuse the measurements an earlier run left in WORK/measurements)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OpenMP threads for FAISS and torch in every step (default: the libraries' own, one per core); "
                         "1 is faster on cores shared with other jobs")
    a = ap.parse_args()
    THREADS["n"] = a.threads
    CACHE["dir"] = None if a.fresh else Path(a.work or f"/tmp/rulerag-scale/{Path(a.bench).name}") / "measurements"
    res = run_all(a)
    if a.embed_only:
        return
    res["extrapolated"] = extrapolate(res) if res["sizes"][-1] < res["full_docs"] else {}
    write_results(res, a)
    if a.synthetic_full and res["sizes"][-1] < res["full_docs"]:
        print("measured part written; now the full size on synthetic vectors", file=sys.stderr, flush=True)
        res["synthetic_full"] = run_synthetic(a, res)
        write_results(res, a)
    print(f"wrote {Path(a.out) / f'index_scale_{Path(a.bench).name}.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
