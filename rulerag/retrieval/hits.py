"""Small result types shared by the retrieval modules.

A *ranked list* is a list of :class:`Hit` (internal document position and score), best first.
Positions index the index directory's document store; they become :class:`ScoredDocument` only at
the end of a pipeline, so fusion and merging work on integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rulerag.corpus import Document


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved document position with its score (higher is better)."""

    pos: int
    score: float


@dataclass(frozen=True)
class ScoredDocument:
    """A retrieved document, its final score and rank, and which queries found it.

    ``found_by`` names the queries whose lists contained the document: ``"question"`` and/or
    ``"rule:<rule id>"``.
    """

    id: str
    contents: str
    score: float
    rank: int
    found_by: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_document(cls, doc: Document, score: float, rank: int, found_by: tuple[str, ...] = ()) -> ScoredDocument:
        return cls(doc.id, doc.contents, float(score), rank, found_by, doc.metadata)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contents": self.contents,
            "score": round(self.score, 6),
            "rank": self.rank,
            "found_by": list(self.found_by),
            "metadata": self.metadata,
        }
