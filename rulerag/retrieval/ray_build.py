"""Distributed index build on Ray (``rulerag index build --engine ray``).

Builds the same index directory as :func:`rulerag.retrieval.index.build_index`: the same
``docs.jsonl`` bytes, the same BM25 files (same vocabulary, same float32 scores: every shard is
scored with the corpus-wide document frequencies and average length), FAISS vectors equal within
float tolerance (embedding batches differ), the same manifest schema, written to a temporary
directory and renamed. What runs where:

1. **driver**: splits the corpus file into line-aligned byte ranges (a few seeks, no full read);
   checksums the file while the cluster works.
2. **Ray tasks** (``ray.data``, one row per range): read, parse and validate the range's lines
   (the checks of :func:`rulerag.corpus.iter_corpus`), tokenise, count the shard's BM25
   statistics. The corpus path must be readable at the same path on every node.
3. **driver**: adds the shards' statistics (:meth:`~rulerag.retrieval.bm25.BM25Stats.merge`) into
   the global vocabulary, idf and average length; checks that ids are unique across shards;
   reports the first malformed line of the file as ``file:line``, as the local build does.
4. **Ray actor pool** (``map_batches`` with a class, ``concurrency`` workers): per shard, the BM25
   scores under the global statistics and the embeddings; each actor loads the encoder once.
5. **driver**: concatenates the shards in corpus order into one BM25 matrix and one FAISS index
   and writes the directory with :func:`~rulerag.retrieval.index.write_index`.

Locally ``ray.init(num_cpus=...)`` starts a private Ray instance (stopped afterwards); with
``address`` (``--ray-address``) the build joins an existing cluster (``ray start --head``).
An already initialised Ray (``ray.is_initialized()``) is used as it is.

Example:
    >>> manifest = build_index_ray("rulerag/demo/corpus.jsonl", "indexes/demo-ray", num_cpus=2)  # doctest: +SKIP
    >>> manifest.num_docs                                                                          # doctest: +SKIP
    350
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson

from rulerag.config import Settings
from rulerag.corpus import file_sha256
from rulerag.embedding import Encoder, TextEncoder
from rulerag.errors import ConfigError, CorpusFormatError
from rulerag.retrieval.bm25 import BM25Entries, BM25Stats, bm25_from_entries, document_tokens, score_entries
from rulerag.retrieval.index import Manifest, build_dense, check_output, write_index

log = logging.getLogger(__name__)

_EXAMPLE = '{"id": "...", "contents": "..."}'  # the fix shown for a malformed line (as iter_corpus)
_SHARD_BYTES = 32 << 20  # at most this many corpus bytes per shard
_WORKER_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")


def require_ray() -> ModuleType:
    """Import Ray (with Ray Data) or fail with the install command.

    Example:
        >>> ray = require_ray()   # doctest: +SKIP
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "--engine ray needs Ray Data, which is not installed. Fix: pip install -e '.[ray]' "
            "(or pip install 'ray[data]'), or build with --engine local"
        ) from exc
    return ray


def line_ranges(path: str | Path, shards: int) -> list[tuple[int, int]]:
    """Split a file into at most ``shards`` byte ranges that start and end at line boundaries.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.jsonl"
        >>> _ = p.write_bytes(b"aaaa\\nbb\\ncccccc\\nd\\n")
        >>> line_ranges(p, 3)
        [(0, 5), (5, 15), (15, 17)]
    """
    size = Path(path).stat().st_size
    if size == 0:
        return []
    cuts = [0]
    with open(path, "rb") as fh:
        for i in range(1, max(1, shards)):
            target = size * i // shards
            if target <= cuts[-1]:
                continue
            fh.seek(target - 1)
            fh.readline()  # to the start of the next line (target itself when byte target-1 is a newline)
            pos = fh.tell()
            if cuts[-1] < pos < size:
                cuts.append(pos)
    cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))


def _lines_before(path: Path, offset: int, chunk: int = 1 << 22) -> int:
    """Newlines in the first ``offset`` bytes (only used to name a bad line)."""
    count = 0
    with open(path, "rb") as fh:
        while offset > 0:
            block = fh.read(min(chunk, offset))
            if not block:
                break
            count += block.count(b"\n")
            offset -= len(block)
    return count


@dataclass
class ShardSummary:
    """What the driver needs from a parsed shard: ids (for the global uniqueness check), their
    line numbers within the shard, the BM25 statistics, and the shard's first error if any."""

    ids: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    stats: BM25Stats = field(default_factory=lambda: BM25Stats(0, 0, {}))
    error: tuple[int, str, str] | None = None  # (line within the shard, what, fix)


