"""Your own KG as a :class:`~rulerag.kg.facts.KGDataset`: the input of the benchmark builder
(``rulerag bench build --kg PATH``) for any KG, next to the five packaged layouts.

Accepted input (``PATH``):

* a **folder** with ``train``, ``valid`` and ``test`` files (``.txt``, ``.tsv`` or no suffix), or
* **one facts file**, split by this module: a temporal KG by time (the latest 10% of its time
  points are the test split, the 10% before them the validation split: questions ask about the
  future of the corpus, as in ICEWS14), a static KG by a seeded shuffle (80 / 10 / 10).

Every line is ``subject<TAB>relation<TAB>object`` (static) or ``...<TAB>time`` (temporal; a year
such as ``2014`` or a date ``2014-01-31``); ``#`` comments and blank lines are skipped. The kind is
detected from the first fact (``temporal=True``/``False`` requires it). Subjects, relations and
objects may be names (``Ada Quill``, ``born in``) or opaque ids (``Q42``, ``P19``, ``/m/02mjmr``).

**Names for ids.** An optional map file gives a name per id, one ``id<TAB>name`` line each (for
entities and relations alike; ids it does not list keep the id as their name). Without names, the
corpus documents and the questions read as the ids do: the fact ``Q42 P19 Q350`` becomes the
document ``Q42 P19 Q350.`` and the question ``Q42 P19 what?``: rules are mined and retrieval
works the same, but a language model has no words to go on.

Malformed input is refused with ``file:line``, the problem and the fix: a wrong column count,
an empty field, an unparseable time, a fact of the test or validation split that is also in the
training split (a question whose answer the corpus states verbatim).

Example:
    >>> kg = load_custom_kg("my_kg/", name="my-kg")                     # doctest: +SKIP
    >>> kg = load_custom_kg("facts.tsv", names="names.tsv")              # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rulerag.kg.facts import FactTable, KGDataset
from rulerag.kg.loaders import KGFormatError, load_facts_file

SPLITS = ("train", "valid", "test")
_SUFFIXES = (".txt", ".tsv", "")


def _split_files(folder: Path) -> dict[str, Path]:
    found = {}
    for split in SPLITS:
        for suffix in _SUFFIXES:
            if (folder / f"{split}{suffix}").is_file():
                found[split] = folder / f"{split}{suffix}"
                break
        else:
            raise KGFormatError(folder, None, f"no {split} file (looked for {split}.txt, {split}.tsv, {split})",
                                "give the folder train, valid and test files, or pass one facts file to be split")
    return found


def read_names(path: str | Path) -> dict[str, str]:
    """An ``id<TAB>name`` map (``#`` comments and blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise KGFormatError(path, None, "file not found", "pass an id<TAB>name file")
    names: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise KGFormatError(path, lineno, f"{len(parts)} column(s) or an empty field", "write one id<TAB>name per line")
        names[parts[0].strip()] = parts[1].strip()
    return names


def _relabel(table: FactTable, entities: dict[str, int], relations: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table's ids in the shared vocabularies (extended with its new names)."""
    ent = np.asarray([entities.setdefault(e, len(entities)) for e in table.entities], dtype=np.int32)
    rel = np.asarray([relations.setdefault(r, len(relations)) for r in table.relations], dtype=np.int32)
    return ent[table.subjects], rel[table.relation_ids], ent[table.objects]


def _line_of(path: Path, fact: tuple[str, str, str, str | None]) -> int | None:
    """The first line of ``path`` that states ``fact`` (for the error message)."""
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = [p.strip() for p in line.split("\t")]
        if tuple(parts[:3]) == fact[:3] and (fact[3] is None or (len(parts) > 3 and parts[3] == fact[3])):
            return lineno
    return None


def _from_tables(name: str, tables: dict[str, FactTable], files: dict[str, Path] | None, names: dict[str, str]) -> KGDataset:
    kinds = {t.temporal for t in tables.values()}
    units = {t.time_unit for t in tables.values()}
    if len(kinds) > 1 or len(units) > 1:
        some = next(s for s, t in tables.items() if t.temporal != tables["train"].temporal or t.time_unit != tables["train"].time_unit)
        raise KGFormatError(files[some] if files else Path(name), None,
                            f"the {some} split {'has' if tables[some].temporal else 'lacks'} times (or another time form) unlike train",
                            "give every split the same columns: all with a time in the same form, or none")
    entities: dict[str, int] = {}
    relations: dict[str, int] = {}
    cols = {split: _relabel(t, entities, relations) for split, t in tables.items()}
    train = tables["train"]
    if files:
        seen = {(int(s), int(r), int(o), None if train.times is None else int(t_))
                for s, r, o, t_ in zip(*cols["train"], train.times if train.times is not None else [None] * len(train))}
        ent_names, rel_names = list(entities), list(relations)
        for split in ("valid", "test"):
            t = tables[split]
            times = t.times if t.times is not None else [None] * len(t)
            for (s, r, o), when, i in zip(zip(*cols[split]), times, range(len(t))):
                if (int(s), int(r), int(o), None if when is None else int(when)) in seen:
                    f = t.fact(i)
                    fact = (ent_names[s], rel_names[r], ent_names[o], f[3])
                    raise KGFormatError(files[split], _line_of(files[split], fact),
                                        f"the fact {' '.join(x for x in fact if x)!r} is also in the train split",
                                        f"remove it from {files[split].name} or from {files['train'].name}: a question whose "
                                        "answer the corpus states verbatim tests nothing")
    ent_list = [names.get(e, e) for e in entities]
    rel_list = [names.get(r, r) for r in relations]
    source_ids = {"entity": list(entities), "relation": list(relations)} if names else {}
    out = {}
    for split, t in tables.items():
        s, r, o = cols[split]
        out[split] = FactTable(s, r, o, ent_list, rel_list, t.times, t.time_unit, None, f"{name}/{split}", source_ids)
    return KGDataset(name, out["train"], out["valid"], out["test"])


def _split_one(table: FactTable, seed: int) -> dict[str, np.ndarray]:
    """Row positions of train / valid / test: by time (temporal) or a seeded shuffle (static)."""
    n = len(table)
    if table.times is not None:
        points = np.unique(table.times)
        if len(points) < 3:
            raise KGFormatError(Path(table.name), None, f"only {len(points)} distinct time(s): too few to split by time",
                                "give facts at three or more times, or give train/valid/test files")
        k = max(1, round(0.1 * len(points)))
        test_from, valid_from = points[-k], points[max(-2 * k, -len(points) + 1)]
        return {"train": np.flatnonzero(table.times < valid_from),
                "valid": np.flatnonzero((table.times >= valid_from) & (table.times < test_from)),
                "test": np.flatnonzero(table.times >= test_from)}
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(0.8 * n), int(0.9 * n)
    return {"train": np.sort(order[:a]), "valid": np.sort(order[a:b]), "test": np.sort(order[b:])}


def _take(table: FactTable, rows: np.ndarray, split: str) -> FactTable:
    return FactTable(table.subjects[rows], table.relation_ids[rows], table.objects[rows], table.entities, table.relations,
                     None if table.times is None else table.times[rows], table.time_unit, None, f"{table.name}/{split}")


def load_custom_kg(
    path: str | Path,
    *,
    name: str | None = None,
    temporal: bool | None = None,
    names: str | Path | None = None,
    seed: int = 0,
) -> KGDataset:
    """Read a KG of your own (see the module docstring) as train / valid / test tables with shared
    vocabularies. ``name``: the dataset's name (default: the folder's or file's name);
    ``temporal``: require 4 (True) or 3 (False) columns (default: detect); ``names``: an
    ``id<TAB>name`` file; ``seed``: the shuffle of a static single file."""
    path = Path(path)
    name = name or (path.name if path.is_dir() else path.stem)
    mapping = read_names(names) if names is not None else {}
    if path.is_dir():
        files = _split_files(path)
        tables = {split: load_facts_file(f, temporal=temporal) for split, f in files.items()}
        return _from_tables(name, tables, files, mapping)
    table = load_facts_file(path, temporal=temporal)
    rows = _split_one(table, seed)
    for split, r in rows.items():
        if len(r) == 0:
            raise KGFormatError(path, None, f"{len(table)} facts leave the {split} split empty",
                                "give more facts (a few hundred at least), or give train/valid/test files")
    return _from_tables(name, {split: _take(table, r, split) for split, r in rows.items()}, None, mapping)
