"""Generator backends behind one small interface.

- :class:`FixedBackend`: deterministic, no model (tests, dry runs);
- :class:`rulerag.generation.llamacpp.LlamaCppBackend` (the default): a GGUF model on llama.cpp;
- :class:`TransformersBackend`: a local model (directory, ``.gguf`` file, or an embedded model name
  from :mod:`rulerag.generation.models`), loaded lazily and once; needed for LoRA adapters and
  fine-tuning;
- :class:`OpenAIBackend`: any OpenAI-compatible ``/chat/completions`` server (vLLM, llama.cpp's
  server, Ollama, ...), with retries.

:func:`make_backend` builds the one named by :class:`rulerag.config.GenerationSettings`.

Backends return the model's raw text; apply :func:`rulerag.generation.prompts.postprocess_answer`
to reduce it to an answer. Every failure is a :class:`rulerag.errors.GenerationError` whose message
says what went wrong and how to fix it.

Example:
    >>> from rulerag.generation.prompts import standard_prompt
    >>> gen = FixedBackend()
    >>> gen.generate(standard_prompt("Where was Alice born?", ["Alice born in Tarvik.", "Bo born in Ulm."]),
    ...              max_new_tokens=8)
    'Alice born in Tarvik.'
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rulerag.config import BackendKind, GenerationSettings
from rulerag.errors import ConfigError, GenerationError
from rulerag.generation.base import STOP_TOKENS, Generator
from rulerag.generation.prompts import Prompt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------- fixed

_DOC_LINE = re.compile(r"^\[\d+\]\s?")


def first_document(prompt: Prompt) -> str:
    """Text of document ``[1]`` of a prompt from :mod:`~rulerag.generation.prompts`: the first
    line after ``<documents>``, without its ``[1] `` number; ``""`` when there is no document."""
    _, sep, rest = prompt.user.partition("<documents>\n")
    if not sep:
        return ""
    line = rest.split("\n", 1)[0]
    if line.startswith("</documents>") or not _DOC_LINE.match(line):
        return ""
    return _DOC_LINE.sub("", line, count=1)


class FixedBackend(Generator):
    """Deterministic backend with no model, for tests and dry runs.

    ``generate`` returns ``answer`` when it is non-empty; otherwise the text of the first retrieved
    document exactly as rendered in the prompt (the first line of the ``<documents>`` block, without
    its ``[1] `` number: whitespace collapsed), or ``""`` when the prompt has no documents. It
    ignores ``max_new_tokens`` and ``temperature``. Every prompt received is appended to
    :attr:`prompts` (in call order).
    """

    def __init__(self, answer: str = "") -> None:
        self.answer = answer
        self.name = "fixed"
        self.prompts: list[Prompt] = []
        self._lock = threading.Lock()

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        with self._lock:
            self.prompts.append(prompt)
        return self.answer if self.answer else first_document(prompt)


# -------------------------------------------------------------------------------- transformers



def render_prompt(tokenizer: Any, prompt: Prompt) -> tuple[str, bool]:
    """(text fed to the model, whether a chat template made it) for ``prompt``.

    The tokenizer's chat template when it has one (a template that rejects the system role gets the
    system text folded into the user turn), else :meth:`Prompt.as_text`. Shared by generation and by
    generator fine-tuning (:mod:`rulerag.finetune.generator`), so a fine-tuned model sees its
    training format at answer time.
    """
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(prompt.as_messages(), add_generation_prompt=True, tokenize=False), True
        except Exception:  # e.g. a template that rejects the system role: fold it into the user turn
            user = [{"role": "user", "content": prompt.as_text()}]
            return tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False), True
    return prompt.as_text(), False


def _pick_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersBackend(Generator):
    """A local causal LM run with transformers; loaded on the first :meth:`generate` call, once.

    ``model`` is one of:

    - an embedded model name (see :data:`rulerag.generation.models.MODELS`), resolved to its cached
      fast-loading copy (built on first use, see :func:`~rulerag.generation.models.resolve_generator`);
    - a directory with a transformers model and tokenizer;
    - a ``.gguf`` file (loaded with ``gguf_file=`` from its parent directory; dequantised, slow).

    - a LoRA adapter directory written by ``rulerag finetune generator``: its base model (recorded
      in the adapter's completion marker) is loaded and the adapter applied.

    ``adapter``: a LoRA adapter directory (peft) to apply to ``model``; it is checked (complete,
    trained on a base of the same architecture) and merged into the weights at load.

    The tokenizer's chat template is used when it has one, else :meth:`Prompt.as_text`. Greedy when
    ``temperature == 0``. After each call :attr:`last_usage` holds ``prompt_tokens``,
    ``completion_tokens`` and ``seconds``; :attr:`load_seconds` the load time.

    Example:
        >>> TransformersBackend("smollm2-135m-instruct", adapter="models/gen-ft").name    # doctest: +SKIP
        'transformers:smollm2-135m-instruct+models/gen-ft'
    """

    def __init__(self, model: str, *, device: str | None = None, adapter: str | Path | None = None) -> None:
        self.model_ref = str(model)
        self.adapter: Path | None = Path(adapter).expanduser() if adapter is not None else None
        if self.adapter is None and _is_adapter_dir(Path(self.model_ref).expanduser()):
            self.adapter = Path(self.model_ref).expanduser()  # an adapter given as the model: its base comes from its marker
            self.model_ref = _adapter_base(self.adapter)
        self.name = f"transformers:{self.model_ref}" + (f"+{self.adapter}" if self.adapter is not None else "")
        self.device = device
        self.load_seconds: float | None = None
        self.last_usage: dict[str, float] = {}
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: list[int] = []
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _locate(self) -> tuple[Path, str | None]:
        """(directory, gguf file name or None) for :attr:`model_ref`."""
        from rulerag.generation.models import MODELS, resolve_generator

        ref = self.model_ref
        if ref in MODELS:
            return resolve_generator(ref), None
        path = Path(ref).expanduser()
        if ref.lower().endswith(".gguf"):
            if not path.is_file():
                raise GenerationError(
                    f"GGUF file {path} does not exist. Fix: pass an existing .gguf file as generation.model"
                )
            return path.parent, path.name
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise GenerationError(
                    f"{path} is not a transformers model directory (no config.json). Fix: pass a "
                    "directory written by save_pretrained, a .gguf file, or an embedded model name"
                )
            return path, None
        raise GenerationError(
            f"generator model {ref!r} not found: not an embedded model name ({', '.join(sorted(MODELS))}), "
            "not a directory, not a .gguf file. Fix: set generation.model to one of those"
        )

    def load(self) -> None:
        """Load model and tokenizer now (otherwise the first :meth:`generate` does). Idempotent."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            directory, gguf_file = self._locate()
            t0 = time.perf_counter()
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
                tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
                model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, **kwargs)
                if self.adapter is not None:
                    model = _apply_adapter(model, self.adapter)
            except GenerationError:
                raise
            except Exception as exc:  # transformers raises OSError, ValueError, ...
                where = directory / gguf_file if gguf_file else directory
                raise GenerationError(
                    f"could not load generator model from {where}: {exc}. Fix: check the files (for a "
                    ".gguf also pip install 'gguf>=0.10' 'accelerate>=0.30')"
                ) from exc
            model.to(_pick_device(self.device))
            model.eval()
            stop = set()
            for ids in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
                if isinstance(ids, int):
                    stop.add(ids)
                elif ids:
                    stop.update(int(i) for i in ids)
            vocab = tokenizer.get_vocab()
            stop.update(vocab[t] for t in STOP_TOKENS if t in vocab)
            self._stop_ids = sorted(stop)
            self._tokenizer = tokenizer
            self.load_seconds = time.perf_counter() - t0
            self._model = model  # last: marks the backend as loaded
            log.info("loaded generator %s in %.1f s", directory, self.load_seconds)

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the model (chat template when the tokenizer has one)."""
        self.load()
        return render_prompt(self._tokenizer, prompt)[0]

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        import torch
        from transformers import GenerationConfig

        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        text = self.render(prompt)
        tok, model = self._tokenizer, self._model
        chat = bool(getattr(tok, "chat_template", None))
        enc = tok(text, return_tensors="pt", add_special_tokens=not chat)
        enc = {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        pad = tok.pad_token_id if tok.pad_token_id is not None else (self._stop_ids or [0])[0]
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=None,
            top_k=None,
            eos_token_id=self._stop_ids or None,
            pad_token_id=pad,
        )
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = model.generate(**enc, generation_config=config)
        except Exception as exc:
            raise GenerationError(f"generation failed with {self.model_ref}: {exc}") from exc
        new = out[0, enc["input_ids"].shape[1]:]
        self.last_usage = {
            "prompt_tokens": int(enc["input_ids"].shape[1]),
            "completion_tokens": int(new.shape[0]),
            "seconds": time.perf_counter() - t0,
        }
        return tok.decode(new, skip_special_tokens=True).strip()


def _is_adapter_dir(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def _adapter_base(adapter: Path) -> str:
    """The base model of an adapter directory: the completion marker's, else adapter_config.json's."""
    from rulerag.checkpoint import ADAPTER, CheckpointError, validate_model_dir

    try:
        info = validate_model_dir(adapter, expect=ADAPTER)
    except CheckpointError as exc:
        raise GenerationError(str(exc)) from exc
    base = info.base_model
    if not base:
        try:
            base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (OSError, ValueError):
            base = None
    if not base:
        raise GenerationError(
            f"adapter {adapter} does not name its base model. Fix: pass the base as the model and the adapter "
            "separately (TransformersBackend(base, adapter=...))"
        )
    return str(base)


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the FutureWarning peft raises by reading transformers' deprecated ``is_gradient_checkpointing``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def _apply_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the LoRA ``adapter`` merged in; refuses a partial adapter or one trained on
    another architecture, naming the problem and the fix."""
    from rulerag.checkpoint import ADAPTER, CheckpointError, validate_model_dir

    try:
        info = validate_model_dir(adapter, expect=ADAPTER)
    except CheckpointError as exc:
        raise GenerationError(str(exc)) from exc
    trained_on = (info.marker or {}).get("base_config") or {}
    config = model.config
    mismatched = {k: (v, getattr(config, k, None)) for k, v in trained_on.items() if v is not None and getattr(config, k, None) != v}
    if mismatched:
        detail = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in mismatched.items())
        raise GenerationError(
            f"adapter {adapter} was trained on base model {info.base_model!r}, which differs from the loaded model ({detail}). "
            "Fix: load the adapter with the base model it was trained on"
        )
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise GenerationError("loading a LoRA adapter needs peft. Fix: pip install 'rulerag[finetune]'") from exc
    try:
        with quiet_peft():
            return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as exc:  # peft raises many types on a mismatched adapter
        raise GenerationError(f"could not apply adapter {adapter}: {exc}. Fix: load it with the base model it was trained on") from exc


