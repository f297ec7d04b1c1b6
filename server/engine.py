"""The shared question-answering state of one server process.

* The :class:`~rulerag.pipeline.RuleRAG` pipeline (index, rules, encoder) is loaded once and then
  only read. Per-request ``k`` and ``mode`` are passed as arguments; shared settings are never
  changed after start-up.
* Retrieval runs on ``retrieval_workers`` batching threads (default 1): each takes every
  question waiting in the queue (up to ``retrieval_batch``) and retrieves them in one
  :meth:`~rulerag.pipeline.RuleRAG.retrieve_many` call, so concurrent requests share one
  encoder call and one FAISS scan (opportunistic micro-batching: a lone request never waits for
  company). Questions are batched only with others of the same ``k``, ``mode`` and
  with/without ``time``, so a batched result is the one a single call would give.
* Checking runs on a small thread pool; the query encoder is guarded by a lock (Hugging Face
  fast tokenizers are not safe to call from several threads at once).
* The generator runs on one dedicated thread: generations are serialised, and requests waiting
  for it hold no other thread.
* At most ``max_pending`` requests wait for or use the workers; more get 503 ``server_busy``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rulerag.config import BackendKind, Mode, Settings
from rulerag.corpus import Document
from rulerag.embedding import Encoder, TextEncoder
from rulerag.generation import FixedBackend, Generator, Prompt, make_backend, postprocess_answer
from rulerag.generation.backends import first_document
from rulerag.pipeline import RuleRAG
from rulerag.refine import Constraint, verify_and_refine
from rulerag.retrieval.guided import RetrievalResult
from server.config import ServerSettings
from server.errors import ApiError

log = logging.getLogger("rulerag.server")
T = TypeVar("T")


class LockedEncoder:
    """A :class:`~rulerag.embedding.TextEncoder` whose ``encode`` runs one call at a time."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self._lock = threading.Lock()

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        with self._lock:
            return self.inner.encode(texts, progress=progress)

    def __getattr__(self, name: str) -> Any:  # dimension, batch_size, ...
        return getattr(self.inner, name)


def set_compute_threads(n: int) -> None:
    """Threads per operation for torch (process-wide) and FAISS in the calling thread. FAISS's
    OpenMP setting is per thread: the threads that search get it from ``DenseIndex.search_threads``."""
    import faiss
    import torch

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    log.info("torch and FAISS use %d thread(s) per operation", n)


class QuietFixedBackend(FixedBackend):
    """The fixed test backend without the prompt log (``FixedBackend.prompts`` grows with every
    call, which a long-running server must not do)."""

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        return self.answer if self.answer else first_document(prompt)


def default_generator(settings: Settings) -> Generator:
    if settings.generation.backend == BackendKind.fixed:
        return QuietFixedBackend(settings.generation.fixed_answer)
    return make_backend(settings.generation)


@dataclass
class _Job:
    """One question waiting for the batching thread."""

    question: str
    k: int | None
    mode: Mode | None
    relation: str | None
    time: str | None
    future: concurrent.futures.Future

    @property
    def group(self) -> tuple:
        return (self.k, self.mode, self.time is not None)


class RetrievalBatcher:
    """Threads that retrieve every queued question of a group in one ``retrieve_many`` call."""

    def __init__(self, retrieve_many: Callable[..., list[RetrievalResult]], workers: int, max_batch: int) -> None:
        self._retrieve_many = retrieve_many
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, name=f"rulerag-retrieve-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()
        self.batches = 0  # statistics (read by tests and logs)
        self.questions = 0

    def submit(self, job: _Job) -> None:
        self._queue.put(job)

    def close(self, wait: bool = False) -> None:
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, stop = [job], False
            while len(jobs) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            groups: dict[tuple, list[_Job]] = {}
            for j in jobs:
                groups.setdefault(j.group, []).append(j)
            for group in groups.values():
                self._run(group)
            if stop:
                return

    def _run(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]  # skip abandoned requests
        if not live:
            return
        self.batches += 1
        self.questions += len(live)
        try:
            results = self._retrieve_many([j.question for j in live], k=live[0].k, mode=live[0].mode,
                                          relations=[j.relation for j in live], times=[j.time for j in live])
        except BaseException as exc:  # noqa: BLE001 - retried one by one so that only the culprit fails
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            for j in live:
                try:
                    j.future.set_result(self._retrieve_many([j.question], k=j.k, mode=j.mode, relations=[j.relation], times=[j.time])[0])
                except BaseException as one:  # noqa: BLE001
                    j.future.set_exception(one)
            return
        for j, r in zip(live, results):
            j.future.set_result(r)


