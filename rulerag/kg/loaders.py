"""Loaders for the five RuleQA source KGs (RuleRAG, arXiv 2410.22353) and for a user's own fact file.

``load_kg(name, path=None)`` returns a :class:`KGDataset` whose train/valid/test tables share one
vocabulary (the same list objects) with readable names; ``FactTable.source_ids`` keeps the raw
ids (``{"entity": [...], "relation": [...]}``) so nothing is lost. The default folder is
``<data root>/kg/<name>``, where the data root is ``$RULERAG_DATA`` or ``../shared/data`` next to
the repository (:func:`default_data_root`). Files are UTF-8, tab-separated, one fact per line;
blank lines and a trailing ``\\r`` (FB15k-237 has CRLF endings) are ignored. Every format error is a
:class:`KGFormatError` naming ``file:line`` and the fix.

Datasets (aliases ``ruleqa-i/y/w/f/n``):

- ``icews14`` (RuleQA-I): ``subject<TAB>relation<TAB>object<TAB>YYYY-MM-DD``; names use ``_`` for
  spaces, rendered with spaces (``Head_of_Government_(Croatia)`` -> ``Head of Government
  (Croatia)``). ``time_unit="day"`` (days since 1970-01-01). Ids in order of first appearance
  over train, valid, test.
- ``yago`` / ``wiki`` (RE-Net format, RuleQA-Y / RuleQA-W): ``s<TAB>r<TAB>o<TAB>t[<TAB>0]`` integer
  ids; ids are those of ``entity2id.txt`` / ``relation2id.txt`` (``name<TAB>id``; YAGO's
  entity2id has two more columns, the entity's start and end dates, which are ignored), and the
  vocabulary is the whole map. ``ts2year.tsv`` (header ``ts_id<TAB>year``) maps ``t`` to the year
  (YAGO: 1830 + t, WIKI: 1786 + t); ``time_unit="year"``. YAGO names: ``<...>`` stripped,
  ``\\uXXXX`` escapes decoded, ``_`` -> space (``<Take_the_\\u0022A\\u0022_Train>`` -> ``Take the
  "A" Train``); relations camelCase -> words (``<wasBornIn>`` -> ``was born in``). WIKI has **no
  entity names**: entities are Wikidata Q-ids and stay Q-ids (all of them are listed as unnamed,
  so :func:`entity_name_coverage` is 0); relations (P-ids) get the English label of column
  ``label`` of ``relation2name.tsv`` (``P27`` -> ``country of citizenship``).
- ``fb15k-237`` (RuleQA-F): ``mid<TAB>relation<TAB>mid``, static. Entity names from
  ``kg-bert/entity2text.txt`` (preferred), then ``kg-bert/FB15k_mid2name.txt`` (``_`` -> space);
  either file may also sit in the dataset folder itself. Both cover every mid of the splits; a mid
  in neither keeps the mid as its name and is listed in ``source_ids["unnamed_entity"]`` (with
  ``strict=True`` it is an error). Relations are rendered by :func:`render_freebase_relations`
  (``/people/person/nationality`` -> ``nationality``; clashing renderings get a qualifier:
  ``/film/film/country`` -> ``country (film)``). Several entities share a name (232 names, e.g.
  two films called *Alfie*): names are readable, not keys; the mid stays in ``source_ids``.
- ``nell-995`` (RuleQA-N): ``head<TAB>relation<TAB>tail``, static. Entities
  ``concept_TYPE_name`` (or ``concept:TYPE:name``) become ``name`` with ``_`` -> space (NELL's
  ``n`` before a leading digit is dropped: ``concept_year_n1916`` -> ``1916``) and the type in
  ``entity_types``; the other entities are literals (``-33.3,-64.75``: type ``coordinates``;
  ``42``: type ``number``). Relations lose ``concept:`` and are split into words with a fixed
  list of the words NELL-995's 200 relations use (``athleteplaysforteam`` -> ``athlete plays for
  team``); a relation the list cannot split completely stays unsplit. NELL spells one thing
  several ways (``concept_bacteria_e__coli`` / ``concept_bacteria_e_coli``): such ids keep
  separate ids and get the same readable name. A name that is only punctuation
  (``concept_beverage__``, 11 entities) keeps the raw id and is listed as unnamed.

Relation names are always distinct within a dataset (a clash gets `` (raw id)`` appended).

Example:
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "my_kg.tsv"
    >>> _ = p.write_text("# who is where\\nAlice\\tlives_in\\tNorland\\t2014\\n")
    >>> kg = load_facts_file(p)
    >>> kg.fact(0), kg.time_unit
    (('Alice', 'lives_in', 'Norland', '2014'), 'year')
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

import rulerag
from rulerag.errors import ConfigError, InputFormatError
from rulerag.kg.facts import FactTable, KGDataset, TimeUnit, date_to_day

log = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "DATASET_ALIASES",
    "KGFormatError",
    "dataset_name",
    "default_data_root",
    "entity_name_coverage",
    "load_facts_file",
    "load_kg",
    "nell_entity",
    "nell_relation",
    "render_freebase_relations",
]

DATASETS: tuple[str, ...] = ("icews14", "yago", "wiki", "fb15k-237", "nell-995")
DATASET_ALIASES: dict[str, str] = {
    "ruleqa-i": "icews14",
    "ruleqa-y": "yago",
    "ruleqa-w": "wiki",
    "ruleqa-f": "fb15k-237",
    "ruleqa-n": "nell-995",
}
SPLITS: tuple[str, ...] = ("train", "valid", "test")


class KGFormatError(InputFormatError):
    """A KG file that is missing or malformed; the message names ``file:line`` and the fix."""


# --------------------------------------------------------------------------------------------
# dataset names and folders


def default_data_root() -> Path | None:
    """``$RULERAG_DATA`` if set, else ``shared/data`` beside the repository when it exists, else None."""
    env = os.environ.get("RULERAG_DATA")
    if env:
        return Path(env).expanduser()
    candidate = Path(rulerag.__file__).resolve().parents[1].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def dataset_name(name: str) -> str:
    """The canonical dataset name for ``name`` or an alias (``ruleqa-i`` -> ``icews14``)."""
    key = str(name).strip().lower()
    key = DATASET_ALIASES.get(key, key)
    if key not in DATASETS:
        valid = ", ".join(DATASETS) + " (aliases: " + ", ".join(DATASET_ALIASES) + ")"
        raise ConfigError(f"unknown KG dataset {name!r}. Fix: use one of {valid}")
    return key


_REQUIRED: dict[str, tuple[str, ...]] = {
    "icews14": ("train.txt", "valid.txt", "test.txt"),
    "yago": ("train.txt", "valid.txt", "test.txt", "entity2id.txt", "relation2id.txt", "ts2year.tsv"),
    "wiki": (
        "train.txt",
        "valid.txt",
        "test.txt",
        "entity2id.txt",
        "relation2id.txt",
        "ts2year.tsv",
        "relation2name.tsv",
    ),
    "fb15k-237": ("train.txt", "valid.txt", "test.txt"),
    "nell-995": ("train.txt", "valid.txt", "test.txt"),
}


def load_kg(name: str, path: str | Path | None = None, *, strict: bool = False) -> KGDataset:
    """Load one of the five RuleQA source KGs with readable names (see the module docstring).

    ``path`` is the dataset folder (default ``<data root>/kg/<name>``). ``strict=True`` turns a
    missing name (an FB15k-237 mid in neither name map, a WIKI P-id without a label) into an error
    instead of keeping the raw id.
    """
    key = dataset_name(name)
    if path is None:
        root = default_data_root()
        if root is None:
            raise ConfigError(
                f"no data folder for KG {key!r}. Fix: pass path=<folder with {', '.join(_REQUIRED[key])}> "
                "or set RULERAG_DATA to the folder that holds kg/<name>/"
            )
        folder = root / "kg" / key
    else:
        folder = Path(path)
    if not folder.is_dir():
        raise KGFormatError(
            folder,
            None,
            f"the {key} dataset folder {'is a file, not a folder' if folder.exists() else 'does not exist'}",
            f"pass the folder that holds {', '.join(_REQUIRED[key])} (or set RULERAG_DATA)",
        )
    for fname in _REQUIRED[key]:
        if not (folder / fname).is_file():
            raise KGFormatError(
                folder / fname,
                None,
                f"missing file {fname}",
                f"the {key} folder must contain {', '.join(_REQUIRED[key])}",
            )
    return _LOADERS[key](folder, key, strict)


def entity_name_coverage(kg: KGDataset | FactTable) -> tuple[int, int]:
    """``(named, total)`` entities: those not listed in ``source_ids["unnamed_entity"]``."""
    table = kg.train if isinstance(kg, KGDataset) else kg
    total = table.num_entities
    return total - len(table.source_ids.get("unnamed_entity", [])), total


# --------------------------------------------------------------------------------------------
# reading


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise KGFormatError(path, None, "file not found", "check the path")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise KGFormatError(path, line, "not valid UTF-8", "save the file as UTF-8") from None
    return text.removeprefix("\ufeff")


def _rows(path: Path, ncols: Sequence[int], example: str, *, comments: bool = False) -> Iterator[tuple[int, list[str]]]:
    """``(line number, tab-separated fields)`` of each non-blank line, checking the column count."""
    text = _read_text(path)
    want = " or ".join(str(n) for n in ncols)
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line or line.isspace() or (comments and line.lstrip().startswith("#")):
            continue
        parts = line.split("\t")
        if len(parts) not in ncols:
            raise KGFormatError(
                path,
                lineno,
                f"expected {want} tab-separated columns, found {len(parts)}",
                f"write one fact per line as {example}",
            )
        yield lineno, parts


def _int(path: Path, lineno: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise KGFormatError(
            path, lineno, f"{what} {value!r} is not an integer", f"write {what} as an integer"
        ) from None


def _read_id_map(path: Path, what: str) -> list[str]:
    """``name<TAB>id[<TAB>...]`` -> names indexed by id (ids must be 0..N-1, each once)."""
    by_id: dict[int, str] = {}
    seen: dict[str, int] = {}
    for lineno, parts in _rows(path, range(2, 16), f"{what}<TAB>id"):
        name, idx = parts[0], _int(path, lineno, parts[1].strip(), f"{what} id")
        if idx in by_id:
            raise KGFormatError(path, lineno, f"id {idx} given twice", f"give each {what} its own id")
        if name in seen:
            raise KGFormatError(
                path, lineno, f"{what} {name!r} given twice (line {seen[name]})", f"list each {what} once"
            )
        by_id[idx] = name
        seen[name] = lineno
    missing = next((i for i in range(len(by_id)) if i not in by_id), None)
    if missing is not None:
        raise KGFormatError(
            path,
            None,
            f"ids are not 0..{len(by_id) - 1}: id {missing} is missing",
            "number the ids 0..N-1 without gaps",
        )
    return [by_id[i] for i in range(len(by_id))]


def _distinct(names: list[str], raws: Sequence[str]) -> list[str]:
    """Append `` (raw)`` to every name that more than one raw id renders to."""
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return [f"{n} ({r})" if counts[n] > 1 and n != r else n for n, r in zip(names, raws)]


class _Vocab:
    """Raw id -> int id in order of first appearance."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def get(self, raw: str) -> int:
        idx = self.ids.get(raw)
        if idx is None:
            idx = self.ids[raw] = len(self.ids)
        return idx

    @property
    def raw(self) -> list[str]:
        return list(self.ids)


