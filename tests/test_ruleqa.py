"""RuleQA builder: determinism, no test leakage into mining, sampling, filtered gold answers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from rulerag.bench import ruleqa
from rulerag.bench.ruleqa import FILES, BuildConfig, build_benchmark, load_questions, question_text
from rulerag.errors import ConfigError
from rulerag.kg.loaders import default_data_root
from rulerag.rules.mine import MineConfig


def _config(**kw):
    return BuildConfig("ruleqa-i", num_questions=20, finetune_questions=30, mine=MineConfig(min_support=2, max_length=1), **kw)


def test_same_seed_same_bytes_other_seed_other_sample(toy_kg, tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    c = tmp_path / "c"
    build_benchmark(toy_kg, a, _config(seed=1), progress=False)
    build_benchmark(toy_kg, b, _config(seed=1), progress=False)
    build_benchmark(toy_kg, c, _config(seed=2), progress=False)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "questions.jsonl").read_bytes() != (c / "questions.jsonl").read_bytes()
    assert (a / "corpus.jsonl").read_bytes() == (c / "corpus.jsonl").read_bytes()


def test_corpus_is_train_plus_valid_and_mining_never_sees_test(toy_kg, tmp_path, monkeypatch):
    seen = {}
    real = ruleqa.mine_rules

    def spy(kg, config, progress=False):
        seen["facts"] = set(kg)
        return real(kg, config, progress=progress)

    monkeypatch.setattr(ruleqa, "mine_rules", spy)
    stats = build_benchmark(toy_kg, tmp_path / "b", _config(), progress=False)
    corpus_facts = set(toy_kg.train) | set(toy_kg.valid)
    assert seen["facts"] == corpus_facts
    assert not (set(toy_kg.test) - corpus_facts) & seen["facts"]
    docs = [orjson.loads(x) for x in (tmp_path / "b" / "corpus.jsonl").read_bytes().splitlines()]
    assert stats["documents"] == len(docs) == len(toy_kg.train) + len(toy_kg.valid)
    assert docs[0]["contents"].startswith("Time 2014-") and docs[0]["contents"].endswith(".")
    rules = [orjson.loads(x) for x in (tmp_path / "b" / "rules.jsonl").read_bytes().splitlines()]
    assert any(r["head"]["relation"] == "Consult" and r["body"][0]["relation"] == "Make a visit" for r in rules)


def test_questions_carry_query_gold_and_filtered_answers(toy_kg, tmp_path):
    build_benchmark(toy_kg, tmp_path / "b", _config(), progress=False)
    qs = load_questions(tmp_path / "b")
    assert len(qs) == 20 and len({(q["subject"], q["relation"], q["time"]) for q in qs}) == 20
    test_facts = set(toy_kg.test)
    for q in qs:
        assert (q["subject"], q["relation"], q["answer"], q["time"]) in test_facts
        expected = {o for s, r, o, t in test_facts if (s, r, t) == (q["subject"], q["relation"], q["time"])}
        assert set(q["golden_answers"]) == expected and q["golden_answers"][0] == q["answer"]
        assert q["question"] == question_text(q["subject"], q["relation"], q["time"], "day")


def test_balanced_and_uniform_sampling(toy_kg, tmp_path):
    stats = build_benchmark(toy_kg, tmp_path / "bal", _config(popular_share=0.2), progress=False)
    groups = [q["popularity"] for q in load_questions(tmp_path / "bal")]
    assert groups.count("popular") == groups.count("long-tail") == 10
    assert stats["share_popular"] == 0.5
    build_benchmark(toy_kg, tmp_path / "uni", _config(popular_share=0.2, sample="uniform"), progress=False)
    assert len(load_questions(tmp_path / "uni")) == 20


def test_finetuning_splits_are_disjoint_from_test_and_take_the_latest_evidence(toy_kg, tmp_path):
    build_benchmark(toy_kg, tmp_path / "b", _config(), progress=False)
    questions = {q["question"] for q in load_questions(tmp_path / "b")}
    pairs = [orjson.loads(x) for x in (tmp_path / "b" / "finetune_retriever.jsonl").read_bytes().splitlines()]
    gens = [orjson.loads(x) for x in (tmp_path / "b" / "finetune_generator.jsonl").read_bytes().splitlines()]
    assert pairs and gens
    docs = {d["id"]: d for d in map(orjson.loads, (tmp_path / "b" / "corpus.jsonl").read_bytes().splitlines())}
    dates: dict[tuple, list[str]] = {}
    for d in docs.values():
        dates.setdefault((d["subject"], d["relation"], d["object"]), []).append(d["time"])
    repeated = 0
    for p in pairs:
        assert p["question"] not in questions
        q_date = p["question"].rsplit(" on ", 1)[1].rstrip("?")
        for text in p["positive_texts"]:
            assert text.split()[1] < q_date, "a supporting fact must precede the question's time"
        for pid in p["positive_ids"]:  # the most recent fact of its triple before the question
            d = docs[pid]
            earlier = [t for t in dates[(d["subject"], d["relation"], d["object"])] if t < q_date]
            assert d["time"] == max(earlier), (p["id"], d["time"], earlier)
            repeated += len(earlier) > 1
    assert repeated, "the toy KG repeats triples, so the latest-fact choice is exercised"
    assert all("<rules>" in g["prompt"] or "leads to" in g["prompt"] for g in gens)


def test_bad_config_and_existing_output(toy_kg, tmp_path):
    with pytest.raises(ConfigError, match="unknown benchmark 'ruleqa-x'.*ruleqa-i"):
        BuildConfig("ruleqa-x")
    with pytest.raises(ConfigError, match="balanced"):
        BuildConfig("ruleqa-i", sample="random")
    (tmp_path / "b").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_benchmark(toy_kg, tmp_path / "b", _config(), progress=False)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ruleqa-i", "ruleqa-y", "ruleqa-w", "ruleqa-f", "ruleqa-n"])
def test_presets_build_the_same_bytes_as_before_the_generic_builder(tmp_path, name):
    """The five presets go through the builder a KG of one's own does; their files keep the
    checksums recorded before that builder existed (tests/data/ruleqa_checksums.json)."""
    import hashlib
    import json

    from rulerag.bench.ruleqa import BENCHMARKS
    from rulerag.kg.loaders import dataset_name, load_kg

    root = default_data_root()
    source = BENCHMARKS[name][0]
    if root is None or not (root / "kg" / dataset_name(source)).is_dir():
        pytest.skip(f"../shared/data/kg/{dataset_name(source)} is not present (set RULERAG_DATA to the shared data folder)")
    expected = json.loads((Path(__file__).parent / "data" / "ruleqa_checksums.json").read_text())[name]
    build_benchmark(load_kg(source), tmp_path / name, BuildConfig(name), progress=False)
    got = {f: hashlib.sha256((tmp_path / name / f).read_bytes()).hexdigest() for f in expected}
    assert got == expected


def test_own_benchmark_names_are_checked():
    assert BuildConfig("my-kg").size == 1000 and not BuildConfig("my-kg").preset and BuildConfig("ruleqa-n").size == 815
    for bad in ("My KG", "", "a/b", "-x"):
        with pytest.raises(ConfigError, match="lowercase"):
            BuildConfig(bad)
