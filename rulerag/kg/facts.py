"""The typed fact table every KG loader produces and the rule miner consumes.

Facts are integer arrays (fast to mine, small in memory) plus the vocabularies that turn ids into
readable names. A temporal table has one integer time per fact (``time_unit`` says what it
counts: ``day`` = days since 1970-01-01, ``year`` = calendar year); a static table has none.

Example:
    >>> kg = FactTable.from_triples([("Alice", "born_in", "Norland", 2014)], time_unit="year")
    >>> kg.fact(0)
    ('Alice', 'born_in', 'Norland', '2014')
    >>> len(kg), kg.temporal
    (1, True)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

TimeUnit = Literal["day", "year"]
_EPOCH = dt.date(1970, 1, 1)


def date_to_day(text: str) -> int:
    """``YYYY-MM-DD`` -> days since 1970-01-01."""
    return (dt.date.fromisoformat(text) - _EPOCH).days


def day_to_date(day: int) -> str:
    """Days since 1970-01-01 -> ``YYYY-MM-DD``."""
    return (_EPOCH + dt.timedelta(days=int(day))).isoformat()


@dataclass
class FactTable:
    """Facts as parallel int arrays with shared vocabularies.

    ``entities[i]`` / ``relations[j]`` are the readable names of entity id i / relation id j.
    ``entity_types`` optionally holds a type per entity (NELL's ``concept:TYPE:name``).
    ``times`` is ``None`` for static KGs.
    """

    subjects: np.ndarray
    relation_ids: np.ndarray
    objects: np.ndarray
    entities: list[str]
    relations: list[str]
    times: np.ndarray | None = None
    time_unit: TimeUnit | None = None
    entity_types: list[str] | None = None
    name: str = ""
    source_ids: dict[str, list[str]] = field(default_factory=dict)  # e.g. {"entity": [mids...]}

    def __post_init__(self) -> None:
        self.subjects = np.asarray(self.subjects, dtype=np.int32)
        self.relation_ids = np.asarray(self.relation_ids, dtype=np.int32)
        self.objects = np.asarray(self.objects, dtype=np.int32)
        if self.times is not None:
            self.times = np.asarray(self.times, dtype=np.int64)
            if self.time_unit is None:
                raise ValueError("a temporal FactTable needs time_unit ('day' or 'year')")
        n = len(self.subjects)
        if not (len(self.relation_ids) == len(self.objects) == n) or (self.times is not None and len(self.times) != n):
            raise ValueError("fact arrays differ in length")

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def temporal(self) -> bool:
        return self.times is not None

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def time_label(self, t: int) -> str:
        """Render one time value (``YYYY-MM-DD`` for days, the year for years)."""
        return day_to_date(t) if self.time_unit == "day" else str(int(t))

    def fact(self, i: int) -> tuple[str, str, str, str | None]:
        """Fact ``i`` as readable ``(subject, relation, object, time or None)``."""
        t = None if self.times is None else self.time_label(self.times[i])
        return (self.entities[self.subjects[i]], self.relations[self.relation_ids[i]], self.entities[self.objects[i]], t)

    def __iter__(self) -> Iterator[tuple[str, str, str, str | None]]:
        for i in range(len(self)):
            yield self.fact(i)

    def select(self, mask: np.ndarray) -> FactTable:
        """A table with the facts where ``mask`` is true (same vocabularies)."""
        return FactTable(
            self.subjects[mask], self.relation_ids[mask], self.objects[mask], self.entities, self.relations,
            None if self.times is None else self.times[mask], self.time_unit, self.entity_types, self.name, self.source_ids,
        )

    def concat(self, other: FactTable) -> FactTable:
        """This table's facts followed by ``other``'s (the vocabularies must be the same objects)."""
        if other.entities is not self.entities or other.relations is not self.relations:
            raise ValueError("concat needs tables that share vocabularies (split them from one loader)")
        times = None if self.times is None else np.concatenate([self.times, other.times])
        return FactTable(
            np.concatenate([self.subjects, other.subjects]), np.concatenate([self.relation_ids, other.relation_ids]),
            np.concatenate([self.objects, other.objects]), self.entities, self.relations, times, self.time_unit,
            self.entity_types, self.name, self.source_ids,
        )

    @classmethod
    def from_triples(
        cls,
        facts: Iterable[Sequence],
        *,
        time_unit: TimeUnit | None = None,
        name: str = "",
    ) -> FactTable:
        """Build from ``(s, r, o)`` or ``(s, r, o, t)`` tuples of names (``t``: int, or an ISO date
        string with ``time_unit='day'``). Ids are given in order of first appearance."""
        ents: dict[str, int] = {}
        rels: dict[str, int] = {}
        s_ids, r_ids, o_ids, times = [], [], [], []
        for fact in facts:
            s, r, o = fact[0], fact[1], fact[2]
            s_ids.append(ents.setdefault(s, len(ents)))
            r_ids.append(rels.setdefault(r, len(rels)))
            o_ids.append(ents.setdefault(o, len(ents)))
            if len(fact) > 3:
                t = fact[3]
                times.append(date_to_day(t) if isinstance(t, str) else int(t))
        if times and len(times) != len(s_ids):
            raise ValueError("either every fact has a time or none has")
        return cls(
            np.array(s_ids), np.array(r_ids), np.array(o_ids), list(ents), list(rels),
            np.array(times) if times else None, time_unit if times else None, name=name,
        )


@dataclass
class KGDataset:
    """A KG with its standard splits; the three tables share vocabularies."""

    name: str
    train: FactTable
    valid: FactTable
    test: FactTable

    @property
    def temporal(self) -> bool:
        return self.train.temporal