def _make_dataset(
    name: str,
    splits: dict[str, tuple[list[int], list[int], list[int], list[int] | None]],
    entities: list[str],
    relations: list[str],
    time_unit: TimeUnit | None,
    entity_types: list[str] | None,
    source_ids: dict[str, list[str]],
) -> KGDataset:
    tables = {
        split: FactTable(
            np.asarray(s, dtype=np.int32),
            np.asarray(r, dtype=np.int32),
            np.asarray(o, dtype=np.int32),
            entities,
            relations,
            None if t is None else np.asarray(t, dtype=np.int64),
            time_unit,
            entity_types,
            f"{name}/{split}",
            source_ids,
        )
        for split, (s, r, o, t) in splits.items()
    }
    kg = KGDataset(name, tables["train"], tables["valid"], tables["test"])
    named, total = entity_name_coverage(kg)
    log.info(
        "loaded %s: %d/%d/%d facts, %d entities (%d named), %d relations",
        name,
        len(kg.train),
        len(kg.valid),
        len(kg.test),
        total,
        named,
        len(relations),
    )
    return kg


# --------------------------------------------------------------------------------------------
# ICEWS14


def _load_icews(folder: Path, key: str, strict: bool) -> KGDataset:
    ents, rels = _Vocab(), _Vocab()
    day_of: dict[str, int] = {}
    splits = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        s_ids, r_ids, o_ids, times = [], [], [], []
        for lineno, (s, r, o, t) in _rows(path, (4,), "subject<TAB>relation<TAB>object<TAB>YYYY-MM-DD"):
            day = day_of.get(t)
            if day is None:
                day = day_of[t] = _parse_date(path, lineno, t)
            s_ids.append(ents.get(s))
            r_ids.append(rels.get(r))
            o_ids.append(ents.get(o))
            times.append(day)
        splits[split] = (s_ids, r_ids, o_ids, times)
    raw_e, raw_r = ents.raw, rels.raw
    entities = _distinct([e.replace("_", " ") for e in raw_e], raw_e)
    relations = _distinct([r.replace("_", " ") for r in raw_r], raw_r)
    return _make_dataset(key, splits, entities, relations, "day", None, {"entity": raw_e, "relation": raw_r})