# ---------------------------------------------------------------------------------------- openai


class OpenAIBackend(Generator):
    """Client for an OpenAI-compatible server: ``POST {base_url}/chat/completions``.

    ``api_key`` defaults to ``$OPENAI_API_KEY``; when set it is sent as ``Authorization: Bearer``.
    Connection errors, timeouts, HTTP 429 and 5xx are retried ``retries`` times with exponential
    backoff (``backoff_s``, doubled each time, at most 8 s; a ``Retry-After`` up to 8 s is honoured);
    other 4xx fail at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 2,
        *,
        backoff_s: float = 0.5,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"generation.openai_base_url must start with http:// or https://, got {base_url!r}"
            )
        if retries < 0 or timeout_s <= 0:
            raise ConfigError("retries must be >= 0 and timeout_s > 0")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.name = f"openai:{model}@{self.base_url}"
        self.last_usage: dict[str, float] = {}
        self._client: Any = None
        self._lock = threading.Lock()

    def _http(self):
        import httpx

        with self._lock:
            if self._client is None:
                headers = {"Content-Type": "application/json"}
                if self.api_key:
                    headers["Authorization"] = f"Bearer {self.api_key}"
                self._client = httpx.Client(timeout=self.timeout_s, headers=headers)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _sleep(self, attempt: int, retry_after: str | None = None) -> None:
        delay = min(self.backoff_s * (2**attempt), 8.0)
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), 8.0))
            except ValueError:
                pass
        time.sleep(delay)

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        import httpx

        payload = {
            "model": self.model,
            "messages": prompt.as_messages(),
            "max_tokens": max_new_tokens,
            "temperature": temperature,
        }
        client = self._http()
        attempts = self.retries + 1
        last, kind = "", ""
        retry_after: str | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(attempt - 1, retry_after)
            retry_after = None
            t0 = time.perf_counter()
            try:
                response = client.post(self.url, json=payload)
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.timeout_s:g} s ({type(exc).__name__})"
                kind = "timeout"
                continue
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                kind = "connect"
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                last = f"HTTP {status}: {response.text[:300]}"
                kind = "status"
                retry_after = response.headers.get("Retry-After")
                continue
            if status >= 400:
                hint = (
                    "check generation.openai_api_key or $OPENAI_API_KEY"
                    if status in (401, 403)
                    else "check generation.openai_model and the server's accepted parameters"
                )
                raise GenerationError(
                    f"{self.url} refused the request: HTTP {status}: {response.text[:300]}. Fix: {hint}"
                )
            return self._parse(response, time.perf_counter() - t0)
        if kind == "connect":
            raise GenerationError(
                f"could not reach {self.url} after {attempts} attempts: {last}. "
                "Fix: start the server or set generation.openai_base_url"
            )
        if kind == "timeout":
            raise GenerationError(
                f"{self.url} did not answer after {attempts} attempts: {last}. "
                "Fix: check that the server is not overloaded, or raise generation.timeout_s"
            )
        raise GenerationError(
            f"{self.url} failed after {attempts} attempts: {last}. Fix: check the server's log"
        )

    def _parse(self, response, seconds: float) -> str:
        try:
            data = response.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GenerationError(
                f"{self.url} answered with an unexpected body ({type(exc).__name__}): {response.text[:300]}. "
                "Fix: point generation.openai_base_url at an OpenAI-compatible /v1 endpoint"
            ) from exc
        usage = data.get("usage") or {}
        self.last_usage = {
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "seconds": seconds,
        }
        return (content or "").strip()


# --------------------------------------------------------------------------------------- factory


def make_backend(settings: GenerationSettings) -> Generator:
    """The backend named by ``settings.backend``, configured from ``settings`` (nothing is loaded yet).

    Example:
        >>> make_backend(GenerationSettings(backend="fixed", fixed_answer="Norland")).name
        'fixed'
    """
    kind = BackendKind(settings.backend)
    if kind is BackendKind.fixed:
        return FixedBackend(settings.fixed_answer)
    if kind is BackendKind.llamacpp:
        if Path(settings.model).expanduser().is_dir():  # a transformers model or LoRA adapter: llama.cpp cannot run it
            log.info("generation.model %s is a directory: using the transformers backend", settings.model)
            return TransformersBackend(settings.model)
        from rulerag.generation.llamacpp import LlamaCppBackend

        return LlamaCppBackend(settings.model, threads=settings.threads or None, context_tokens=settings.context_tokens)
    if kind is BackendKind.transformers:
        return TransformersBackend(settings.model)
    if kind is BackendKind.openai:
        return OpenAIBackend(
            settings.openai_base_url,
            settings.openai_model,
            api_key=settings.openai_api_key,
            timeout_s=settings.timeout_s,
            retries=settings.retries,
        )
    raise ConfigError(  # pragma: no cover - the enum is exhaustive
        f"unknown generation.backend {settings.backend!r}. Fix: use one of {', '.join(k.value for k in BackendKind)}"
    )