def parse_shard(path: str, start: int, end: int) -> tuple[ShardSummary, list[bytes], list[str], list[list[str]]]:
    """Parse one byte range of a JSONL corpus with the checks of :func:`rulerag.corpus.iter_corpus`.

    Returns the summary, the ``docs.jsonl`` records (the local build's bytes), the texts and the
    BM25 tokens. Parsing stops at the first malformed line, which the summary reports.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.jsonl"
        >>> _ = p.write_bytes(b'{"id": 1, "contents": "Alice born in Tarvik.", "t": 2}\\n\\n{"id": "2"}\\n')
        >>> summary, records, texts, tokens = parse_shard(str(p), 0, p.stat().st_size)
        >>> summary.ids, records, summary.error
        (['1'], [b'{"id":"1","contents":"Alice born in Tarvik.","t":2}'], (3, "missing or empty 'contents'", "give every document non-empty text in 'contents'"))
    """
    summary = ShardSummary()
    records: list[bytes] = []
    texts: list[str] = []
    tokens: list[list[str]] = []
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start)
    except OSError as exc:
        summary.error = (0, f"cannot read the corpus on Ray node {socket.gethostname()} ({exc})",
                         "put the corpus at the same path on every node (a shared filesystem)")
        return summary, records, texts, tokens
    for lineno, raw in enumerate(io.BytesIO(data), start=1):  # lines as a binary file gives them (as iter_jsonl)
        if not raw.strip():
            continue
        error = None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            error = (f"not valid JSON ({exc})", f"write one JSON object per line: {_EXAMPLE}")
        else:
            if not isinstance(obj, dict):
                error = ("line is not a JSON object", f"write {_EXAMPLE}")
            else:
                doc_id, contents = obj.pop("id", None), obj.pop("contents", None)
                if contents is None and "text" in obj:  # tolerate the common "text" field name
                    contents = obj.pop("text")
                if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
                    error = ("missing or non-string 'id'", "give every document a unique string id")
                elif not isinstance(contents, str) or not contents.strip():
                    error = ("missing or empty 'contents'", "give every document non-empty text in 'contents'")
        if error is not None:
            summary.error = (lineno, *error)
            break
        doc_id = str(doc_id)
        summary.ids.append(doc_id)
        summary.lines.append(lineno)
        records.append(orjson.dumps({"id": doc_id, "contents": contents, **obj}))
        texts.append(contents)
        tokens.append(document_tokens(contents))
    summary.stats = BM25Stats.from_tokens(tokens)
    return summary, records, texts, tokens


def _parse_row(row: dict[str, Any], path: str) -> dict[str, Any]:
    """ray.data ``map``: one byte range in, one parsed shard out (pickled columns)."""
    summary, records, texts, tokens = parse_shard(path, int(row["start"]), int(row["end"]))
    return {
        "shard": int(row["shard"]),
        "start": int(row["start"]),
        "summary": pickle.dumps(summary, protocol=5),
        "records": pickle.dumps(records, protocol=5),
        "payload": pickle.dumps((texts, tokens), protocol=5),
    }


@dataclass
class GlobalBM25:
    """The corpus-wide statistics every shard is scored with."""

    vocab: dict[str, int]
    idf: np.ndarray
    avg_length: np.float64
    k1: float = 1.5
    b: float = 0.75


def _make_encoder(spec: tuple) -> TextEncoder:
    if spec[0] == "rulerag":
        _, model, batch_size, device, backend = spec
        return Encoder(model, batch_size=batch_size, device=device, backend=backend)
    return spec[1]  # a picklable TextEncoder object


class ShardWorker:
    """Ray actor: BM25 entries under the global statistics, and embeddings, for whole shards.

    The encoder is loaded once, when the actor starts."""

    def __init__(self, bm25: Any, offsets: dict[int, int], encoder_spec: tuple | None, threads: int) -> None:
        import ray

        self.bm25: GlobalBM25 = ray.get(bm25) if isinstance(bm25, ray.ObjectRef) else bm25
        self.offsets = offsets
        self.encoder: TextEncoder | None = None
        if encoder_spec is not None:
            try:
                import torch

                torch.set_num_threads(max(1, threads))
            except ImportError:  # pragma: no cover - torch is a dependency
                pass
            self.encoder = _make_encoder(encoder_spec)
            getattr(self.encoder, "dimension", None)  # load the model now, once per actor

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards, entries, vectors = [], [], []
        g = self.bm25
        for shard, payload in zip(batch["shard"], batch["payload"]):
            texts, tokens = pickle.loads(payload)
            part = score_entries(tokens, g.vocab, g.idf, g.avg_length, first_doc=self.offsets[int(shard)], k1=g.k1, b=g.b)
            vecs = self.encoder.encode(texts) if (self.encoder is not None and texts) else None
            shards.append(int(shard))
            entries.append(pickle.dumps(part, protocol=5))
            vectors.append(pickle.dumps(vecs, protocol=5))
        return {"shard": np.asarray(shards, dtype=np.int64), "entries": _objects(entries), "vectors": _objects(vectors)}


