"""The ONNX Runtime path of :class:`rulerag.embedding.Encoder` (``embedding.backend: onnx|auto``).

A sentence-transformers model whose pipeline is Transformer + mean Pooling [+ Normalize] has its
transformer exported once to ONNX (cached per model directory under ``$RULERAG_ONNX_CACHE_DIR``,
else ``<cache>/onnx``, written atomically under a lock) and run by an ONNX Runtime CPU session;
pooling and normalisation are done in numpy. Every session is checked against the model's own
vectors on probe texts when it opens; a cached file that fails is exported again, once.

Example:
    >>> onnx_missing() is None or "pip install" in onnx_missing()
    True
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rulerag.errors import ConfigError
from rulerag.io import atomic_file, cache_root, file_lock

log = logging.getLogger(__name__)

#: texts both fast paths (ONNX, packed torch) are checked on against sentence-transformers
PROBE_TEXTS = ["Which country is Alice Marlow a citizen of?", "  born in  ", "Alice Marlow was born in Tarvik, a town in Norland."]

_FIX_TORCH = "or use embedding.backend=torch (RULERAG_EMBEDDING__BACKEND=torch)"


def onnx_missing() -> str | None:
    """Why the ONNX backend cannot run here (a missing package), or ``None`` when it can."""
    missing = []
    for module in ("onnxruntime", "onnx"):
        try:
            __import__(module)
        except ImportError:  # a broken install raises ImportError subclasses too
            missing.append(module)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return f"{' and '.join(missing)} {verb} not installed. Fix: pip install onnxruntime onnx, {_FIX_TORCH}"
    return None


def onnx_unsupported(model: Any) -> str | None:
    """Why ``model`` (a ``SentenceTransformer``) cannot run on the ONNX backend, or ``None``.

    Supported: a text Transformer, then Pooling with mean pooling only, optionally Normalize; no
    prompts or truncated dimension; on CPU."""
    try:
        names = [type(m).__name__ for m in model]
    except TypeError:
        return "it is not a sentence-transformers pipeline"
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return f"its sentence-transformers pipeline is {' + '.join(names) or 'empty'}, not Transformer + Pooling [+ Normalize]"
    prompts = getattr(model, "prompts", None) or {}
    if any(prompts.values()) or getattr(model, "default_prompt_name", None) or getattr(model, "truncate_dim", None):
        return "it uses prompts or a truncated dimension"
    pooling = model[1].get_config_dict()
    if "pooling_mode" in pooling:  # sentence-transformers >= 6: a mode name or a list of them
        mode = pooling["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else list(mode)
    else:  # older: one boolean per mode
        modes = [k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes not in (["mean"], ["mean_tokens"]):
        return f"its pooling is {', '.join(map(str, modes)) or 'none'!r}; only mean pooling is supported"
    transformer = model[0]
    if getattr(transformer, "auto_model", None) is None or getattr(transformer, "tokenizer", None) is None:
        return "its first module has no Hugging Face model and tokenizer"
    if getattr(transformer, "transformer_task", None) not in (None, "feature-extraction"):
        return f"its transformer task is {transformer.transformer_task!r}, not feature extraction"
    if not {"input_ids", "attention_mask"} <= set(transformer.tokenizer.model_input_names):
        return "its tokenizer does not produce input_ids and attention_mask"
    if str(model.device) != "cpu":
        return f"it runs on {model.device} and the ONNX backend runs on CPU only. Fix: set embedding.device=cpu, {_FIX_TORCH}"
    return None


def _model_key(root: Path) -> str:
    """The identity of a model directory for the export cache: its resolved path and every model
    file's size and mtime (cheap), plus the versions that shape the exported graph."""
    import torch
    import transformers

    root = root.resolve()
    digest = hashlib.sha256(f"{root}\nformat {_OnnxEncoder.FORMAT} opset {_OnnxEncoder.OPSET} torch {torch.__version__} "
                            f"transformers {transformers.__version__}\n".encode())
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or rel.name == "README.md" or not p.is_file():
            continue
        st = p.stat()
        digest.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def onnx_cache_dir(model_dir: str | Path, label: str | None = None) -> Path:
    """Where the ONNX export of ``model_dir`` is cached: ``<root>/<label>-<key>/`` with ``<root>`` =
    ``$RULERAG_ONNX_CACHE_DIR``, else ``<cache>/onnx`` where ``<cache>`` is ``$RULERAG_CACHE_DIR`` or
    ``~/.cache/rulerag`` (:func:`rulerag.io.cache_root`, shared with the generators)."""
    model_dir = Path(model_dir)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(label or str(model_dir.resolve())).name)[:64] or "model"
    env = os.environ.get("RULERAG_ONNX_CACHE_DIR")
    root = Path(env).expanduser() if env else cache_root() / "onnx"
    return root / f"{slug}-{_model_key(model_dir)[:16]}"


