"""Local model directories: completion marker, validation, fingerprints.

Every directory written by ``rulerag finetune`` ends with :data:`MARKER` (``rulerag-finetune.json``),
written last inside the temporary directory before it is renamed into place. It records what the
directory is (``kind``: ``retriever`` or ``generator-adapter``), the base model, every file's size
and SHA-256, and the directory's :func:`fingerprint`.

:func:`validate_model_dir` is the cheap check run whenever a local model directory is used (no file
is hashed; results are cached per directory state): a readable ``config.json``, a weights file whose
safetensors header matches its size (a truncated copy is caught), and, for a directory written by
``rulerag finetune``, the marker with every recorded file present at its recorded size. A directory
that looks like ours (our model card, or an unrenamed ``.NAME.*.tmp`` training directory) but lacks
the marker is refused: the training did not finish or the copy is partial. :func:`verify_model_dir`
also hashes every file against the marker.

This module imports no heavy library (no torch) and nothing above it: :mod:`rulerag.embedding` and
:mod:`rulerag.generation.backends` check the directories they load with it, and :mod:`rulerag.finetune`
writes the marker with it.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> validate_model_dir(d)
    Traceback (most recent call last):
    ...
    rulerag.checkpoint.CheckpointError: ...config.json is missing...Fix: ...
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import struct
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rulerag.corpus import file_sha256
from rulerag.errors import ConfigError

#: Written last into every directory made by ``rulerag finetune``; its presence marks a complete one.
MARKER = "rulerag-finetune.json"
#: Version of the marker's layout.
MARKER_FORMAT = 1
#: Tag in the YAML header of our model cards (README.md); a directory carrying it must have the marker.
CARD_TAG = "rulerag-finetune"
RETRIEVER = "retriever"
ADAPTER = "generator-adapter"

#: Files that do not change what a model computes: left out of fingerprints.
_NOT_MODEL = {"README.md", MARKER}
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_TMP_DIR = re.compile(r"^\..+\.tmp$")  # rulerag.io.atomic_dir's temporary directories


class CheckpointError(ConfigError):
    """A model or adapter directory that is missing, partial or corrupt. The message names the fix."""


@dataclass(frozen=True)
class ModelDirInfo:
    """What :func:`validate_model_dir` found: the directory, its kind, and its marker (if any)."""

    path: Path
    kind: str  #: ``retriever``, ``generator-adapter`` or ``model`` (a plain, non-rulerag directory)
    marker: dict[str, Any] | None

    @property
    def base_model(self) -> str | None:
        return (self.marker or {}).get("base_model")


def _fix(kind: str) -> str:
    what = "rulerag finetune generator" if kind == ADAPTER else "rulerag finetune retriever"
    return f"re-run `{what} ... --overwrite` to rewrite it, or copy the whole directory again from a good copy"


def _model_files(root: Path) -> list[Path]:
    """Regular files under ``root`` that make up the model (hidden files, README and marker left out)."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts) or str(rel) in _NOT_MODEL:
            continue
        out.append(p)
    return out


