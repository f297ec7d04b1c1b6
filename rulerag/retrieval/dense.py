"""Dense retrieval: unit-norm embeddings in a FAISS inner-product index (cosine similarity).

Index families (``IndexSettings.faiss_type``): ``flat`` (exact, default), ``ivf`` and ``hnsw``
(approximate, for large corpora) and ``ivfpq`` (approximate, product-quantised codes: 1/32 of the
vectors' size at the default ``dim/8`` bytes; ``ivfpq_refine`` re-ranks its candidates exactly from
the stored vectors). IVF and IVF-PQ are trained on a bounded, seeded sample
(``ivf_train_size``). A GPU copy is used when ``faiss.get_num_gpus() > 0`` and the GPU policy
allows it; faiss-gpu is an optional install.

``DenseIndex.load(path, mmap=True)`` (``index.mmap``) maps the file instead of reading it, so a
server starts in milliseconds and the OS pages vectors in on demand; the mapped index is
read-only.

Example:
    >>> import numpy as np
    >>> vecs = np.eye(3, dtype=np.float32)
    >>> idx = DenseIndex.build(vecs)
    >>> [h.pos for h in idx.search(vecs[:1], depth=1)[0]]
    [0]
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm.auto import tqdm

from rulerag.config import FaissIndexType, GpuPolicy, IndexSettings
from rulerag.errors import ConfigError
from rulerag.retrieval.hits import Hit

log = logging.getLogger(__name__)


def gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


#: training vectors per PQ centroid (FAISS's k-means default: 256)
PQ_POINTS_PER_CENTROID = 64


def ivf_nlist(n: int, settings: IndexSettings) -> int:
    """IVF lists for ``n`` vectors: ``settings.ivf_nlist``, else ``4 * sqrt(n)`` (at least 1).

    Example:
        >>> ivf_nlist(606_824, IndexSettings())
        3115
    """
    return settings.ivf_nlist or max(1, int(4 * math.sqrt(n)))


def ivfpq_m(dim: int, settings: IndexSettings) -> int:
    """IVF-PQ sub-quantizers for ``dim``-dimensional vectors: ``settings.ivfpq_m``, else the largest
    divisor of ``dim`` not above ``dim / 8`` (8 dimensions per sub-quantizer: 48 for 384-d).

    Example:
        >>> ivfpq_m(384, IndexSettings()), ivfpq_m(100, IndexSettings())
        (48, 10)
    """
    if settings.ivfpq_m:
        if dim % settings.ivfpq_m:
            divisors = [m for m in range(1, dim + 1) if dim % m == 0]
            raise ConfigError(
                f"index.ivfpq_m={settings.ivfpq_m} does not divide the embedding dimension {dim}. "
                f"Fix: set index.ivfpq_m to one of {divisors} (or 0 for dimension/8)"
            )
        return settings.ivfpq_m
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


def train_size(n: int, dim: int, settings: IndexSettings) -> int:
    """How many vectors train an IVF / IVF-PQ index of ``n`` vectors (0 for untrained types).

    ``settings.ivf_train_size`` when set, else 64 per list (FAISS's k-means samples at most 256 per
    list anyway), for IVF-PQ at least ``40 * 2**nbits`` (FAISS wants 39 per PQ centroid); never
    more than ``n``. IVF-PQ's codebooks then use at most ``64 * 2**nbits`` of these vectors.

    Example:
        >>> train_size(606_824, 384, IndexSettings(faiss_type="ivf"))
        199360
        >>> train_size(5_000, 384, IndexSettings(faiss_type="ivfpq"))
        5000
    """
    kind = settings.faiss_type
    if kind not in (FaissIndexType.ivf, FaissIndexType.ivfpq):
        return 0
    if settings.ivf_train_size:
        return min(n, settings.ivf_train_size)
    want = 64 * ivf_nlist(n, settings)
    if kind == FaissIndexType.ivfpq:
        want = max(want, 40 * 2**settings.ivfpq_nbits)
    return min(n, want)


def _training_sample(vectors: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` rows of ``vectors`` drawn without replacement (seeded, in corpus order)."""
    if size >= len(vectors):
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=size, replace=False))
    return np.ascontiguousarray(vectors[rows])