_DATE_RE = re.compile(r"^-?\d{1,4}-\d{2}-\d{2}$")


def _parse_date(path: Path, lineno: int, text: str) -> int:
    text = text.strip()
    try:
        if not _DATE_RE.match(text):
            raise ValueError
        return date_to_day(text)
    except ValueError:
        raise KGFormatError(
            path, lineno, f"bad date {text!r}", "write the time as YYYY-MM-DD, e.g. 2014-01-31"
        ) from None


# --------------------------------------------------------------------------------------------
# RE-Net format: YAGO and WIKI

_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _yago_entity(raw: str) -> str:
    name = raw[1:-1] if raw.startswith("<") and raw.endswith(">") else raw
    name = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)
    return " ".join(name.replace("_", " ").split()) or raw


def _yago_relation(raw: str) -> str:
    name = raw[1:-1] if raw.startswith("<") and raw.endswith(">") else raw
    return " ".join(_CAMEL.sub(" ", name).replace("_", " ").lower().split()) or raw


def _read_ts2year(path: Path) -> dict[int, int]:
    years: dict[int, int] = {}
    for lineno, parts in _rows(path, (2,), "ts_id<TAB>year"):
        if lineno == 1 and not parts[0].strip().lstrip("-").isdigit():
            continue  # header
        t = _int(path, lineno, parts[0].strip(), "ts_id")
        if t in years:
            raise KGFormatError(path, lineno, f"ts_id {t} given twice", "list each ts_id once")
        years[t] = _int(path, lineno, parts[1].strip(), "year")
    return years