def _keyword_forward(auto_model: Any, names: list[str]):
    """A module whose positional forward calls ``auto_model`` with keyword arguments (transformers 5
    models do not take these inputs positionally) and returns the last hidden state."""
    import torch

    class KeywordForward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = auto_model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs)))[0]

    return KeywordForward()


_EXPORT_LOCK = threading.Lock()


class _OnnxEncoder:
    """The ONNX Runtime path of :class:`Encoder`: the model's transformer exported once to ONNX
    (cached per model directory), run by a CPU session created on first use, then mean pooling
    with the attention mask and L2 normalisation in numpy: the arithmetic of the sentence-transformers
    pipelines :func:`onnx_unsupported` accepts. The session is checked against the model's own
    vectors on probe texts when it is created; an unusable or mismatching cached file is exported
    again once."""

    #: ONNX opset of the export
    OPSET = 17
    #: version of the export layout; part of the cache key
    FORMAT = 1
    #: largest difference from sentence-transformers' vectors accepted in the start-up check
    TOLERANCE = 1e-4
    MODEL_FILE = "model.onnx"
    MARKER = "rulerag-onnx.json"
    _PROBE = PROBE_TEXTS

    def __init__(self, model: Any, model_dir: Path, label: str | None = None) -> None:
        self.model = model
        self.model_dir = Path(model_dir)
        self.tokenizer = model[0].tokenizer
        self.max_length = model.max_seq_length
        self.directory = onnx_cache_dir(self.model_dir, label)
        self.path = self.directory / self.MODEL_FILE
        self.input_names = self._input_names()
        self._feeds: list[str] = []
        self._session: Any = None
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()  # fast tokenizers refuse concurrent calls that change truncation

    def _input_names(self) -> list[str]:
        import inspect

        accepted = set(inspect.signature(self.model[0].auto_model.forward).parameters)
        produced = set(self.tokenizer.model_input_names)
        return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in produced and n in accepted]

    # ------------------------------------------------------------------ export and session
    def session(self) -> Any:
        """The ONNX Runtime session, created (and the model exported, when not cached) on first use."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._open()
        return self._session

    def _lock_path(self) -> Path:
        return self.directory.parent / f".{self.directory.name}.lock"

    def _export_locked(self, *, again: bool) -> bool:
        """Export under the in-process and inter-process locks; unless ``again``, skip it when another
        thread or process has written the file meanwhile. True when this call exported."""
        with _EXPORT_LOCK, file_lock(self._lock_path()):
            if not again and self.path.is_file():
                return False
            self._export()
            return True

    def _open(self) -> Any:
        fresh = False
        if not self.path.is_file():
            fresh = self._export_locked(again=False)
        try:
            return self._load_checked()
        except Exception as exc:  # noqa: BLE001 - any unusable file: export again, once
            if fresh:
                raise self._unusable(exc) from exc
            log.warning("the cached ONNX export %s is unusable (%s); exporting it again", self.path, exc)
        self._export_locked(again=True)
        try:
            return self._load_checked()
        except Exception as exc:  # noqa: BLE001
            raise self._unusable(exc) from exc

    def _unusable(self, exc: BaseException) -> ConfigError:
        return ConfigError(
            f"the ONNX export of embedding model {str(self.model_dir)!r} at {self.path} is unusable, also freshly exported: "
            f"{exc}. Fix: delete {self.directory} and retry, {_FIX_TORCH}"
        )

    def _export(self) -> None:
        """Write the ONNX file: to a temporary file next to it, renamed over it when complete."""
        import torch

        t0 = time.perf_counter()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob(f".{self.MODEL_FILE}.*.tmp"):  # left by a killed export
                stale.unlink(missing_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.MODEL_FILE}.", suffix=".tmp", dir=self.directory)
            os.close(fd)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the ONNX export of the embedding model to {self.directory}: {exc}. Fix: set RULERAG_CACHE_DIR to a "
                f"writable directory, {_FIX_TORCH}"
            ) from exc
        try:
            names = self.input_names
            with self._tokenizer_lock:
                dummy = self.tokenizer(["a b", self._PROBE[2]], padding=True, truncation=True, max_length=self.max_length,
                                       return_tensors="pt")  # unequal lengths: the traced graph keeps the padding mask
            axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(_keyword_forward(self.model[0].auto_model, names), tuple(dummy[n] for n in names), tmp,
                                  input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
                                  opset_version=self.OPSET, do_constant_folding=True, dynamo=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except Exception as exc:
            Path(tmp).unlink(missing_ok=True)
            raise ConfigError(
                f"exporting embedding model {str(self.model_dir)!r} to ONNX failed: {exc}. Fix: {_FIX_TORCH.removeprefix('or ')}"
            ) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._write_marker(time.perf_counter() - t0)
        log.info("exported %s to ONNX in %.1fs: %s", self.model_dir, time.perf_counter() - t0, self.path)

    def _write_marker(self, seconds: float) -> None:
        """Provenance of the export (informational: the file is checked against the model when loaded)."""
        import json

        import onnx
        import torch
        import transformers

        meta = {"source": str(self.model_dir.resolve()), "opset": self.OPSET, "format": self.FORMAT, "inputs": self.input_names,
                "torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
                "export_s": round(seconds, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            with atomic_file(self.directory / self.MARKER) as fh:
                json.dump(meta, fh, indent=2)
        except OSError as exc:  # pragma: no cover - the export itself was written
            log.warning("could not write %s: %s", self.directory / self.MARKER, exc)

    def _load_checked(self) -> Any:
        """A session on the cached file, checked against sentence-transformers on the probe texts."""
        import onnxruntime as ort
        import torch

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())  # the server sets torch's threads before loading
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        feeds = [i.name for i in session.get_inputs()]
        if not set(feeds) <= set(self.input_names) or "last_hidden_state" not in [o.name for o in session.get_outputs()]:
            raise ValueError(f"its inputs {feeds} do not match the model's {self.input_names}")
        expected = self.model.encode(self._PROBE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        got = self._run(session, feeds, self._PROBE)
        if got.shape != expected.shape:
            raise ValueError(f"its vectors have shape {got.shape}, the model's {expected.shape}")
        diff = float(np.max(np.abs(got - expected)))
        if not diff <= self.TOLERANCE:
            raise ValueError(f"its vectors differ from the model's by up to {diff:.2g}")
        self._feeds = feeds
        return session

    # ------------------------------------------------------------------ encoding
    def _run(self, session: Any, feeds: list[str], texts: list[str]) -> np.ndarray:
        with self._tokenizer_lock:
            features = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        hidden = session.run(["last_hidden_state"], {n: features[n].astype(np.int64, copy=False) for n in feeds})[0]
        mask = features["attention_mask"].astype(hidden.dtype, copy=False)
        sums = (mask[:, None, :] @ hidden)[:, 0, :]  # masked sum over tokens, (n, d)
        means = sums / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return (means / norms).astype(np.float32, copy=False)

    def encode(self, texts: list[str], *, batch_size: int, progress: bool = False) -> np.ndarray:
        """Unit vectors for ``texts`` (non-empty), in order. Texts are sorted by length within each
        chunk of ``16 * batch_size`` so that a batch pads little."""
        session = self.session()
        chunk = batch_size * 16
        order: list[int] = []
        parts = []
        with tqdm(total=len(texts), desc="embedding", unit="doc", disable=not progress, smoothing=0.1) as bar:
            for start in range(0, len(texts), chunk):
                idx = sorted(range(start, min(len(texts), start + chunk)), key=lambda i: -len(texts[i]))
                for b in range(0, len(idx), batch_size):
                    sel = idx[b : b + batch_size]
                    parts.append(self._run(session, self._feeds, [texts[i] for i in sel]))
                    order.extend(sel)
                bar.update(len(idx))
        vectors = np.concatenate(parts)
        out = np.empty_like(vectors)
        out[np.asarray(order)] = vectors
        return np.ascontiguousarray(out, dtype=np.float32)


class _OnnxNotApplicable(ConfigError):
    """The ONNX backend does not apply (a missing package, an unsupported model): ``auto`` uses torch quietly."""


_ONNX: weakref.WeakKeyDictionary[Any, dict[str, _OnnxEncoder | ConfigError]] = weakref.WeakKeyDictionary()
_ONNX_LOCK = threading.Lock()


def _onnx_for(model: Any, model_dir: Path, label: str | None = None) -> _OnnxEncoder | ConfigError:
    """One ONNX decision per loaded model and cache directory: a ready :class:`_OnnxEncoder`
    (exported, session open and checked), or the :class:`ConfigError` saying why not."""
    with _ONNX_LOCK:
        decisions = _ONNX.setdefault(model, {})
        key = str(onnx_cache_dir(model_dir, label))
        if key not in decisions:
            try:
                problem = onnx_missing() or onnx_unsupported(model)
                if problem is not None:
                    raise _OnnxNotApplicable(f"embedding model {label or str(model_dir)!r} cannot use the ONNX backend: {problem}"
                                             + ("" if "Fix:" in problem else f". Fix: {_FIX_TORCH.removeprefix('or ')}"))
                onnx = _OnnxEncoder(model, model_dir, label)
                onnx.session()
                decisions[key] = onnx
            except ConfigError as exc:
                decisions[key] = exc
            except Exception as exc:  # noqa: BLE001 - anything else: the same clear error
                decisions[key] = ConfigError(f"the ONNX backend failed for embedding model {label or str(model_dir)!r}: {exc}. "
                                             f"Fix: {_FIX_TORCH.removeprefix('or ')}")
        return decisions[key]