def _make_index(dim: int, n: int, settings: IndexSettings) -> faiss.Index:
    """An empty (untrained) FAISS index of ``settings.faiss_type`` for ``n`` ``dim``-d vectors."""
    kind = settings.faiss_type
    if kind == FaissIndexType.flat:
        return faiss.IndexFlatIP(dim)
    if kind == FaissIndexType.hnsw:
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = settings.hnsw_ef_search
        return index
    nlist = ivf_nlist(n, settings)
    if n < nlist:
        raise ConfigError(
            f"IVF needs at least as many documents as lists ({n} < {nlist}). Fix: use faiss_type=flat "
            "for small corpora or set index.ivf_nlist lower"
        )
    quantizer = faiss.IndexFlatIP(dim)
    if kind == FaissIndexType.ivfpq:
        m, nbits = ivfpq_m(dim, settings), settings.ivfpq_nbits
        if n < 2**nbits:
            raise ConfigError(
                f"IVF-PQ with {nbits}-bit codes needs at least {2**nbits} documents to train its "
                f"codebooks ({n} given). Fix: use faiss_type=flat for small corpora or lower index.ivfpq_nbits"
            )
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
        # each of the m codebooks is a k-means in dim/m dimensions, which FAISS runs slowly; 64 points
        # per centroid (16,384 at 8 bits; FAISS warns below 39) is a quarter of its default 256
        index.pq.cp.max_points_per_centroid = PQ_POINTS_PER_CENTROID
        index.nprobe = settings.ivf_nprobe
        if settings.ivfpq_refine:  # exact re-ranking of refine * k PQ candidates from the stored vectors
            refined = faiss.IndexRefineFlat(index)
            refined.k_factor = settings.ivfpq_refine
            return refined
        return index
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = settings.ivf_nprobe
    return index


