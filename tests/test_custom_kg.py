"""Any KG becomes a benchmark (rulerag.kg.custom, `rulerag bench build --kg`): four fixture KGs,
static or temporal, with names or opaque ids, go from triples to a benchmark report with
rule-guided vs standard Recall@10 through the commands docs/benchmarks.md shows; bad input is
refused with file:line and the fix."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rulerag.errors import ConfigError
from rulerag.kg.custom import load_custom_kg, read_names
from rulerag.kg.loaders import KGFormatError

FIRST = ["Ada", "Bo", "Cleo", "Dag", "Eli", "Fen", "Gus", "Hal", "Ida", "Jon", "Kai", "Liv"]
LAST = ["Quill", "Renn", "Sato", "Tarn", "Ulm", "Voss", "Wick", "Yarrow"]
CITIES = ["Veldt", "Tarvik", "Dravport", "Uppvik", "Ostra", "Kell", "Marrow", "Brisk", "Calder", "Dunmore"]
COUNTRIES = ["Norland", "Karsland", "Estmark"]


def facts(temporal: bool, seed: int = 0) -> list[tuple[str, ...]]:
    """A small KG where citizenship follows birth city and the city's country (with exceptions)."""
    rng = random.Random(seed)
    country = {c: COUNTRIES[i % 3] for i, c in enumerate(CITIES)}
    out = [(c, "city in", k) for c, k in country.items()]
    for f in FIRST:
        for last in LAST:
            person, city = f"{f} {last}", rng.choice(CITIES)
            born = rng.randrange(2000, 2010)
            out.append((person, "born in", city, born))
            out.append((person, "citizen of", country[city] if rng.random() < 0.85 else rng.choice(COUNTRIES), born + rng.randrange(1, 10)))
            out.append((person, "lives in", rng.choice(CITIES), born + rng.randrange(0, 10)))
    out = [f if len(f) == 4 else (*f, 2000) for f in out]
    return [f if temporal else f[:3] for f in out]


