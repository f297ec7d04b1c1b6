"""KG loaders: each format from small fixtures written here, format errors with file:line, and
(integration) the real shared datasets when ``../shared/data/kg`` is present."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from rulerag.errors import ConfigError, InputFormatError
from rulerag.kg import (
    FactTable,
    KGDataset,
    date_to_day,
    default_data_root,
    entity_name_coverage,
    load_facts_file,
    load_kg,
)
from rulerag.kg.loaders import KGFormatError, nell_entity, nell_relation, render_freebase_relations


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    return folder


def tsv(*rows: tuple) -> str:
    return "".join("\t".join(str(x) for x in row) + "\n" for row in rows)


def assert_shared_vocab(kg: KGDataset) -> None:
    for table in (kg.valid, kg.test):
        assert table.entities is kg.train.entities
        assert table.relations is kg.train.relations
        assert table.source_ids is kg.train.source_ids
    kg.train.concat(kg.valid).concat(kg.test)  # works only with shared vocabularies


def error_at(excinfo: pytest.ExceptionInfo, path: Path, line: int | None) -> str:
    err = excinfo.value
    assert isinstance(err, KGFormatError) and isinstance(err, InputFormatError)
    assert Path(err.path) == path and err.line == line
    where = f"{path}:{line}" if line is not None else str(path)
    assert str(err).startswith(where + ": ") and "Fix:" in str(err)
    return str(err)


# --------------------------------------------------------------------------------------------
# ICEWS14


@pytest.fixture
def icews_dir(tmp_path: Path) -> Path:
    return write(
        tmp_path / "icews14",
        {
            "train.txt": tsv(
                ("Head_of_Government_(Croatia)", "Make_an_appeal_or_request", "Citizen_(United_Kingdom)", "2014-01-01"),
                ("Alex_Salmond", "Accuse_of_crime,_corruption", "Head_of_Government_(Croatia)", "2014-01-02"),
            ),
            "valid.txt": tsv(("Alex_Salmond", "Consult", "Xi_Jinping", "2014-09-20")),
            "test.txt": "\n" + tsv(("Xi_Jinping", "Consult", "Alex_Salmond", "2014-12-31")),
        },
    )


def test_icews_names_times_and_shared_vocabulary(icews_dir: Path) -> None:
    kg = load_kg("icews14", icews_dir)
    assert (kg.name, kg.temporal, kg.train.time_unit) == ("icews14", True, "day")
    assert (len(kg.train), len(kg.valid), len(kg.test)) == (2, 1, 1)
    assert kg.train.fact(0) == (
        "Head of Government (Croatia)",
        "Make an appeal or request",
        "Citizen (United Kingdom)",
        "2014-01-01",
    )
    assert kg.train.fact(1)[1] == "Accuse of crime, corruption"
    assert kg.test.fact(0) == ("Xi Jinping", "Consult", "Alex Salmond", "2014-12-31")
    assert kg.train.times.tolist() == [date_to_day("2014-01-01"), date_to_day("2014-01-02")]
    # ids over all three splits, in order of first appearance
    assert kg.train.entities == [
        "Head of Government (Croatia)",
        "Citizen (United Kingdom)",
        "Alex Salmond",
        "Xi Jinping",
    ]
    assert kg.train.source_ids["entity"][0] == "Head_of_Government_(Croatia)"
    assert kg.train.source_ids["relation"][-1] == "Consult"
    assert_shared_vocab(kg)
    assert entity_name_coverage(kg) == (4, 4)


def test_icews_errors_name_file_and_line(icews_dir: Path) -> None:
    (icews_dir / "valid.txt").write_text(tsv(("A", "Consult", "B", "2014-09-20"), ("A", "Consult", "B", "2014-13-01")))
    with pytest.raises(KGFormatError) as excinfo:
        load_kg("icews14", icews_dir)
    assert "bad date '2014-13-01'" in error_at(excinfo, icews_dir / "valid.txt", 2)

    (icews_dir / "valid.txt").write_text("\n\n" + tsv(("A", "Consult", "B")))
    with pytest.raises(KGFormatError) as excinfo:
        load_kg("icews14", icews_dir)
    assert "expected 4 tab-separated columns, found 3" in error_at(excinfo, icews_dir / "valid.txt", 3)


# --------------------------------------------------------------------------------------------
# RE-Net format: YAGO and WIKI


@pytest.fixture
def yago_dir(tmp_path: Path) -> Path:
    return write(
        tmp_path / "yago",
        {
            "entity2id.txt": tsv(
                ("<Take_the_\\u0022A\\u0022_Train>", 2, "1939-##-##", "####-##-##"),
                ("<Fortuna_Düsseldorf>", 0, "1895-##-##", "####-##-##"),
                ("<Edmond_O'Brien>", 1, "1915-09-10", "1985-05-09"),
                ("<Unused_Entity>", 3, "####-##-##", "####-##-##"),
            ),
            "relation2id.txt": tsv(("<wasBornIn>", 0), ("<isAffiliatedTo>", 1)),
            "ts2year.tsv": tsv(("ts_id", "year"), (0, 1830), (1, 1831), (2, 1832)),
            "train.txt": tsv((1, 1, 0, 0, 0), (2, 0, 0, 1, 0)),
            "valid.txt": tsv((1, 1, 0, 1, 0)),
            "test.txt": tsv((0, 1, 2, 2)),  # the trailing 0 column is optional
        },
    )


def test_yago_readable_names_years_and_map_ids(yago_dir: Path) -> None:
    kg = load_kg("ruleqa-y", yago_dir)
    assert kg.name == "yago" and kg.train.time_unit == "year"
    assert kg.train.entities == ["Fortuna Düsseldorf", "Edmond O'Brien", 'Take the "A" Train', "Unused Entity"]
    assert kg.train.relations == ["was born in", "is affiliated to"]
    assert kg.train.fact(0) == ("Edmond O'Brien", "is affiliated to", "Fortuna Düsseldorf", "1830")
    assert kg.train.times.tolist() == [1830, 1831]
    assert kg.test.fact(0) == ("Fortuna Düsseldorf", "is affiliated to", 'Take the "A" Train', "1832")
    assert kg.train.source_ids["entity"][2] == "<Take_the_\\u0022A\\u0022_Train>"
    assert_shared_vocab(kg)


@pytest.mark.parametrize(
    ("fname", "text", "line", "needle"),
    [
        ("valid.txt", tsv((1, 1, 0, 1, 0), (1, 1, 7, 1, 0)), 2, "object id 7 is not in entity2id.txt"),
        ("valid.txt", tsv((1, 9, 0, 1, 0)), 1, "relation id 9 is not in relation2id.txt"),
        ("train.txt", tsv((1, 1, 0, 0, 0), (1, "x", 0, 0, 0)), 2, "relation id 'x' is not an integer"),
        ("test.txt", tsv((1, 1, 0, 5, 0)), 1, "time id 5 is not in ts2year.tsv"),
        ("test.txt", tsv((1, 1, 0)), 1, "expected 4 or 5 tab-separated columns, found 3"),
        ("entity2id.txt", tsv(("<A>", 0), ("<B>", "one")), 2, "entity id 'one' is not an integer"),
        ("ts2year.tsv", tsv(("ts_id", "year"), (0, 1830), (0, 1831)), 3, "ts_id 0 given twice"),
    ],
)
def test_renet_errors_name_file_and_line(yago_dir: Path, fname: str, text: str, line: int, needle: str) -> None:
    (yago_dir / fname).write_text(text)
    with pytest.raises(KGFormatError) as excinfo:
        load_kg("yago", yago_dir)
    assert needle in error_at(excinfo, yago_dir / fname, line)


def test_missing_file_says_what_the_folder_needs(yago_dir: Path) -> None:
    (yago_dir / "ts2year.tsv").unlink()
    with pytest.raises(KGFormatError) as excinfo:
        load_kg("yago", yago_dir)
    message = error_at(excinfo, yago_dir / "ts2year.tsv", None)
    assert "missing file ts2year.tsv" in message and "entity2id.txt, relation2id.txt, ts2year.tsv" in message
    with pytest.raises(KGFormatError, match="does not exist"):
        load_kg("yago", yago_dir / "nowhere")


@pytest.fixture
def wiki_dir(tmp_path: Path) -> Path:
    return write(
        tmp_path / "wiki",
        {
            "entity2id.txt": tsv(("Q202735", 1), ("Q36477007", 0), ("Q689660", 2)),
            "relation2id.txt": tsv(("P27", 0), ("P579", 1)),
            "relation2name.tsv": tsv(
                ("pid", "id", "label", "label_2018_snapshot"),
                ("P27", 0, "country of citizenship", "x"),
                ("P579", 1, "IMA status and/or rank", ""),
            ),
            "ts2year.tsv": tsv(("ts_id", "year"), *[(t, 1786 + t) for t in range(3)]),
            "train.txt": tsv((0, 0, 1, 0, 0)),
            "valid.txt": tsv((2, 1, 1, 1, 0)),
            "test.txt": tsv((2, 0, 1, 2, 0)),
        },
    )


def test_wiki_keeps_qids_and_labels_relations(wiki_dir: Path) -> None:
    kg = load_kg("wiki", wiki_dir)
    assert kg.train.fact(0) == ("Q36477007", "country of citizenship", "Q202735", "1786")
    assert kg.valid.fact(0) == ("Q689660", "IMA status and/or rank", "Q202735", "1787")
    assert kg.train.source_ids["relation"] == ["P27", "P579"]
    assert entity_name_coverage(kg) == (0, 3)  # WIKI has no entity names: Q-ids by design
    assert_shared_vocab(kg)


def test_wiki_relation_without_label(wiki_dir: Path) -> None:
    (wiki_dir / "relation2name.tsv").write_text(tsv(("pid", "id", "label"), ("P27", 0, "country of citizenship")))
    kg = load_kg("wiki", wiki_dir)
    assert kg.train.relations == ["country of citizenship", "P579"]
    assert kg.train.source_ids["unnamed_relation"] == ["P579"]
    with pytest.raises(KGFormatError, match=r"relation2name.tsv: no label for P579"):
        load_kg("wiki", wiki_dir, strict=True)


# --------------------------------------------------------------------------------------------
# FB15k-237


def crlf(*rows: tuple) -> str:
    return tsv(*rows).replace("\n", "\r\n")


@pytest.fixture
def fb_dir(tmp_path: Path) -> Path:
    return write(
        tmp_path / "fb15k-237",
        {
            "train.txt": crlf(
                ("/m/016ywr", "/people/person/nationality", "/m/07ssc"),
                ("/m/0c94fn", "/film/film/country", "/m/07ssc"),
            ),
            "valid.txt": crlf(("/m/06rf7", "/location/administrative_division/country", "/m/0345h")),
            "test.txt": crlf(
                (
                    "/m/0c94fn",
                    "/film/film/release_date_s./film/film_regional_release_date/film_release_region",
                    "/m/0345h",
                )
            ),
            "kg-bert/entity2text.txt": tsv(
                ("/m/016ywr", "Jeremy Irons"), ("/m/07ssc", "United Kingdom"), ("/m/06rf7", "Schleswig-Holstein")
            ),
            "kg-bert/FB15k_mid2name.txt": tsv(
                ("/m/016ywr", "Jeremy_Irons_(wrong_map)"), ("/m/0c94fn", "Gary_Rydstrom")
            ),
        },
    )


def test_fb15k237_names_relations_and_coverage(fb_dir: Path) -> None:
    kg = load_kg("fb15k-237", fb_dir)
    assert not kg.temporal and kg.train.times is None
    assert kg.train.fact(0) == ("Jeremy Irons", "nationality", "United Kingdom", None)  # entity2text preferred
    assert kg.train.fact(1) == ("Gary Rydstrom", "country (film)", "United Kingdom", None)  # mid2name fallback
    assert kg.valid.fact(0) == (
        "Schleswig-Holstein",
        "country (administrative division)",
        "/m/0345h",
        None,
    )  # unmapped: mid kept
    assert kg.test.fact(0)[1] == "film release region"
    assert kg.train.source_ids["unnamed_entity"] == ["/m/0345h"]
    assert kg.train.source_ids["entity"] == ["/m/016ywr", "/m/07ssc", "/m/0c94fn", "/m/06rf7", "/m/0345h"]
    assert kg.train.source_ids["relation"][0] == "/people/person/nationality"
    assert entity_name_coverage(kg) == (4, 5)
    assert_shared_vocab(kg)


def test_fb15k237_strict_and_missing_name_maps(fb_dir: Path) -> None:
    with pytest.raises(KGFormatError) as excinfo:
        load_kg("fb15k-237", fb_dir, strict=True)
    assert "/m/0345h has no name" in error_at(excinfo, fb_dir / "valid.txt", 1)
    (fb_dir / "kg-bert" / "FB15k_mid2name.txt").unlink()
    (fb_dir / "kg-bert" / "entity2text.txt").write_text("/m/016ywr\tJeremy Irons\n/m/07ssc\n")
    with pytest.raises(KGFormatError) as excinfo:
        load_kg("fb15k-237", fb_dir)
    error_at(excinfo, fb_dir / "kg-bert" / "entity2text.txt", 2)
    (fb_dir / "kg-bert" / "entity2text.txt").unlink()
    with pytest.raises(KGFormatError, match="missing entity name map"):
        load_kg("fb15k-237", fb_dir)


def test_freebase_relation_renderer_keeps_relations_distinct() -> None:
    raws = [
        "/people/person/nationality",
        "/film/film/release_date_s./film/film_regional_release_date/film_release_region",
        "/film/film/runtime./film/film_cut/film_release_region",
        "/people/person/spouse_s./people/marriage/spouse",
        "/location/statistical_region/gdp_nominal./measurement_unit/dated_money_value/currency",
        "/location/statistical_region/rent50_2./measurement_unit/dated_money_value/currency",
        "/soccer/football_team/current_roster./soccer/football_roster_position/position",
        "/soccer/football_team/current_roster./sports/sports_team_roster/position",
        "/american_football/football_team/current_roster./sports/sports_team_roster/position",
    ]
    names = render_freebase_relations(raws)
    assert names[0] == "nationality" and names[3] == "spouse"
    assert names[1].startswith("film release region (") and names[2].startswith("film release region (")
    assert names[4] == "currency (statistical region gdp nominal)"
    assert len(set(names)) == len(names)
    assert all("_" not in n and "/" not in n for n in names)
    assert render_freebase_relations(
        ["/film/film/release_date_s./film/film_regional_release_date/film_release_region"]
    ) == ["film release region"]


# --------------------------------------------------------------------------------------------
# NELL-995


def test_nell_entities_types_and_relations(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "nell",
        {
            "train.txt": tsv(
                ("concept_athlete_joe_smith", "concept:athleteplaysforteam", "concept_sportsteam_red_sox"),
                ("concept_bacteria_e__coli", "concept:latitudelongitude", "-33.3000000000000,-64.7500000000000"),
            ),
            "valid.txt": tsv(("concept:athlete:joe_smith", "concept:persondiedatage", "42")),
            "test.txt": tsv(("concept_year_n1916", "concept:zorbleswith", "concept_bacteria_e_coli")),
        },
    )
    kg = load_kg("nell-995", folder)
    assert kg.train.fact(0) == ("joe smith", "athlete plays for team", "red sox", None)
    types = dict(zip(kg.train.source_ids["entity"], kg.train.entity_types))
    assert types["concept_athlete_joe_smith"] == "athlete" and types["concept_sportsteam_red_sox"] == "sportsteam"
    assert types["-33.3000000000000,-64.7500000000000"] == "coordinates" and types["42"] == "number"
    assert kg.valid.fact(0) == ("joe smith", "person died at age", "42", None)
    # NELL spells one thing several ways: two ids, one readable name
    assert kg.test.fact(0) == ("1916", "zorbleswith", "e coli", None)
    assert kg.train.entities.count("e coli") == 2 and len(kg.train.entity_types) == kg.train.num_entities == 8
    assert_shared_vocab(kg)


def test_nell_helpers() -> None:
    assert nell_entity("concept_politicianus_mr__mccain") == ("mr mccain", "politicianus")
    assert nell_entity("concept_beverage__") == ("concept_beverage__", "beverage")  # only punctuation: raw id kept
    assert nell_relation("concept:hashusband") == "has husband"
    assert (
        nell_relation("concept:stateorprovinceisborderedbystateorprovince")
        == "state or province is bordered by state or province"
    )
    assert nell_relation("concept:politicianusendorsedbypoliticianus") == "politician us endorsed by politician us"


# --------------------------------------------------------------------------------------------
# names, folders, the user's own file


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_kg("freebase", "/nowhere")
    message = str(excinfo.value)
    assert "'freebase'" in message and all(
        n in message for n in ("icews14", "yago", "wiki", "fb15k-237", "nell-995", "ruleqa-i")
    )


def test_default_data_root_from_environment(icews_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = icews_dir.parent / "data"
    (root / "kg").mkdir(parents=True)
    icews_dir.rename(root / "kg" / "icews14")
    monkeypatch.setenv("RULERAG_DATA", str(root))
    assert default_data_root() == root
    assert len(load_kg("RuleQA-I").train) == 2


def test_load_facts_file_temporal_static_and_comments(tmp_path: Path) -> None:
    years = (
        write(
            tmp_path,
            {
                "years.tsv": "# subject relation object year\n\n"
                "Alice\tlives_in\tNorland\t2014\nBob\tlives_in\tNorland\t-44\n"
            },
        )
        / "years.tsv"
    )
    kg = load_facts_file(years)
    assert isinstance(kg, FactTable) and kg.time_unit == "year" and kg.times.tolist() == [2014, -44]
    assert kg.fact(0) == ("Alice", "lives_in", "Norland", "2014") and kg.name == "years"
    days = write(tmp_path, {"days.tsv": "Alice\tmet\tBob\t2014-02-03\n"}) / "days.tsv"
    assert load_facts_file(days, temporal=True).fact(0)[3] == "2014-02-03"
    static = write(tmp_path, {"static.tsv": "Alice\tknows\tBob\r\nBob\tknows\tCarol\n"}) / "static.tsv"
    kg = load_facts_file(static)
    assert not kg.temporal and kg.entities == ["Alice", "Bob", "Carol"]
    assert np.array_equal(kg.objects, [1, 2])


@pytest.mark.parametrize(
    ("text", "temporal", "line", "needle"),
    [
        ("A\tr\tB\t2014\nA\tr\tB\n", None, 2, "3 columns, but the first fact has 4"),
        ("# c\nA\tr\tB\t2014-02-30\n", None, 2, "bad date '2014-02-30'"),
        ("A\tr\tB\t2014-02-03\nA\tr\tB\t2015\n", None, 2, "mixes dates and years"),
        ("A\tr\tB\tlast year\n", None, 1, "bad time 'last year'"),
        ("A\tr\tB\n", True, 1, "expected 4 tab-separated columns, found 3"),
        ("A\tr\n", None, 1, "expected 3 or 4 tab-separated columns, found 2"),
        ("A\t\tB\n", None, 1, "empty subject, relation or object"),
    ],
)
def test_load_facts_file_errors(tmp_path: Path, text: str, temporal: bool | None, line: int, needle: str) -> None:
    path = write(tmp_path, {"kg.tsv": text}) / "kg.tsv"
    with pytest.raises(KGFormatError) as excinfo:
        load_facts_file(path, temporal=temporal)
    assert needle in error_at(excinfo, path, line)


# --------------------------------------------------------------------------------------------
# integration: the real shared datasets

_ROOT = default_data_root()
_REAL = None if _ROOT is None else _ROOT / "kg"

# (train, valid, test, entities, relations) of the shared copies (blob ids in SOURCES.md)
_SIZES = {
    "icews14": (63685, 13823, 13222, 7128, 230),
    "yago": (161540, 19523, 20026, 10623, 10),
    "wiki": (539286, 67538, 63110, 12554, 24),
    "fb15k-237": (272115, 17535, 20466, 14541, 237),
    "nell-995": (149678, 543, 3992, 75492, 200),
}


@pytest.fixture(scope="module")
def real_kg() -> dict[str, KGDataset]:
    if _REAL is None or not _REAL.is_dir():
        pytest.skip(
            f"shared KG data not found (looked for {_REAL or '../shared/data/kg'}; "
            "set RULERAG_DATA to the folder holding kg/)"
        )
    return {}


def _load_real(cache: dict[str, KGDataset], name: str) -> KGDataset:
    if not (_REAL / name).is_dir():
        pytest.skip(f"{_REAL / name} not found")
    if name not in cache:
        cache[name] = load_kg(name)
    return cache[name]


@pytest.mark.integration
def test_real_icews14_corpus_size(real_kg: dict[str, KGDataset]) -> None:
    kg = _load_real(real_kg, "icews14")
    assert len(kg.train) + len(kg.valid) == 77508
    assert not any("_" in e for e in kg.train.entities) and not any("_" in r for r in kg.train.relations)
    assert (
        kg.train.time_label(kg.train.times.min()) == "2014-01-01"
        and kg.test.time_label(kg.test.times.max()) == "2014-12-31"
    )


@pytest.mark.integration
@pytest.mark.parametrize("name", list(_SIZES))
def test_real_dataset_sanity(real_kg: dict[str, KGDataset], name: str) -> None:
    kg = _load_real(real_kg, name)
    t = kg.train
    assert (len(kg.train), len(kg.valid), len(kg.test), t.num_entities, t.num_relations) == _SIZES[name]
    assert_shared_vocab(kg)
    assert len(set(t.relations)) == t.num_relations  # relation names stay distinct
    assert all(r.strip() and "_" not in r for r in t.relations)
    assert all(e.strip() for e in t.entities)
    for table in (kg.train, kg.valid, kg.test):
        assert table.subjects.max() < t.num_entities and table.objects.max() < t.num_entities
    named, total = entity_name_coverage(kg)
    if name == "wiki":
        assert named == 0 and all(e.startswith("Q") for e in t.entities)  # no names exist: Q-ids
        assert "country of citizenship" in t.relations
    else:
        assert named / total >= 0.99
    if name == "fb15k-237":
        assert not any(e.startswith("/m/") for e in t.entities) and "nationality" in t.relations
    if name == "nell-995":
        assert t.entity_types is not None and all(t.entity_types)
        types = collections.Counter(t.entity_types)
        assert types["city"] > 1000 and types["coordinates"] > 0
        assert "athlete plays for team" in t.relations
        unnamed = set(t.source_ids["unnamed_entity"])  # names that are only punctuation: concept_beverage__
        assert len(unnamed) < 100 and not any(e.startswith("concept_") and e not in unnamed for e in t.entities)
    if name == "yago":
        assert "was born in" in t.relations and not any(e.startswith("<") or "_" in e for e in t.entities)
    if kg.temporal:
        expected = {"icews14": "day", "yago": "year", "wiki": "year"}[name]
        assert t.time_unit == expected