def _ivf_part(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF index inside ``index`` (itself, or the base of an IVF-PQ with re-ranking)."""
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    return index if isinstance(index, faiss.IndexIVF) else None


def exact_storage(index: faiss.Index) -> faiss.Index | None:
    """The part of ``index`` that holds its vectors exactly and returns them by id with
    ``reconstruct_n``: the index itself (flat, IVF-flat: after ``make_direct_map``), HNSW's flat
    storage, or the flat re-ranking index of an IVF-PQ with ``ivfpq_refine``. ``None`` when only
    lossy codes are stored (IVF-PQ without re-ranking, or a FAISS type rulerag does not build).

    Example:
        >>> isinstance(exact_storage(faiss.IndexHNSWFlat(8, 16)), faiss.IndexFlat)
        True
        >>> exact_storage(faiss.IndexIVFPQ(faiss.IndexFlatIP(8), 8, 2, 2, 4)) is None
        True
    """
    if isinstance(index, faiss.IndexRefine):
        refine = faiss.downcast_index(index.refine_index)
        return refine if isinstance(refine, faiss.IndexFlat) else None
    if isinstance(index, faiss.IndexHNSW):
        storage = faiss.downcast_index(index.storage)
        return storage if isinstance(storage, faiss.IndexFlat) else None
    if isinstance(index, faiss.IndexIVFFlat):
        index.make_direct_map()  # id -> (list, offset), so reconstruct_n can find each vector
        return index
    if isinstance(index, faiss.IndexFlat):
        return index
    return None


def _read_index(path: Path, mmap: bool) -> tuple[faiss.Index, bool]:
    """Read a FAISS file, memory-mapped when asked and possible. Returns ``(index, mapped)``.

    FAISS builds with ``IO_FLAG_MMAP_IFC`` (1.15 here) map flat, HNSW, IVF and IVF-PQ files without
    copying; older ones can only map the inverted lists of IVF indexes (``IO_FLAG_MMAP``). A file
    that cannot be mapped is read into memory with a warning."""
    if not mmap:
        return faiss.read_index(str(path)), False
    zero_copy = getattr(faiss, "IO_FLAG_MMAP_IFC", None)
    if zero_copy is not None:
        try:
            return faiss.read_index(str(path), zero_copy), True
        except RuntimeError as exc:  # an index type this FAISS cannot map
            log.warning("%s cannot be memory-mapped by FAISS %s (%s); reading it into memory instead",
                        path, faiss.__version__, str(exc).splitlines()[0])
            return faiss.read_index(str(path)), False
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    if isinstance(index, faiss.IndexIVF):
        return index, True
    log.warning("FAISS %s can memory-map only IVF indexes; %s (%s) was read into memory. "
                "Fix: upgrade faiss-cpu (1.15 maps every index type without copying)",
                faiss.__version__, path, type(index).__name__)
    return index, False


#: FAISS's exhaustive (flat) search multiplies the query batch by the vectors with BLAS only when
#: ``nq * d >= faiss.cvar.distance_compute_blas_threshold``; otherwise it scans every vector once
#: per query. FAISS 1.14+ set that to 128,000, tuned for many OpenMP threads: at d = 384 a batch
#: needs 334 queries before BLAS is used, and on one thread a 256-query batch took 2.4 s instead of
#: 0.13 s (RuleQA-I). On one thread BLAS wins from about 800 (faiss PR #5109, open, proposes
#: 800 per thread); :meth:`DenseIndex.search` sets this per-thread value. Older FAISS compares
#: ``nq`` alone (default 20) and is left as it is.
BLAS_PER_THREAD = 800
_BLAS_BY_PRODUCT = faiss.cvar.distance_compute_blas_threshold >= 10_000  # read before anything changes it


def _use_blas_for_batches(threads: int) -> None:
    if _BLAS_BY_PRODUCT:
        faiss.cvar.distance_compute_blas_threshold = BLAS_PER_THREAD * max(1, threads)


class DenseIndex:
    """A FAISS index plus the search-time knobs."""

    #: OpenMP threads of a search (``None``: FAISS's default, all cores). OpenMP thread counts are
    #: per calling thread, so :meth:`search` applies this in whichever thread searches (a server's
    #: worker threads do not inherit ``faiss.omp_set_num_threads`` called in another thread).
    search_threads: int | None = None

    def __init__(
        self, index: faiss.Index, settings: IndexSettings | None = None, *, mmapped: bool = False, trained_on: int | None = None
    ) -> None:
        self.settings = settings or IndexSettings()
        self.cpu_index = index
        self.mmapped = mmapped  #: the index's data are mapped from its file (read-only)
        self.trained_on = trained_on  #: training vectors used by :meth:`build` (None when loaded)
        self.index = self._maybe_gpu(index)

    @property
    def dimension(self) -> int:
        return int(self.cpu_index.d)

    @property
    def size(self) -> int:
        return int(self.cpu_index.ntotal)

    @property
    def on_gpu(self) -> bool:
        return self.index is not self.cpu_index

    def _maybe_gpu(self, index: faiss.Index) -> faiss.Index:
        policy = self.settings.gpu
        if policy == GpuPolicy.never:
            return index
        n = gpu_count()
        if n == 0:
            if policy == GpuPolicy.always:
                raise ConfigError("index.gpu=always but FAISS sees no GPU. Fix: install faiss-gpu on a CUDA machine or set index.gpu=auto")
            return index
        if isinstance(index, faiss.IndexHNSW):
            log.info("HNSW has no FAISS GPU implementation; searching on CPU")
            return index
        try:  # pragma: no cover - needs a GPU
            gpu_index = faiss.index_cpu_to_all_gpus(index)
        except RuntimeError as exc:  # pragma: no cover - e.g. an IVF-PQ code size the GPU kernels lack
            if policy == GpuPolicy.always:
                raise ConfigError(f"index.gpu=always but FAISS cannot copy this {type(index).__name__} to the GPU ({str(exc).splitlines()[0]}). "
                                  "Fix: set index.gpu=auto to search on CPU, or rebuild with another index.ivfpq_m") from exc
            log.warning("FAISS cannot copy this %s to the GPU (%s); searching on CPU", type(index).__name__, str(exc).splitlines()[0])
            return index
        if self.mmapped:  # pragma: no cover - needs a GPU
            log.info("the memory-mapped index was copied to the GPU; index.mmap saves no host memory here")
        return gpu_index  # pragma: no cover - needs a GPU

    def params(self) -> dict[str, Any]:
        """The resolved parameters of the FAISS index (what ``0 = auto`` settings became).

        Example:
            >>> DenseIndex.build(np.eye(4, dtype=np.float32)).params()
            {'type': 'flat', 'dimension': 4, 'size': 4, 'bytes_per_vector': 16, 'mmapped': False}
        """
        index = self.cpu_index
        out: dict[str, Any] = {"type": _type_name(index), "dimension": self.dimension, "size": self.size}
        ivf = _ivf_part(index)
        if ivf is not None:
            out.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
            if isinstance(ivf, faiss.IndexIVFPQ):
                out.update(m=int(ivf.pq.M), nbits=int(ivf.pq.nbits))
            out["bytes_per_vector"] = int(ivf.code_size) + 8  # code + id in the inverted list
            if isinstance(index, faiss.IndexRefine):
                out["refine"] = int(index.k_factor)
                out["bytes_per_vector"] += 4 * self.dimension
        elif isinstance(index, faiss.IndexHNSW):
            out.update(hnsw_m=int(index.hnsw.nb_neighbors(1)), ef_search=int(index.hnsw.efSearch),
                       ef_construction=int(index.hnsw.efConstruction), bytes_per_vector=4 * self.dimension)
        else:
            out["bytes_per_vector"] = 4 * self.dimension
        if self.trained_on is not None:
            out["trained_on"] = self.trained_on
        out["mmapped"] = self.mmapped
        return out

    @classmethod
    def build(cls, vectors: np.ndarray, settings: IndexSettings | None = None, *, progress: bool = False) -> DenseIndex:
        """Index unit-norm ``vectors`` (``(n, d)`` float32). IVF and IVF-PQ are trained on a
        seeded sample of :func:`train_size` vectors, so building is deterministic.

        ``progress``: add the vectors in chunks under a progress bar (the same index for flat,
        IVF and IVF-PQ; for HNSW an equally good graph, not the identical one).

        Example:
            >>> rng = np.random.default_rng(0)
            >>> vecs = rng.normal(size=(2000, 32)).astype(np.float32)
            >>> idx = DenseIndex.build(vecs, IndexSettings(faiss_type="ivfpq", ivf_nlist=8, ivfpq_nbits=6))
            >>> idx.params()["m"], idx.params()["trained_on"]
            (4, 2000)
        """
        settings = settings or IndexSettings()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        index = _make_index(dim, n, settings)
        trained_on = None
        if not index.is_trained:
            trained_on = train_size(n, dim, settings)
            index.train(_training_sample(vectors, trained_on))
        if progress:
            step = 16_384
            with tqdm(total=n, desc=f"building {settings.faiss_type.value}", unit="vec", mininterval=1.0) as bar:
                for start in range(0, n, step):
                    index.add(vectors[start : start + step])
                    bar.update(min(step, n - start))
        else:
            index.add(vectors)
        return cls(index, settings, trained_on=trained_on)

    def stored_vectors(self, *, progress: bool = False) -> np.ndarray | None:
        """The indexed vectors, exactly as added, in id order (``(size, dimension)`` float32);
        ``None`` when the index keeps only lossy codes (see :func:`exact_storage`).

        Example:
            >>> vecs = np.eye(3, dtype=np.float32)
            >>> bool(np.array_equal(DenseIndex.build(vecs, IndexSettings(faiss_type="hnsw")).stored_vectors(), vecs))
            True
        """
        storage = exact_storage(self.cpu_index)
        if storage is None:
            return None
        out = np.empty((self.size, self.dimension), dtype=np.float32)
        step = 65_536
        with tqdm(total=self.size, desc="reading vectors", unit="vec", disable=not progress, mininterval=1.0) as bar:
            for start in range(0, self.size, step):
                count = min(step, self.size - start)
                out[start : start + count] = storage.reconstruct_n(start, count)
                bar.update(count)
        return out

    def search(self, query_vectors: np.ndarray, depth: int) -> list[list[Hit]]:
        """Top ``depth`` hits per query vector, all queries in one FAISS call (a flat index reads
        its vectors once per call, whatever the number of queries: BLAS from 3 queries at d = 384
        on one thread, see :data:`BLAS_PER_THREAD`)."""
        if len(query_vectors) == 0:
            return []
        if query_vectors.shape[1] != self.dimension:
            raise ConfigError(
                f"query vectors have dimension {query_vectors.shape[1]} but the index has {self.dimension}. "
                "Fix: query with the embedding model the index was built with (see `rulerag index info`)"
            )
        if self.search_threads is not None and faiss.omp_get_max_threads() != self.search_threads:
            faiss.omp_set_num_threads(self.search_threads)
        _use_blas_for_batches(faiss.omp_get_max_threads())
        scores, ids = self.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), min(depth, self.size))
        # one FAISS call for every query of the batch; tolist() converts to Python numbers in C
        return [[Hit(i, s) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(ids.tolist(), scores.tolist())]

    def save(self, path: Path) -> None:
        """Write the (CPU) index to ``path`` in FAISS's format."""
        faiss.write_index(self.cpu_index, str(path))

    @classmethod
    def load(cls, path: Path, settings: IndexSettings | None = None, *, mmap: bool | None = None) -> DenseIndex:
        """Read an index written by :meth:`save`; search knobs (nprobe, efSearch) come from ``settings``.

        ``mmap`` (default ``settings.mmap``): map the file instead of reading it. Loading then takes
        milliseconds whatever the index size, pages are read on first use (the first queries are
        slower on a cold disk cache) and several processes share one copy in the page cache. The
        mapped index is read-only: adding vectors to it aborts inside FAISS. Types FAISS cannot
        map are read into memory with a warning (``mmapped`` tells which happened).

        Example:
            >>> DenseIndex.load(Path("indexes/demo/dense.faiss"), mmap=True).mmapped   # doctest: +SKIP
            True
        """
        settings = settings or IndexSettings()
        index, mapped = _read_index(Path(path), settings.mmap if mmap is None else mmap)
        ivf = _ivf_part(index)
        if ivf is not None:
            ivf.nprobe = settings.ivf_nprobe
        if isinstance(index, faiss.IndexRefine) and settings.ivfpq_refine:
            index.k_factor = settings.ivfpq_refine
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = settings.hnsw_ef_search
        return cls(index, settings, mmapped=mapped)


def _type_name(index: faiss.Index) -> str:
    """The ``faiss_type`` name of a FAISS index (its class name when it is none of ours)."""
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    if isinstance(index, faiss.IndexIVFPQ):
        return FaissIndexType.ivfpq.value
    if isinstance(index, faiss.IndexIVF):
        return FaissIndexType.ivf.value
    if isinstance(index, faiss.IndexHNSW):
        return FaissIndexType.hnsw.value
    if isinstance(index, faiss.IndexFlat):
        return FaissIndexType.flat.value
    return type(index).__name__