def file_table(root: str | Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size": bytes, "sha256": hex}}`` for the model files of ``root``."""
    root = Path(root)
    return {str(p.relative_to(root)): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in _model_files(root)}


def _fingerprint_of(files: dict[str, dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\t{files[rel]['sha256']}\n".encode())
    return digest.hexdigest()


_FP_CACHE: dict[tuple, str] = {}
_FP_LOCK = threading.Lock()


def _state(root: Path) -> tuple:
    """Cheap signature of a directory's model files (path, size, mtime): changes when any file does."""
    return tuple((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in _model_files(root))


def fingerprint(path: str | Path) -> str:
    """SHA-256 over the sorted ``(relative path, file SHA-256)`` of a model directory's files.

    README.md, the marker and hidden files are left out, so editing a model card does not change
    it. Cached per directory state within a process (about a second for a 90 MB model, once).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "config.json").write_text("{}")
        >>> len(fingerprint(d))
        64
    """
    root = Path(path).resolve()
    key = (str(root), _state(root))
    with _FP_LOCK:
        if key in _FP_CACHE:
            return _FP_CACHE[key]
    value = _fingerprint_of(file_table(root))
    with _FP_LOCK:
        _FP_CACHE[key] = value
    return value


def write_marker(root: str | Path, kind: str, base_model: str | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write :data:`MARKER` into ``root`` (call last, inside the temporary directory); returns it."""
    import importlib.metadata as md

    root = Path(root)
    files = file_table(root)
    try:
        version = md.version("rulerag")
    except md.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "unknown"
    marker = {
        "format": MARKER_FORMAT,
        "kind": kind,
        "base_model": base_model,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rulerag_version": version,
        "fingerprint": _fingerprint_of(files),
        "files": files,
        **(extra or {}),
    }
    (root / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return marker


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The marker of a directory, ``None`` when it has none; a corrupt marker is a :class:`CheckpointError`."""
    mpath = Path(path) / MARKER
    if not mpath.is_file():
        return None
    try:
        marker = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{mpath} is corrupt ({exc}). Fix: {_fix(RETRIEVER)}") from exc
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict) or marker.get("kind") not in (RETRIEVER, ADAPTER):
        raise CheckpointError(f"{mpath} is not a rulerag completion marker (no 'kind' or 'files'). Fix: {_fix(RETRIEVER)}")
    if marker.get("format") != MARKER_FORMAT:
        raise CheckpointError(f"{mpath} has marker format {marker.get('format')}, this rulerag reads {MARKER_FORMAT}. Fix: {_fix(marker['kind'])}")
    return marker


def _looks_like_ours(root: Path) -> bool:
    if _TMP_DIR.match(root.name):
        return True
    card = root / "README.md"
    if card.is_file():
        try:
            head = card.read_text(encoding="utf-8", errors="replace")[:2000]
        except OSError:
            return False
        return CARD_TAG in head
    return False


def _read_json(path: Path, what: str, kind: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}): the {what} is corrupt. Fix: {_fix(kind)}") from exc


def check_safetensors(path: Path, kind: str = RETRIEVER) -> None:
    """Refuse a safetensors file whose header is unreadable or does not account for its size.

    Reads only the header (a few KB): a truncated or padded file fails here instead of deep inside
    a model loader."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than its 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8 or n > 100_000_000:
                raise ValueError(f"header length {n} exceeds the file ({size} bytes)")
            header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc}). Fix: {_fix(kind)}") from exc
    if 8 + n + end != size:
        raise CheckpointError(
            f"{path} is truncated or corrupt: its header accounts for {8 + n + end} bytes, the file has {size}. Fix: {_fix(kind)}"
        )


def _check_weights(root: Path, names: tuple[str, ...], kind: str) -> None:
    present = [n for n in names if (root / n).is_file()]
    if not present:
        raise CheckpointError(
            f"{root} has no weights file ({' or '.join(names[:2])}): the checkpoint is partial. Fix: {_fix(kind)}"
        )
    for name in present:
        path = root / name
        if name.endswith(".safetensors"):
            check_safetensors(path, kind)
        elif name.endswith(".bin") and not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is truncated or corrupt (not a readable torch archive). Fix: {_fix(kind)}")
        elif name.endswith(".index.json"):
            index = _read_json(path, "weights index", kind)
            shards = sorted(set((index.get("weight_map") or {}).values())) if isinstance(index, dict) else []
            missing = [s for s in shards if not (root / s).is_file()]
            if missing or not shards:
                raise CheckpointError(f"{root} is missing weight shard(s) {missing or '(empty index)'}: the checkpoint is partial. Fix: {_fix(kind)}")


def _check_marker_files(root: Path, marker: dict[str, Any], *, full: bool) -> None:
    kind = marker["kind"]
    for rel, meta in sorted(marker["files"].items()):
        fpath = root / rel
        if not fpath.is_file():
            raise CheckpointError(f"{root} is missing {rel}, which its completion marker lists: the copy is partial. Fix: {_fix(kind)}")
        size = fpath.stat().st_size
        if size != meta.get("size"):
            raise CheckpointError(
                f"{fpath} has {size} bytes but the completion marker recorded {meta.get('size')}: the file was modified "
                f"or copied partly. Fix: {_fix(kind)}"
            )
        if full and file_sha256(fpath) != meta.get("sha256"):
            raise CheckpointError(f"{fpath} does not match its SHA-256 in {MARKER} (corrupt or modified). Fix: {_fix(kind)}")


_VALID: dict[tuple, ModelDirInfo] = {}
_VALID_LOCK = threading.Lock()


def validate_model_dir(path: str | Path, *, expect: str | None = None, full: bool = False) -> ModelDirInfo:
    """Check that ``path`` is a complete model directory; raise :class:`CheckpointError` naming the problem and the fix.

    ``expect``: ``retriever`` (a sentence-transformers / transformers encoder) or
    ``generator-adapter`` (a PEFT adapter); ``None`` accepts either. ``full``: also hash every
    file against the marker (see :func:`verify_model_dir`). Without ``full`` only sizes and headers
    are read, and the result is cached until a file changes.
    """
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"model directory {root} does not exist. Fix: pass the directory written by `rulerag finetune` (or another existing model directory)")
    key = (str(root.resolve()), expect, full, _state(root), (root / MARKER).is_file())
    if not full:
        with _VALID_LOCK:
            if key in _VALID:
                return _VALID[key]
    marker = read_marker(root)
    kind = marker["kind"] if marker else (ADAPTER if (root / "adapter_config.json").is_file() else RETRIEVER)
    if marker is None and _looks_like_ours(root):
        raise CheckpointError(
            f"{root} lacks the completion marker {MARKER}: the fine-tuning did not finish, or the directory was copied partly. "
            f"Fix: {_fix(kind)}"
        )
    if expect is not None and marker is not None and marker["kind"] != expect:
        raise CheckpointError(
            f"{root} is a fine-tuned {marker['kind']}, not a {expect}. Fix: pass a "
            + ("sentence-transformers model directory (rulerag finetune retriever)" if expect == RETRIEVER else "generator adapter (rulerag finetune generator)")
        )
    if kind == ADAPTER:
        if expect == RETRIEVER:
            raise CheckpointError(f"{root} holds a generator adapter (adapter_config.json), not an embedding model. Fix: pass a sentence-transformers model directory")
        config = _read_json(root / "adapter_config.json", "adapter configuration", kind) if (root / "adapter_config.json").is_file() else None
        if not isinstance(config, dict):
            raise CheckpointError(f"{root} has no adapter_config.json: not a complete adapter. Fix: {_fix(kind)}")
        _check_weights(root, _ADAPTER_WEIGHTS, kind)
    else:
        if expect == ADAPTER:
            raise CheckpointError(f"{root} has no adapter_config.json: not a generator adapter. Fix: pass a directory written by `rulerag finetune generator`")
        model_dir = root
        modules = root / "modules.json"
        if modules.is_file():
            entries = _read_json(modules, "module list (modules.json)", kind)
            if not isinstance(entries, list):
                raise CheckpointError(f"{modules} is not a list of modules: the checkpoint is corrupt. Fix: {_fix(kind)}")
            for entry in entries:
                sub = root / str(entry.get("path", "")) if isinstance(entry, dict) else None
                if sub is None or not sub.is_dir():
                    raise CheckpointError(f"{root} is missing module directory {entry!r} listed in modules.json: the checkpoint is partial. Fix: {_fix(kind)}")
                if "Transformer" in str(entry.get("type", "")):
                    model_dir = sub
        config_path = model_dir / "config.json"
        if not config_path.is_file():
            raise CheckpointError(
                f"{model_dir} is not a complete model directory: config.json is missing. Fix: pass a directory written by "
                f"`rulerag finetune retriever` or SentenceTransformer.save(), or {_fix(kind)}"
            )
        config = _read_json(config_path, "model configuration (config.json)", kind)
        if not isinstance(config, dict) or "model_type" not in config:
            raise CheckpointError(f"{config_path} has no 'model_type': not a transformers configuration. Fix: {_fix(kind)}")
        _check_weights(model_dir, _WEIGHTS, kind)
    if marker is not None:
        _check_marker_files(root, marker, full=full)
    info = ModelDirInfo(root, marker["kind"] if marker else ("model" if kind == RETRIEVER else ADAPTER), marker)
    if not full:
        with _VALID_LOCK:
            _VALID[key] = info
    return info


def verify_model_dir(path: str | Path, *, expect: str | None = None) -> ModelDirInfo:
    """:func:`validate_model_dir` plus a SHA-256 check of every file the marker lists."""
    return validate_model_dir(path, expect=expect, full=True)