def _objects(items: Sequence[bytes]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def _encoder_spec(encoder: TextEncoder | None, settings: Settings) -> tuple[tuple, str]:
    """How actors make the encoder (no live model crosses the wire), and the model name."""
    if encoder is None:
        emb = settings.embedding
        return ("rulerag", emb.model, emb.batch_size, emb.device, emb.backend.value), emb.model
    if isinstance(encoder, Encoder):
        return ("rulerag", encoder.model_name, encoder.batch_size, encoder.device, encoder.backend.value), encoder.model_name
    return ("object", encoder), encoder.model_name


def _start_ray(ray: ModuleType, address: str | None, num_cpus: int | None, progress: bool) -> bool:
    """Start (or join) Ray; True when this call started it and must stop it."""
    if ray.is_initialized():
        if address or num_cpus:
            log.info("Ray is already initialised; using it as it is (ignoring address / num_cpus)")
        return False
    env = {k: os.environ.get(k, "false" if k == "TOKENIZERS_PARALLELISM" else "1") for k in _WORKER_ENV}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": progress,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": env},
    }
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise ConfigError(f"cannot connect to a Ray cluster at {address!r} ({exc}). Fix: start one with `ray start --head` "
                          "and pass the address it prints, e.g. --ray-address 10.0.0.1:6379") from exc
    return True


