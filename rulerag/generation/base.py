"""The generator interface every backend implements, and what backends share.

Example:
    >>> from rulerag.generation.backends import FixedBackend
    >>> isinstance(FixedBackend("x"), Generator)
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from rulerag.errors import GenerationError
from rulerag.generation.prompts import Prompt

#: End-of-turn tokens that also stop generation when the model's vocabulary has them.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "</s>")


@runtime_checkable
class Generator(Protocol):
    """Turns a :class:`Prompt` into text. ``temperature == 0`` means greedy (deterministic)."""

    name: str

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str: ...

    def generate_batch(
        self, prompts: Sequence[Prompt], *, max_new_tokens: int, temperature: float = 0.0
    ) -> list[str]:
        """Answer several prompts; the default calls :meth:`generate` for each, in order."""
        return [self.generate(p, max_new_tokens=max_new_tokens, temperature=temperature) for p in prompts]

    def stream(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        """The answer as text pieces, in order; joined they equal :meth:`generate`'s text. The default
        yields the whole answer once (backends that decode token by token yield each piece)."""
        yield self.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature)

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> list[float]:
        """Log-probability of each candidate as the model's whole answer to ``prompt`` (the sum over
        the candidate's tokens and the end-of-turn token; higher is likelier). Backends without
        token log-probabilities raise :class:`GenerationError`."""
        raise GenerationError(
            f"generator {self.name!r} has no token log-probabilities. Fix: use generation.backend llamacpp"
        )
