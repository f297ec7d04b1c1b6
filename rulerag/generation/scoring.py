"""Candidate scoring: re-rank the reasoner's candidates with the generator's log-probabilities.

The generator scores each of the reasoner's top ``K`` candidates by the log-probability of the
candidate as its whole answer to a prompt (:meth:`rulerag.generation.backends.Generator.score`),
and the combined score of a candidate is::

    combined = reasoner_score + weight * llm_score

``reasoner_score`` is the reasoner's score as it is (noisy-or of rule scores plus the history and
prior terms; mostly in [0, 1.5]). ``llm_score`` is, by ``norm``:

- ``"softmax"`` (default): the candidate's probability among the ``K`` candidates,
  ``exp(lp_i) / sum_j exp(lp_j)`` of the log-probabilities ``lp``: in [0, 1] like the reasoner's
  scores, and blind to how likely the model finds any answer at all;
- ``"logprob"``: the log-probability itself (<= 0; long names have lower log-probabilities, and
  the backend interface gives no token counts to length-normalise by).

The candidates are sorted by the combined score, stably: ties keep the reasoner's order, and with
``weight == 0`` the ranking is the reasoner's exactly. Fit ``weight`` on a development split
(``benchmarks/tune_generator.py``), never on test questions.

Example:
    >>> rerank([0.9, 0.8, 0.8], [-3.0, -0.5, -9.0], weight=0.0)
    [0, 1, 2]
    >>> rerank([0.9, 0.8, 0.8], [-3.0, -0.5, -9.0], weight=1.0)
    [1, 0, 2]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from rulerag.errors import GenerationError
from rulerag.generation.prompts import Prompt

Norm = Literal["softmax", "logprob"]
#: The ``llm_score`` normalisations (see the module docstring).
NORMS: tuple[str, ...] = ("softmax", "logprob")


def score_candidates(generator: Any, prompt: Prompt, answers: Sequence[str]) -> list[float]:
    """The generator's log-probability of each answer to ``prompt``, checked: one finite-or-``-inf``
    float per answer. Raises :class:`GenerationError` for a generator that cannot score or that
    returns something else."""
    score = getattr(generator, "score", None)
    name = getattr(generator, "name", type(generator).__name__)
    if score is None:
        raise GenerationError(f"generator {name!r} cannot score candidates (no score method). "
                              "Fix: use a backend with token log-probabilities, e.g. generation.backend llamacpp")
    values = list(score(prompt, list(answers)))
    if len(values) != len(answers) or not all(isinstance(v, (int, float)) and not math.isnan(v) and v != math.inf
                                              for v in values):
        raise GenerationError(f"generator {name!r} returned {values!r} for {len(answers)} candidates. "
                              "Fix: its score() must return one log-probability (a float <= 0) per candidate")
    return [float(v) for v in values]


def llm_scores(logprobs: Sequence[float], norm: Norm = "softmax") -> list[float]:
    """``llm_score`` of each candidate from its log-probability (see the module docstring).

    Example:
        >>> [round(x, 3) for x in llm_scores([0.0, math.log(3)])]
        [0.25, 0.75]
    """
    if norm == "logprob":
        return [float(x) for x in logprobs]
    if norm != "softmax":
        raise ValueError(f"unknown norm {norm!r}. Fix: use one of {', '.join(NORMS)}")
    top = max(logprobs, default=0.0)
    if top == -math.inf:  # the model gives every candidate probability 0: no preference
        return [1.0 / len(logprobs)] * len(logprobs)
    exp = [math.exp(x - top) for x in logprobs]
    total = sum(exp)
    return [e / total for e in exp]


def rerank(reasoner: Sequence[float], logprobs: Sequence[float] | None, weight: float, norm: Norm = "softmax") -> list[int]:
    """Candidate positions by ``reasoner + weight * llm_score``, best first, stable (ties keep the
    given order). ``reasoner`` in the reasoner's order; ``logprobs=None`` (not scored, e.g. a single
    candidate) or ``weight == 0`` keeps that order exactly."""
    if not math.isfinite(weight):
        raise ValueError(f"weight must be a finite number, got {weight!r}")
    if logprobs is not None and len(logprobs) != len(reasoner):
        raise ValueError(f"{len(reasoner)} reasoner scores but {len(logprobs)} log-probabilities")
    order = list(range(len(reasoner)))
    if logprobs is None or weight == 0:
        return order
    llm = llm_scores(logprobs, norm)
    combined = [r + weight * s for r, s in zip(reasoner, llm)]
    return sorted(order, key=lambda i: -combined[i])
