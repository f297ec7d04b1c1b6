"""Count what a generator spends: calls, prompt and completion tokens, seconds.

The llama.cpp, transformers and OpenAI-compatible backends leave token counts in ``last_usage``
after each call; :class:`MeteredGenerator` sums them. For a backend that does not (the ``fixed``
test backend, a user's own generator) tokens are estimated with :func:`approx_tokens` and the
usage says so (``estimated``).

Example:
    >>> from rulerag.generation.backends import FixedBackend
    >>> from rulerag.generation.prompts import standard_prompt
    >>> gen = MeteredGenerator(FixedBackend("Norland"))
    >>> gen.generate(standard_prompt("Where?", ["Alice lives in Norland."]), max_new_tokens=8)
    'Norland'
    >>> u = gen.take()
    >>> u.calls, u.completion_tokens, u.estimated
    (1, 1, True)
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from rulerag.generation.base import Generator
from rulerag.generation.prompts import Prompt

_TOKEN = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """A cheap token count: words and punctuation marks (sub-word tokenizers give somewhat more).

    Example:
        >>> approx_tokens("Gravity, or gravitation.")
        5
    """
    return len(_TOKEN.findall(text))


def call_usage(generator: Generator, prompt: Prompt, text: str) -> tuple[int, int, bool]:
    """``(prompt_tokens, completion_tokens, estimated)`` of the generator's last call, which read
    ``prompt`` and wrote ``text``: the backend's own counts (``last_usage``) when it has them, else
    :func:`approx_tokens` of both (``estimated``). Call it right after the call, on the same thread.

    Example:
        >>> from rulerag.generation.backends import FixedBackend
        >>> from rulerag.generation.prompts import standard_prompt
        >>> call_usage(FixedBackend("Norland"), standard_prompt("Where?", []), "Norland")[1:]
        (1, True)
    """
    measured = getattr(generator, "last_usage", None) or {}
    if "completion_tokens" in measured:
        return int(measured.get("prompt_tokens", 0)), int(measured["completion_tokens"]), False
    return approx_tokens(prompt.as_text()), approx_tokens(text), True


@dataclass
class Usage:
    """Totals over generator calls; ``estimated`` when some token counts came from
    :func:`approx_tokens`."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MeteredGenerator(Generator):
    """Wraps a generator and adds each :meth:`generate` call's tokens and seconds to :attr:`usage`;
    :meth:`take` returns the totals so far and starts new ones."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.name = inner.name
        self.usage = Usage()

    def take(self) -> Usage:
        """The usage since the last :meth:`take` (or since creation); counting restarts at zero."""
        usage, self.usage = self.usage, Usage()
        return usage

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        if hasattr(self.inner, "last_usage"):
            self.inner.last_usage = {}  # so a backend that fails to set it is not read twice
        t0 = time.perf_counter()
        text = self.inner.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature)
        seconds = time.perf_counter() - t0
        prompt_tokens, completion_tokens, estimated = call_usage(self.inner, prompt, text)
        u = self.usage
        u.calls += 1
        u.seconds += seconds
        u.prompt_tokens += prompt_tokens
        u.completion_tokens += completion_tokens
        u.estimated |= estimated
        return text