def build_index_ray(
    corpus: str | Path,
    out: str | Path,
    settings: Settings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    encoder: TextEncoder | None = None,
    dense: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    shards: int | None = None,
) -> Manifest:
    """Build the index directory of :func:`~rulerag.retrieval.index.build_index` on Ray.

    ``address``: an existing cluster (``ray start --head`` prints it); default: a private local
    instance with ``num_cpus`` CPUs (default: all of this machine's). ``workers``: embedding actors
    (default: the cluster's CPUs / ``cpus_per_worker``); each uses ``cpus_per_worker`` torch threads
    and ``gpus_per_worker`` GPUs (set ``embedding.device`` to ``cuda`` then). ``shards``: corpus
    byte ranges (default: 4 per worker, at most 32 MiB each). ``encoder``: a
    :class:`~rulerag.embedding.Encoder` (re-created in every actor from its model name) or any
    picklable encoder object.

    Example:
        >>> m = build_index_ray("rulerag/demo/corpus.jsonl", "/tmp/demo-ray", num_cpus=2, overwrite=True)  # doctest: +SKIP
        >>> m.num_docs, sorted(m.files)[:2]                                                               # doctest: +SKIP
        (350, ['bm25/data.csc.index.npy', 'bm25/indices.csc.index.npy'])
    """
    settings = settings or Settings()
    if address and num_cpus:
        raise ConfigError("num_cpus (--num-cpus) sizes a local Ray only; a cluster's CPUs are set where it is started. "
                          "Fix: drop --num-cpus, or use `ray start --num-cpus N` on each node")
    corpus, out = Path(corpus), check_output(out, overwrite=overwrite)
    if not corpus.is_file():
        raise CorpusFormatError(corpus, None, "file not found", "pass an existing .jsonl file")
    ray = require_ray()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    started = _start_ray(ray, address, num_cpus, progress)
    data_log = logging.getLogger("ray.data")
    saved: tuple | None = None
    try:
        timings["ray_init"] = time.perf_counter() - t0
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.execution_options.preserve_order, data_log.level)
        if not progress:
            data_log.setLevel(logging.ERROR)  # Ray Data's notices, e.g. "progress bars disabled"
        ctx.enable_progress_bars = ctx.print_on_execution_start = progress
        ctx.execution_options.preserve_order = True
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        n_workers = workers or max(1, int(cluster_cpus // max(cpus_per_worker, 1e-9)))
        size = corpus.stat().st_size
        ranges = line_ranges(corpus, shards or max(4 * n_workers, math.ceil(size / _SHARD_BYTES)))
        if not ranges:
            raise CorpusFormatError(corpus, None, "corpus is empty", "add at least one document")
        with ThreadPoolExecutor(1) as pool:
            checksum_job = pool.submit(file_sha256, corpus)  # while the cluster parses

            # 2. parallel read, parse, tokenise, per-shard statistics
            t = time.perf_counter()
            items = [{"shard": i, "start": s, "end": e} for i, (s, e) in enumerate(ranges)]
            parsed = (
                ray.data.from_items(items, override_num_blocks=len(items))
                .map(_parse_row, fn_kwargs={"path": str(corpus.resolve())}, num_cpus=1)
                .materialize()
            )
            summaries: dict[int, tuple[int, ShardSummary]] = {}
            for row in parsed.select_columns(["shard", "start", "summary"]).iter_rows():
                summaries[int(row["shard"])] = (int(row["start"]), pickle.loads(row["summary"]))
            timings["read"] = time.perf_counter() - t

            # 3. global statistics, global id check, first error in file order
            t = time.perf_counter()
            offsets = _check_shards(corpus, [summaries[i] for i in range(len(ranges))])
            num_docs = sum(s.stats.num_docs for _, s in summaries.values())
            stats = BM25Stats.merge(s.stats for _, s in summaries.values())
            vocab = stats.vocabulary()
            global_bm25 = GlobalBM25(vocab, stats.idf(vocab), stats.avg_length)
            timings["bm25_stats"] = time.perf_counter() - t

            # 4. BM25 entries and embeddings per shard, on an actor pool
            t = time.perf_counter()
            spec, model_name = _encoder_spec(encoder, settings) if dense else (None, None)
            scored = parsed.select_columns(["shard", "payload"]).map_batches(
                ShardWorker,
                fn_constructor_kwargs={"bm25": global_bm25, "offsets": offsets, "encoder_spec": spec,
                                       "threads": max(1, int(cpus_per_worker))},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=max(1, min(n_workers, len(ranges)))),
                num_cpus=cpus_per_worker,
                num_gpus=gpus_per_worker or None,
            )
            parts: dict[int, tuple[BM25Entries, np.ndarray | None]] = {}
            for row in scored.iter_rows():
                parts[int(row["shard"])] = (pickle.loads(row["entries"]), pickle.loads(row["vectors"]))
            timings["embedding" if dense else "bm25_shards"] = time.perf_counter() - t

            # 5. merge in corpus order, build FAISS, write
            t = time.perf_counter()
            order = range(len(ranges))
            bm25 = bm25_from_entries([parts[i][0] for i in order], vocab, num_docs)
            timings["bm25"] = time.perf_counter() - t
            dense_index = None
            if dense:
                t = time.perf_counter()
                vectors = np.concatenate([parts[i][1] for i in order if parts[i][1] is not None])
                dense_index = build_dense(vectors, settings)
                timings["faiss"] = time.perf_counter() - t
            records_by_shard: dict[int, list[bytes]] = {}
            for row in parsed.select_columns(["shard", "records"]).iter_rows():
                records_by_shard[int(row["shard"])] = pickle.loads(row["records"])
            checksum = checksum_job.result()
        return write_index(
            out, records=(r for i in order for r in records_by_shard[i]), num_docs=num_docs, bm25=bm25,
            dense_index=dense_index, embedding_model=model_name, settings=settings, corpus=corpus, corpus_sha256=checksum,
            timings=timings, started=t0, overwrite=overwrite, progress=progress,
        )
    finally:
        if saved is not None:  # leave Ray Data's global settings as they were
            ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.execution_options.preserve_order, level = saved
            data_log.setLevel(level)
        if started:
            ray.shutdown()


def _check_shards(corpus: Path, shards: Sequence[tuple[int, ShardSummary]]) -> dict[int, int]:
    """Raise the first problem in file order (a malformed line or a duplicate id) as the local
    reader would; else return each shard's first document position."""
    seen: set[str] = set()
    offsets: dict[int, int] = {}
    pos = 0
    for i, (start, summary) in enumerate(shards):
        offsets[i] = pos
        for doc_id, line in zip(summary.ids, summary.lines):
            if doc_id in seen:
                raise CorpusFormatError(corpus, _lines_before(corpus, start) + line, f"duplicate id {doc_id!r}", "make document ids unique")
            seen.add(doc_id)
        if summary.error is not None:
            line, what, fix = summary.error
            raise CorpusFormatError(corpus, (_lines_before(corpus, start) + line) if line else None, what, fix)
        pos += len(summary.ids)
    if pos == 0:
        raise CorpusFormatError(corpus, None, "corpus is empty", "add at least one document")
    return offsets
