"""Dense retrieval: unit-norm embeddings in a FAISS inner-product index (cosine similarity).

Index families (``IndexSettings.faiss_type``): ``flat`` (exact, default), ``ivf`` and ``hnsw``
(approximate, for large corpora). A GPU copy is used when ``faiss.get_num_gpus() > 0`` and the
GPU policy allows it; faiss-gpu is an optional install.

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

import faiss
import numpy as np

from rulerag.config import FaissIndexType, GpuPolicy, IndexSettings
from rulerag.errors import ConfigError
from rulerag.retrieval.hits import Hit

log = logging.getLogger(__name__)


def gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def _make_index(dim: int, n: int, settings: IndexSettings) -> faiss.Index:
    kind = settings.faiss_type
    if kind == FaissIndexType.flat:
        return faiss.IndexFlatIP(dim)
    if kind == FaissIndexType.hnsw:
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = settings.hnsw_ef_search
        return index
    nlist = settings.ivf_nlist or max(1, int(4 * math.sqrt(n)))
    if n < nlist:
        raise ConfigError(
            f"IVF needs at least as many documents as lists ({n} < {nlist}). Fix: use faiss_type=flat "
            "for small corpora or set index.ivf_nlist lower"
        )
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = settings.ivf_nprobe
    return index


class DenseIndex:
    """A FAISS index plus the search-time knobs."""

    def __init__(self, index: faiss.Index, settings: IndexSettings | None = None) -> None:
        self.settings = settings or IndexSettings()
        self.cpu_index = index
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
        if isinstance(index, faiss.IndexHNSWFlat):
            log.info("HNSW has no FAISS GPU implementation; searching on CPU")
            return index
        return faiss.index_cpu_to_all_gpus(index)  # pragma: no cover - needs a GPU

    @classmethod
    def build(cls, vectors: np.ndarray, settings: IndexSettings | None = None) -> DenseIndex:
        """Index unit-norm ``vectors`` (``(n, d)`` float32)."""
        settings = settings or IndexSettings()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = _make_index(vectors.shape[1], vectors.shape[0], settings)
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        return cls(index, settings)

    def search(self, query_vectors: np.ndarray, depth: int) -> list[list[Hit]]:
        if len(query_vectors) == 0:
            return []
        if query_vectors.shape[1] != self.dimension:
            raise ConfigError(
                f"query vectors have dimension {query_vectors.shape[1]} but the index has {self.dimension}. "
                "Fix: query with the embedding model the index was built with (see `rulerag index info`)"
            )
        scores, ids = self.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), min(depth, self.size))
        return [[Hit(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(ids, scores)]

    def save(self, path: Path) -> None:
        faiss.write_index(self.cpu_index, str(path))

    @classmethod
    def load(cls, path: Path, settings: IndexSettings | None = None, *, mmap: bool = False) -> DenseIndex:
        flags = faiss.IO_FLAG_MMAP if mmap else 0
        index = faiss.read_index(str(path), flags)
        settings = settings or IndexSettings()
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = settings.ivf_nprobe
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = settings.hnsw_ef_search
        return cls(index, settings)
