"""Deterministic stand-ins for heavy models, for fast unit tests."""

from __future__ import annotations

import hashlib

import numpy as np

from rulerag.text import tokenize


class HashEncoder:
    """Bag-of-words hashing encoder: texts sharing words get similar unit vectors."""

    def __init__(self, dim: int = 64, model_name: str = "hash-64") -> None:
        self.dim = dim
        self.model_name = model_name
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for tok in tokenize(text):
                h = int(hashlib.md5(tok.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


class FakeScorer:
    """A generator with deterministic candidate log-probabilities, for candidate-scoring tests.

    ``score`` gives ``0.0`` to the candidate ``prefer`` picks from the list (by default none) and
    ``-1 - len(candidate) / 10`` to the others; ``generate`` returns ``answer``. Calls are counted
    in :attr:`score_calls` and every prompt is kept in :attr:`prompts`; ``fail_at`` (1-based) makes
    that ``score`` call raise ``KeyboardInterrupt`` (an interrupted run).
    """

    def __init__(self, prefer=None, answer: str = "", fail_at: int | None = None) -> None:
        self.name = "fake-scorer"
        self.prefer = prefer
        self.answer = answer
        self.fail_at = fail_at
        self.score_calls = 0
        self.prompts: list = []

    def generate(self, prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        self.prompts.append(prompt)
        return self.answer

    def score(self, prompt, candidates) -> list[float]:
        self.score_calls += 1
        if self.score_calls == self.fail_at:
            raise KeyboardInterrupt
        self.prompts.append(prompt)
        best = self.prefer(list(candidates)) if self.prefer else None
        return [0.0 if c == best else -1.0 - len(c) / 10 for c in candidates]
