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