@dataclass
class Prepared:
    """Retrieval done, prompt built: what the generator step needs."""

    result: RetrievalResult
    prompt: Prompt
    shown: list[str]
    retrieval_s: float
    warnings: list[str] = field(default_factory=list)  # instruction-like document text removed or fenced
    documents: list[str] = field(default_factory=list)  # the documents' texts as the prompt shows them


@dataclass
class Generated:
    answer: str
    raw: str
    report: Any
    rounds: list[dict[str, Any]]
    generation_s: float


class Engine:
    """Loads the pipeline once and runs requests on worker threads."""

    def __init__(
        self,
        index: Path,
        rules: Path | None,
        settings: Settings,
        limits: ServerSettings,
        *,
        generator: Generator | None = None,
        encoder: TextEncoder | None = None,
    ) -> None:
        self.index_path = Path(index)
        self.rules_path = rules
        self.settings = settings
        self.limits = limits
        self._generator_arg = generator
        self._encoder_arg = encoder
        self.rag: RuleRAG | None = None
        self.rule_list: list = []  # all rules by head relation, then confidence (for /v1/rules)
        self.generator: Generator | None = None
        self.state = "loading"
        self.error: str | None = None
        self.load_s = 0.0
        self._pending = 0  # changed only on the event loop thread
        self._closed = True
        self._encoder: TextEncoder | None = None  # the query encoder in use, shared by index updates
        self._update_lock = threading.Lock()
        self._default_threads: int | None = None  # set by preload()
        self.workers = 1  # processes serving this engine's index (set by `rulerag serve --workers`)
        self.open()

    # ------------------------------------------------------------------ loading

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def load(self) -> None:
        """Load the index, rules, encoder and generator, and warm them up. Never raises: a failure
        is logged and kept in :attr:`error` (``/readyz`` reports it). Loading twice is a no-op;
        after :meth:`preload` only the generator is left to load."""
        if self.state == "ready":
            return
        t0 = time.perf_counter()
        try:
            threads = self.limits.compute_threads or None  # 0 / None: the libraries' defaults
            if threads is not None:
                set_compute_threads(threads)
            elif self._default_threads is not None:  # preloaded with one thread: back to the defaults
                set_compute_threads(self._default_threads)
            if self.rag is None:
                self._load_pipeline()
            assert self.generator is not None and self.rag is not None
            loader = getattr(self.generator, "load", None)
            if callable(loader):
                loader()
            self.load_s += time.perf_counter() - t0
            self.state = "ready"
            log.info("ready in %.1fs: %s (%d documents, %d rules, generator %s)", self.load_s, self.index_path,
                     len(self.rag.index.docs), len(self.rag.rules or ()), self.generator.name)
        except Exception as exc:  # noqa: BLE001 - reported through /readyz, logged with its trace
            self.state = "failed"
            self.error = str(exc) or type(exc).__name__
            log.exception("loading %s failed", self.index_path)

    def preload(self) -> None:
        """Load and warm up the retrieval side (index, rules, encoder) in a parent process that
        will fork the workers, so they share these pages copy-on-write instead of loading N
        copies. The generator is left to :meth:`load` in each worker (llama.cpp maps its GGUF, so
        those pages are shared anyway, and its threads would not survive a fork).

        The warm-up runs torch and FAISS on one thread: a process forked after OpenMP started a
        thread team hangs at its next parallel region. Every thread this engine started is
        stopped before returning; :meth:`open` starts them again in the worker. Raises what the
        loading raises (the server should not start)."""
        import torch

        if self.rag is not None:
            return
        self._default_threads = torch.get_num_threads()
        t0 = time.perf_counter()
        set_compute_threads(1)
        self._load_pipeline()
        self.load_s = time.perf_counter() - t0
        self.close(wait=True)
        log.info("preloaded %s in %.1fs (%d documents)", self.index_path, self.load_s, len(self.rag.index.docs))

    def _load_pipeline(self) -> None:
        from rulerag.retrieval.index import read_manifest

        encoder = self._encoder_arg
        if encoder is None:
            manifest = read_manifest(self.index_path)
            emb = self.settings.embedding
            encoder = Encoder(manifest.embedding_model or emb.model, batch_size=emb.batch_size, device=emb.device,
                              backend=emb.backend)
        generator = self._generator_arg or default_generator(self.settings)
        self._encoder = LockedEncoder(encoder)
        rag = self._open_index(generator)
        store = rag.rules
        self.rule_list = [r for rel in store.relations for r in store.by_head(rel)] if store is not None else []
        self.rag, self.generator = rag, generator

    def _open_index(self, generator: Generator) -> RuleRAG:
        """The pipeline over the index directory as it is on disk now, warmed up."""
        rag = RuleRAG.from_index(self.index_path, self.rules_path, settings=self.settings, generator=generator, encoder=self._encoder)
        threads = self.limits.compute_threads or None
        if threads is not None and rag.index.dense is not None:
            rag.index.dense.search_threads = threads  # applied in the batcher threads, where FAISS searches
        # loads the embedding model, BM25 and the rules' relation vectors, and makes the encoder's
        # one-off choices (packed encoding of mixed-length batches) before the first request
        rag.retrieve_many(["warm up", "Which country is Alice Marlow a citizen of?"], k=1)
        return rag

    def update_documents(self, add: Sequence[Document] = (), remove: Collection[str] = ()) -> dict[str, Any]:
        """Add and/or remove documents in the served index (on disk, atomically: see
        :func:`rulerag.retrieval.update.update_index`), then load the new index and swap it in.
        Requests in flight finish on the old index; later ones see the new one, never a mix.
        Updates run one at a time. Runs on a worker thread."""
        from rulerag.retrieval.update import update_index

        self.require_ready()
        with self._update_lock:
            t0 = time.perf_counter()
            manifest = update_index(self.index_path, add=add, remove=remove, settings=self.settings, encoder=self._encoder)
            new = self._open_index(self.generator)
            self.rag = new  # one reference swap: a request reads self.rag once
            seconds = time.perf_counter() - t0
        log.info("index %s updated: +%d -%d documents, %d now (%.1fs)", self.index_path, len(add), len(remove), manifest.num_docs, seconds)
        return {"added": len(add), "removed": len(remove), "num_docs": manifest.num_docs, "seconds": round(seconds, 3)}

    def start_loading(self, background: bool) -> threading.Thread | None:
        if not background:
            self.load()
            return None
        thread = threading.Thread(target=self.load, name="rulerag-load", daemon=True)
        thread.start()
        return thread

    def open(self) -> None:
        """Start the worker threads (again, after :meth:`close`: an app may be started twice)."""
        if self._closed:
            self._workers = ThreadPoolExecutor(2, thread_name_prefix="rulerag-work")
            self._gen_worker = ThreadPoolExecutor(1, thread_name_prefix="rulerag-generate")
            self.batcher = RetrievalBatcher(lambda *a, **kw: self._retrieve_many(*a, **kw), self.limits.retrieval_workers,
                                            self.limits.retrieval_batch)
            self._closed = False

    def close(self, wait: bool = False) -> None:
        """Stop the worker threads (``wait``: until they have exited)."""
        self._closed = True
        self._workers.shutdown(wait=wait, cancel_futures=True)
        self._gen_worker.shutdown(wait=wait, cancel_futures=True)
        self.batcher.close(wait)

    def require_ready(self) -> RuleRAG:
        if self.state == "failed":
            raise ApiError(503, "load_failed", "the index or models failed to load; the server log has the details. Fix the configuration and restart the server")
        if self.state != "ready":  # still loading (or, after preload, the generator still loading)
            raise ApiError(503, "not_ready", "the server is still loading the index and models. Retry in a few seconds (see /readyz)", {"Retry-After": "2"})
        return self.rag

    # ------------------------------------------------------------------ running

    def _admit(self) -> None:
        if self._closed:
            raise ApiError(503, "shutting_down", "the server is shutting down. Retry on another instance")
        if self._pending >= self.limits.max_pending:
            raise ApiError(503, "server_busy", f"the server has {self._pending} requests queued. Retry in a moment", {"Retry-After": "1"})

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        self._admit()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, lambda: fn(*args))
        finally:
            self._pending -= 1

    async def retrieve(self, questions: Sequence[str], k: int | None = None, mode: Mode | None = None,
                       relations: Sequence[str | None] | None = None, times: Sequence[str | None] | None = None) -> list[RetrievalResult]:
        """Retrieval results for ``questions``, in order, through the batching threads."""
        self.require_ready()
        self._admit()
        relations = relations or [None] * len(questions)
        times = times or [None] * len(questions)
        futures = []
        self._pending += 1
        try:
            for q, rel, when in zip(questions, relations, times):
                job = _Job(q, k, mode, rel, when, concurrent.futures.Future())
                self.batcher.submit(job)
                futures.append(asyncio.wrap_future(job.future))
            return list(await asyncio.gather(*futures))
        finally:
            for f in futures:
                f.cancel()  # no-op when done; frees the batcher from abandoned questions
            self._pending -= 1

    async def work(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker thread (retrieval, checking)."""
        return await self._run(self._workers, fn, *args)

    async def generate(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the generator thread."""
        return await self._run(self._gen_worker, fn, *args)

    # ------------------------------------------------------------------ the steps (worker threads)

    def _retrieve_many(self, questions: list[str], *, k: int | None, mode: Mode | None,
                       relations: Sequence[str | None] | None, times: Sequence[str | None] | None) -> list[RetrievalResult]:
        return self.require_ready().retrieve_many(questions, k=k, mode=mode, relations=relations, times=times)

    async def prepare(self, question: str, k: int | None, mode: Mode | None, instructions: Sequence[str],
                      constraints: Sequence[Constraint]) -> Prepared:
        """Retrieve (batched with concurrent requests) and build the prompt."""
        t0 = time.perf_counter()
        result = (await self.retrieve([question], k, mode))[0]
        shown = list(instructions) or [c.describe() for c in constraints]
        rag = self.require_ready()
        docs, warnings = rag.prompt_documents(result)  # instruction-like sentences removed or fenced
        prompt = rag.build_prompt(result, shown, docs)
        return Prepared(result, prompt, shown, time.perf_counter() - t0, warnings, docs)

    def run_generator(self, prepared: Prepared, constraints: Sequence[Constraint], max_new_tokens: int | None,
                      temperature: float | None, refine_rounds: int | None,
                      on_piece: Callable[[str], None] | None = None) -> Generated:
        """Generate (and verify-and-refine under constraints), like :meth:`RuleRAG.ask`, with
        per-request generation options passed as arguments. ``on_piece``: called with each piece of
        the first answer as the generator decodes it (token streaming)."""
        assert self.generator is not None
        g = self.settings.generation
        max_new = g.max_new_tokens if max_new_tokens is None else max_new_tokens
        temp = g.temperature if temperature is None else temperature
        t0 = time.perf_counter()
        if on_piece is None or not callable(getattr(self.generator, "stream", None)):
            raw = self.generator.generate(prepared.prompt, max_new_tokens=max_new, temperature=temp)
            if on_piece is not None:  # a generator that cannot stream: its answer is one piece
                on_piece(raw)
        else:
            pieces = []
            for piece in self.generator.stream(prepared.prompt, max_new_tokens=max_new, temperature=temp):
                pieces.append(piece)
                on_piece(piece)
            raw = "".join(pieces).strip()
        report, rounds = None, []
        if constraints:
            refined = verify_and_refine(
                self.generator, prepared.prompt, list(constraints), rounds=g.refine_rounds if refine_rounds is None else refine_rounds,
                max_new_tokens=max_new, temperature=temp, question=prepared.result.question,
                documents=[d.contents for d in prepared.result.documents], first_answer=raw,
            )
            raw, report, rounds = refined.answer, refined.report, refined.rounds
        answer = raw.strip() if prepared.shown else postprocess_answer(raw)
        return Generated(answer, raw, report, rounds, time.perf_counter() - t0)