def write_kg(folder: Path, temporal: bool, ids: bool) -> tuple[Path, Path | None]:
    """One facts file (names or ids) and, for ids, the id<TAB>name map."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = facts(temporal)
    names: dict[str, str] = {}
    if ids:
        code: dict[str, str] = {}
        for row in rows:
            for i, x in enumerate(row[:3]):
                prefix = "P" if i == 1 else "Q"
                code.setdefault(x, f"{prefix}{100 + len(code)}")
        names = {v: k for k, v in code.items()}
        rows = [tuple(code[x] for x in row[:3]) + tuple(str(x) for x in row[3:]) for row in rows]
    path = folder / "facts.tsv"
    path.write_text("# my KG\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")
    mapping = None
    if ids:
        mapping = folder / "names.tsv"
        mapping.write_text("".join(f"{k}\t{v}\n" for k, v in names.items()), encoding="utf-8")
    return path, mapping


@pytest.mark.parametrize("temporal", [False, True], ids=["static", "temporal"])
@pytest.mark.parametrize("ids", [False, True], ids=["names", "ids"])
def test_own_kg_to_a_benchmark_report(tmp_path, temporal, ids):
    """The documented walk-through, on each of the four shapes (ids with and without names)."""
    from rulerag.cli import app

    kg, mapping = write_kg(tmp_path / "kg", temporal, ids)
    bench, report = tmp_path / "bench", tmp_path / "report"
    runner = CliRunner()
    build = ["bench", "build", "--kg", str(kg), "--name", "my-kg", "--out", str(bench), "--questions", "40", "-q",
             "--min-support", "3"]
    if mapping is not None and temporal:  # ids with names for the temporal KG; the static one reads as ids
        build += ["--names", str(mapping)]
    r = runner.invoke(app, build)
    assert r.exit_code == 0, (r.output, r.exception)
    stats = json.loads((bench / "stats.json").read_text())
    assert stats["benchmark"] == "my-kg" and stats["source_kg"] == "my-kg" and stats["rules"] > 0
    assert stats["questions"] > 0 and stats["paper"] is None and stats["temporal"] is temporal
    # the other question sample, and the splits as files that build the same KG again
    other = stats["other_sample"]
    assert other["sample"] == "uniform" and len((bench / other["file"]).read_text().splitlines()) == other["questions"] > 0
    again = load_custom_kg(bench / "splits")
    assert [len(again.train), len(again.valid), len(again.test)] == [stats["splits"][s] for s in ("train", "valid", "test")]
    doc = json.loads((bench / "corpus.jsonl").read_text().splitlines()[0])
    assert doc["id"].startswith("my-kg-")
    if ids and not temporal:  # no names: the documents read as the ids do
        assert doc["contents"].split()[0].startswith("Q")
    else:
        assert not doc["contents"].startswith("Q1")
    r = runner.invoke(app, ["bench", "run", "--bench", str(bench), "--out", str(report), "--retrievers", "bm25",
                            "--modes", "standard,rulerag", "--answerers", "none", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    rows = {row["mode"]: row for row in json.loads((report / "results.json").read_text())["rows"]}
    assert set(rows) == {"standard", "rulerag"} and all(0 <= rows[m]["recall@10"] <= 100 for m in rows)


def test_split_files_share_one_vocabulary(tmp_path):
    rows = facts(False)
    for split, part in (("train", rows[:200]), ("valid", rows[200:250]), ("test", rows[250:])):
        (tmp_path / f"{split}.txt").write_text("".join("\t".join(r) + "\n" for r in part), encoding="utf-8")
    kg = load_custom_kg(tmp_path, name="mine")
    assert kg.name == "mine" and (len(kg.train), len(kg.valid), len(kg.test)) == (200, 50, len(rows) - 250)
    assert kg.train.entities is kg.test.entities
    assert {kg.test.fact(i)[:3] for i in range(len(kg.test))} == set(rows[250:])


def test_one_file_is_split_by_time_or_shuffled(tmp_path):
    path, _ = write_kg(tmp_path / "t", True, False)
    kg = load_custom_kg(path)
    assert kg.temporal and kg.name == "facts"
    assert kg.train.times.max() < kg.valid.times.min() <= kg.valid.times.max() < kg.test.times.min()
    static, _ = write_kg(tmp_path / "s", False, False)
    a, b = load_custom_kg(static, seed=0), load_custom_kg(static, seed=1)
    assert len(a.train) + len(a.valid) + len(a.test) == len(facts(False))
    assert abs(len(a.test) - 0.1 * len(facts(False))) <= 1
    assert [a.test.fact(i) for i in range(5)] != [b.test.fact(i) for i in range(5)]


def test_names_map_names_entities_and_relations(tmp_path):
    path, mapping = write_kg(tmp_path, False, True)
    kg = load_custom_kg(path, names=mapping)
    assert "born in" in kg.train.relations and any(e.startswith("Ada ") for e in kg.train.entities)
    assert kg.train.source_ids["entity"][0].startswith("Q")


@pytest.mark.parametrize("content, line, problem", [
    ("a\tr\tb\nc\tr\n", 2, "column"),
    ("a\tr\tb\t2014\nc\tr\td\tyesterday\n", 2, "time"),
    ("a\tr\tb\n\tr\td\n", 2, "empty"),
])
def test_malformed_facts_name_the_line(tmp_path, content, line, problem):
    path = tmp_path / "facts.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KGFormatError) as err:
        load_custom_kg(path)
    assert f"{path}:{line}" in str(err.value) and problem in str(err.value) and "Fix" in str(err.value)


def test_split_overlap_and_bad_names_are_refused(tmp_path):
    rows = facts(False)
    (tmp_path / "train.txt").write_text("".join("\t".join(r) + "\n" for r in rows[:200]), encoding="utf-8")
    (tmp_path / "valid.txt").write_text("".join("\t".join(r) + "\n" for r in rows[200:250]), encoding="utf-8")
    (tmp_path / "test.txt").write_text("# test\n" + "".join("\t".join(r) + "\n" for r in [*rows[250:253], rows[7]]), encoding="utf-8")
    with pytest.raises(KGFormatError, match=r"test\.txt:5: .*also in the train split"):
        load_custom_kg(tmp_path)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(KGFormatError, match="no test file"):
        load_custom_kg(tmp_path)
    bad = tmp_path / "names.tsv"
    bad.write_text("Q1\tAda\nQ2\n", encoding="utf-8")
    with pytest.raises(KGFormatError, match=r"names\.tsv:2"):
        read_names(bad)


def test_too_small_a_kg_says_so(tmp_path):
    from rulerag.cli import app

    path = tmp_path / "tiny.tsv"
    path.write_text("".join(f"e{i}\tr{i % 7}\te{i + 1}\n" for i in range(40)), encoding="utf-8")
    r = CliRunner().invoke(app, ["bench", "build", "--kg", str(path), "--out", str(tmp_path / "b"), "-q"])
    assert isinstance(r.exception, ConfigError) and "no rules" in str(r.exception) and "Fix" in str(r.exception)
    assert not (tmp_path / "b").exists()