def _read_renet_split(
    path: Path,
    n_ent: int,
    n_rel: int,
    years: dict[int, int],
    maps: tuple[str, str, str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``s r o t [x]`` integer lines -> (s, r, o, year) arrays, every id checked against its map."""
    flat: list[int] = []
    linenos: list[int] = []
    example = "s<TAB>r<TAB>o<TAB>t[<TAB>0] (integer ids)"
    for lineno, parts in _rows(path, (4, 5), example):
        try:
            flat.extend(map(int, parts[:4]))
        except ValueError:
            for col, value in zip(("subject id", "relation id", "object id", "time id"), parts):
                _int(path, lineno, value.strip(), col)
            raise  # unreachable: one of the columns failed above
        linenos.append(lineno)
    arr = np.array(flat, dtype=np.int64).reshape(-1, 4)
    t_max = max(years) if years else -1
    year_of = np.full(max(t_max, 0) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    for t, y in years.items():
        if t >= 0:
            year_of[t] = y
    checks = [
        (0, n_ent, "subject", maps[0]),
        (1, n_rel, "relation", maps[1]),
        (2, n_ent, "object", maps[0]),
    ]
    for col, n, what, mapfile in checks:
        bad = np.flatnonzero((arr[:, col] < 0) | (arr[:, col] >= n))
        if len(bad):
            i = bad[0]
            raise KGFormatError(
                path,
                linenos[i],
                f"{what} id {arr[i, col]} is not in {mapfile} (ids 0..{n - 1})",
                f"use ids listed in {mapfile}, or add the missing id there",
            )
    t = arr[:, 3]
    inside = (t >= 0) & (t < len(year_of))
    yrs = np.where(inside, year_of[np.clip(t, 0, len(year_of) - 1)], np.iinfo(np.int64).min)
    bad = np.flatnonzero(yrs == np.iinfo(np.int64).min)
    if len(bad):
        i = bad[0]
        raise KGFormatError(
            path,
            linenos[i],
            f"time id {t[i]} is not in {maps[2]}",
            f"add a line '{t[i]}<TAB>YEAR' to {maps[2]}",
        )
    return arr[:, 0], arr[:, 1], arr[:, 2], yrs


def _load_renet(
    folder: Path,
    key: str,
    entity_name: Callable[[str], str],
    relation_names: Callable[[list[str]], tuple[list[str], list[str]]],
    unnamed_entities: bool,
) -> KGDataset:
    raw_e = _read_id_map(folder / "entity2id.txt", "entity")
    raw_r = _read_id_map(folder / "relation2id.txt", "relation")
    years = _read_ts2year(folder / "ts2year.tsv")
    maps = ("entity2id.txt", "relation2id.txt", "ts2year.tsv")
    splits = {
        split: _read_renet_split(folder / f"{split}.txt", len(raw_e), len(raw_r), years, maps) for split in SPLITS
    }
    entities = _distinct([entity_name(e) for e in raw_e], raw_e)
    relations, unnamed_r = relation_names(raw_r)
    source_ids = {"entity": raw_e, "relation": raw_r}
    if unnamed_entities:
        source_ids["unnamed_entity"] = list(raw_e)
    if unnamed_r:
        source_ids["unnamed_relation"] = unnamed_r
    return _make_dataset(key, splits, entities, _distinct(relations, raw_r), "year", None, source_ids)


def _load_yago(folder: Path, key: str, strict: bool) -> KGDataset:
    return _load_renet(folder, key, _yago_entity, lambda raws: ([_yago_relation(r) for r in raws], []), False)


def _load_wiki(folder: Path, key: str, strict: bool) -> KGDataset:
    path = folder / "relation2name.tsv"
    labels: dict[str, str] = {}
    col_pid = col_label = None
    for lineno, parts in _rows(path, range(2, 16), "pid<TAB>id<TAB>label (header first)"):
        if col_pid is None:
            header = [p.strip() for p in parts]
            if "pid" not in header or "label" not in header:
                raise KGFormatError(
                    path,
                    lineno,
                    "the header has no 'pid' and 'label' columns",
                    "start the file with a header line such as pid<TAB>id<TAB>label",
                )
            col_pid, col_label = header.index("pid"), header.index("label")
            continue
        if max(col_pid, col_label) >= len(parts):
            raise KGFormatError(
                path, lineno, "the line has fewer columns than the header", "give every line a pid and a label"
            )
        if parts[col_label].strip():
            labels[parts[col_pid].strip()] = parts[col_label].strip()

    def relation_names(raws: list[str]) -> tuple[list[str], list[str]]:
        unnamed = [r for r in raws if r not in labels]
        if unnamed and strict:
            raise KGFormatError(
                path, None, f"no label for {', '.join(unnamed)}", "add a line pid<TAB>id<TAB>label for each"
            )
        if unnamed:
            log.warning("%s: %d relations without a label keep their P-id: %s", path, len(unnamed), ", ".join(unnamed))
        return [labels.get(r, r) for r in raws], unnamed

    return _load_renet(folder, key, lambda q: q, relation_names, True)


# --------------------------------------------------------------------------------------------
# FB15k-237


def _fb_words(segment: str) -> list[str]:
    words = [w for w in segment.split("_") if w]
    if len(words) > 1 and words[-1] == "s":  # Freebase's plural marker: release_date_s, spouse_s
        words = words[:-1]
    return words


def _fb_candidates(raw: str) -> list[str]:
    """Renderings of one Freebase relation, from shortest to most specific (the last is unique)."""
    parts = [p.strip("/").split("/") for p in raw.split("./") if p.strip("/")]
    if not parts or not parts[0][0]:
        return [raw]
    first, last = parts[0], parts[-1]
    base = " ".join(_fb_words(last[-1])) or raw

    def words(segs: list[str]) -> str:
        out: list[str] = []
        for seg in segs:
            for w in _fb_words(seg):
                if not out or out[-1] != w:
                    out.append(w)
        return " ".join(out)

    if len(parts) == 1:
        qualifiers = ["", words(first[-2:-1]), words(first[:-1])]
    else:
        qualifiers = [
            "",
            words(first[-2:-1]),
            words(first[-2:]),
            words(first[-2:] + last[-2:-1]),
            words([seg for p in parts for seg in p][:-1]),
        ]
    out: list[str] = []
    for q in qualifiers:
        cand = f"{base} ({q})" if q and q != base else base
        if cand not in out:
            out.append(cand)
    out.append(f"{base} ({raw})")
    return out


def render_freebase_relations(raws: Sequence[str]) -> list[str]:
    """Readable, distinct names for Freebase relation paths.

    Each relation is named by its last property (``/people/person/nationality`` ->
    ``nationality``; ``_s`` plural markers dropped). Relations whose names clash get a qualifier
    in parentheses, more specific until the clash is gone: the subject type, then the first
    property, then the mediator type, then the whole path.

    Example:
        >>> render_freebase_relations(["/people/person/nationality", "/film/film/country",
        ...     "/location/administrative_division/country"])
        ['nationality', 'country (film)', 'country (administrative division)']
        >>> render_freebase_relations([
        ...     "/film/film/release_date_s./film/film_regional_release_date/film_release_region",
        ...     "/film/film/runtime./film/film_cut/film_release_region"])
        ['film release region (film release date)', 'film release region (film runtime)']
    """
    cands = [_fb_candidates(r) for r in raws]
    level = [0] * len(cands)
    while True:
        names = [c[lv] for c, lv in zip(cands, level)]
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            groups.setdefault(n, []).append(i)
        bumped = False
        for members in groups.values():
            if len(members) > 1:
                for i in members:
                    if level[i] < len(cands[i]) - 1:
                        level[i] += 1
                        bumped = True
        if not bumped:
            return names


def _read_name_map(path: Path, underscores: bool) -> dict[str, str]:
    names: dict[str, str] = {}
    for lineno, parts in _rows(path, (2,), "mid<TAB>name"):
        name = parts[1].strip()
        if underscores:
            name = " ".join(name.replace("_", " ").split())
        if name:
            names.setdefault(parts[0].strip(), name)
    return names


def _load_fb15k237(folder: Path, key: str, strict: bool) -> KGDataset:
    maps = []
    for fname, underscores in (("entity2text.txt", False), ("FB15k_mid2name.txt", True)):
        for candidate in (folder / "kg-bert" / fname, folder / fname):
            if candidate.is_file():
                maps.append(_read_name_map(candidate, underscores))
                break
    if not maps:
        raise KGFormatError(
            folder / "kg-bert" / "entity2text.txt",
            None,
            "missing entity name map",
            "put kg-bert/entity2text.txt or kg-bert/FB15k_mid2name.txt (mid<TAB>name) into the fb15k-237 folder",
        )
    ents, rels = _Vocab(), _Vocab()
    names: list[str] = []
    unnamed: list[str] = []
    splits = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        s_ids, r_ids, o_ids = [], [], []
        for lineno, (s, r, o) in _rows(path, (3,), "head_mid<TAB>/relation/path<TAB>tail_mid"):
            for mid in (s, o):
                if mid not in ents.ids:
                    ents.get(mid)
                    name = next((m[mid] for m in maps if mid in m), None)
                    if name is None:
                        if strict:
                            raise KGFormatError(
                                path,
                                lineno,
                                f"entity {mid} has no name in the name maps",
                                "add 'mid<TAB>name' to kg-bert/entity2text.txt or load with strict=False",
                            )
                        unnamed.append(mid)
                        name = mid
                    names.append(name)
            s_ids.append(ents.ids[s])
            r_ids.append(rels.get(r))
            o_ids.append(ents.ids[o])
        splits[split] = (s_ids, r_ids, o_ids, None)
    if unnamed:
        log.warning(
            "fb15k-237: %d of %d entities have no name and keep their mid (e.g. %s)",
            len(unnamed),
            len(names),
            unnamed[0],
        )
    raw_e, raw_r = ents.raw, rels.raw
    relations = _distinct(render_freebase_relations(raw_r), raw_r)
    source_ids = {"entity": raw_e, "relation": raw_r, "unnamed_entity": unnamed}
    return _make_dataset(key, splits, names, relations, None, None, source_ids)


# --------------------------------------------------------------------------------------------
# NELL-995

_NELL_CONCEPT = re.compile(r"^concept[_:]([a-z0-9]+)[_:](.+)$", re.IGNORECASE)
_NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?$")
_COORDS = re.compile(r"^[-+]?\d+(\.\d+)?,[-+]?\d+(\.\d+)?$")

# Every word of NELL-995's 200 relation names; relation names are split into these words.
_NELL_WORDS_TEXT = """
academic acquired acronym actor acts affiliated against age agent agricultural airport also and
animal art artery arthropod artist as associated at athlete attract attraction automaker automobile
award bacteria baked bank beat belongs beverage body book bordered born bought building by called
came can capital car causative cause ceo championship charged chemical citizenship city clothing
coach coaches collaborates color coming company competes concept concerns condition contain contains
contributed controls cooked country created creative crime currency cut date dealers decreases
develop died directed director disease dissolved drug eat economic effect emotion empties endorsed
equipment event fans father feature features feed field fish fly food for form found from furniture
game genre genres geometric geopolitical go good graduated group growing grown has headquartered
hired his hobbies holds home hotel husband in include including injured insect instrument into
invertebrate involved is item job journalist known lake landscape language latitude leads league led
lies located location longitude made maker mammal material member model mother mountain moved movie
multiple museum music musician mutual name national newspaper object of office on or organization
other out parent park part participated person physiological plant plays political politician
position possibly prerequisite preys produces product profession program protein province proxy
publication radio represent represents residence risk river room scene school sector served shape
sibling side specialization sport sports spouse stadium stadiums starred state station subject
subpart such synonym taller team television terminated than that the thing to tool top tourist
tournament transportation treats trophy type university us uses vegetable vertebrate visual weapon
weapons wife winner wins with within won work worked works writer writes
"""
_NELL_WORDS = frozenset(_NELL_WORDS_TEXT.split())


@functools.lru_cache(maxsize=4096)
def _segment(text: str) -> tuple[str, ...] | None:
    """Fewest words of ``_NELL_WORDS`` that spell ``text`` exactly, or None."""
    best: list[tuple[str, ...] | None] = [None] * (len(text) + 1)
    best[len(text)] = ()
    for i in range(len(text) - 1, -1, -1):
        for j in range(len(text), i, -1):
            rest = best[j]
            current = best[i]
            if rest is not None and text[i:j] in _NELL_WORDS and (current is None or len(rest) + 1 < len(current)):
                best[i] = (text[i:j], *rest)
    return best[0]


def nell_relation(raw: str) -> str:
    """``concept:athleteplaysforteam`` -> ``athlete plays for team`` (unsplit if a word is unknown).

    Example:
        >>> nell_relation("concept:hashusband"), nell_relation("concept:zorbleswith")
        ('has husband', 'zorbleswith')
    """
    name = re.sub(r"^concept[:_]", "", raw.strip(), flags=re.IGNORECASE)
    out = []
    for chunk in re.split(r"[^0-9A-Za-z]+", name):
        if chunk:
            words = _segment(chunk.lower())
            out.append(" ".join(words) if words else chunk)
    return " ".join(out) or raw


def nell_entity(raw: str) -> tuple[str, str]:
    """``concept_athlete_joe_smith`` -> ``("joe smith", "athlete")``; literals get type
    ``coordinates``, ``number`` or ``literal``.

    Example:
        >>> nell_entity("concept:year:n1916"), nell_entity("-33.3,-64.75")
        (('1916', 'year'), ('-33.3,-64.75', 'coordinates'))
    """
    m = _NELL_CONCEPT.match(raw)
    if m:
        name = " ".join(m.group(2).replace("_", " ").split())
        if len(name) > 1 and name[0] == "n" and name[1].isdigit():  # NELL writes 1916 as n1916
            name = name[1:]
        return (name or raw), m.group(1).lower()
    if _COORDS.match(raw):
        return raw, "coordinates"
    if _NUMBER.match(raw):
        return raw, "number"
    return raw, "literal"


def _load_nell(folder: Path, key: str, strict: bool) -> KGDataset:
    ents, rels = _Vocab(), _Vocab()
    splits = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        s_ids, r_ids, o_ids = [], [], []
        for _, (h, r, t) in _rows(path, (3,), "concept_type_head<TAB>concept:relation<TAB>concept_type_tail"):
            s_ids.append(ents.get(h))
            r_ids.append(rels.get(r))
            o_ids.append(ents.get(t))
        splits[split] = (s_ids, r_ids, o_ids, None)
    raw_e, raw_r = ents.raw, rels.raw
    parsed = [nell_entity(e) for e in raw_e]
    entities = [name for name, _ in parsed]
    types = [typ for _, typ in parsed]
    relations = _distinct([nell_relation(r) for r in raw_r], raw_r)
    # names that are only punctuation (concept_beverage__) keep the raw id and count as unnamed
    unnamed = [raw for raw, name in zip(raw_e, entities) if name == raw and _NELL_CONCEPT.match(raw)]
    source_ids = {"entity": raw_e, "relation": raw_r, "unnamed_entity": unnamed}
    return _make_dataset(key, splits, entities, relations, None, types, source_ids)


_LOADERS: dict[str, Callable[[Path, str, bool], KGDataset]] = {
    "icews14": _load_icews,
    "yago": _load_yago,
    "wiki": _load_wiki,
    "fb15k-237": _load_fb15k237,
    "nell-995": _load_nell,
}


# --------------------------------------------------------------------------------------------
# a user's own fact file

_YEAR_RE = re.compile(r"^-?\d{1,4}$")


def load_facts_file(path: str | Path, *, temporal: bool | None = None) -> FactTable:
    """Read ``subject<TAB>relation<TAB>object[<TAB>time]`` lines (``#`` comments and blank lines
    allowed). ``time`` is ``YYYY-MM-DD`` (``time_unit="day"``) or a year (``"year"``), detected
    from the first fact; every line must use the same form. ``temporal=None`` detects whether the
    file has times from its first fact; ``True``/``False`` require 4/3 columns. Names are kept
    as written (surrounding spaces stripped); ids in order of first appearance.
    """
    path = Path(path)
    if not path.is_file():
        raise KGFormatError(
            path, None, "file not found", "pass the path of a subject<TAB>relation<TAB>object[<TAB>time] file"
        )
    ncols = {None: (3, 4), True: (4,), False: (3,)}[temporal]
    example = "subject<TAB>relation<TAB>object" + {None: "[<TAB>time]", True: "<TAB>time", False: ""}[temporal]
    ents, rels = _Vocab(), _Vocab()
    s_ids, r_ids, o_ids, times = [], [], [], []
    width: int | None = None
    unit: TimeUnit | None = None
    for lineno, parts in _rows(path, ncols, example, comments=True):
        parts = [p.strip() for p in parts]
        if width is None:
            width = len(parts)
        elif len(parts) != width:
            raise KGFormatError(
                path,
                lineno,
                f"{len(parts)} columns, but the first fact has {width}",
                "give every fact a time or none (3 or 4 columns on every line)",
            )
        s, r, o = parts[:3]
        if not (s and r and o):
            raise KGFormatError(
                path, lineno, "empty subject, relation or object", f"write one fact per line as {example}"
            )
        if width == 4:
            t = parts[3]
            kind: TimeUnit = "day" if "-" in t[1:] else "year"
            if unit is None:
                unit = kind
            elif kind != unit:
                raise KGFormatError(
                    path,
                    lineno,
                    f"time {t!r} mixes dates and years",
                    f"write every time as {'YYYY-MM-DD' if unit == 'day' else 'a year'}",
                )
            if unit == "day":
                times.append(_parse_date(path, lineno, t))
            elif _YEAR_RE.match(t):
                times.append(int(t))
            else:
                raise KGFormatError(
                    path, lineno, f"bad time {t!r}", "write the time as a year (2014) or a date (2014-01-31)"
                )
        s_ids.append(ents.get(s))
        r_ids.append(rels.get(r))
        o_ids.append(ents.get(o))
    if not s_ids:
        raise KGFormatError(path, None, "no facts", f"write one fact per line as {example}")
    return FactTable(
        np.asarray(s_ids),
        np.asarray(r_ids),
        np.asarray(o_ids),
        ents.raw,
        rels.raw,
        np.asarray(times) if width == 4 else None,
        unit,
        name=path.stem,
    )
