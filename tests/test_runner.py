"""The benchmark runner end to end on a tiny benchmark, including resume after an interruption."""

from __future__ import annotations

import json
import sys

import pytest

from rulerag.bench.ruleqa import BuildConfig, build_benchmark
from rulerag.bench.runner import RunConfig, Runner, mcnemar, run_benchmark
from rulerag.config import load_settings
from rulerag.errors import ConfigError
from rulerag.retrieval.guided import RuleGuidedRetriever
from rulerag.rules.mine import MineConfig


@pytest.fixture(scope="module")
def bench(toy_kg, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "toy"
    build_benchmark(toy_kg, out, BuildConfig("ruleqa-i", num_questions=24, mine=MineConfig(min_support=2, max_length=1)), progress=False)
    return out


def _config(bench, out, **kw):
    settings = load_settings(overrides={"generation": {"backend": "fixed"}})
    base = dict(bench=bench, out=out, retrievers=["bm25"], modes=["standard", "rulerag"], answerers=["none", "reasoner", "llm"],
                settings=settings, progress=False, batch_size=5)
    return RunConfig(**{**base, **kw})


def test_runner_end_to_end(bench, tmp_path):
    results = run_benchmark(_config(bench, tmp_path / "out"))
    rows = {(r["mode"], r["answerer"]): r for r in results["rows"]}
    assert set(rows) == {(m, a) for m in ("standard", "rulerag") for a in ("none", "reasoner", "llm")}
    for row in rows.values():
        assert row["questions"] == 24
        assert 0.0 <= row["recall@1"] <= row["recall@5"] <= row["recall@10"] <= row["recall@50"] <= 1.0
    assert rows[("rulerag", "none")]["with_rules"] > 0 and rows[("standard", "none")]["with_rules"] == 0
    # the toy KG's visits precede consultations: the reasoner must find some answers
    assert rows[("rulerag", "reasoner")]["em"] > 0
    assert "em" in rows[("standard", "llm")] and "em" not in rows[("standard", "none")]
    assert {t["metric"] for t in results["paired_tests"]} == {"recall@10", "em (reasoner)", "em (llm)"}
    for name in ("results.json", "results.md", "recall_at_k.png", "standard_vs_rulerag.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["config"]["rrf_k"] == 60 and saved["settings"]["retrieval"]["merge"] == "round_robin"
    assert "bm25s" in saved["libraries"]


def test_interrupted_run_resumes_without_redoing_work(bench, tmp_path, monkeypatch):
    real = RuleGuidedRetriever.retrieve_many
    calls = {"n": 0}

    def flaky(self, questions, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, questions, **kw)

    monkeypatch.setattr(RuleGuidedRetriever, "retrieve_many", flaky)
    config = _config(bench, tmp_path / "out", modes=["rulerag"], answerers=["none"])
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(config)
    cache = next((tmp_path / "out" / "cache").glob("retrieval-*.jsonl"))
    assert len(cache.read_text().splitlines()) == 10  # two batches of 5 were saved

    asked = []

    def counting(self, questions, **kw):
        asked.extend(questions)
        return real(self, questions, **kw)

    monkeypatch.setattr(RuleGuidedRetriever, "retrieve_many", counting)
    results = run_benchmark(config)
    assert len(asked) == 14  # only the questions not retrieved before the interruption
    assert len(cache.read_text().splitlines()) == 24
    fresh = run_benchmark(_config(bench, tmp_path / "fresh", modes=["rulerag"], answerers=["none"]))
    assert results["rows"] == fresh["rows"]


def test_answerer_change_reuses_retrieval(bench, tmp_path, monkeypatch):
    run_benchmark(_config(bench, tmp_path / "out", answerers=["none"]))

    def boom(*a, **k):
        raise AssertionError("retrieval must come from the cache")

    monkeypatch.setattr(RuleGuidedRetriever, "retrieve_many", boom)
    results = run_benchmark(_config(bench, tmp_path / "out", answerers=["reasoner"]))
    assert all("em" in r for r in results["rows"])


def test_limit_takes_a_seeded_sample(bench, tmp_path):
    a = Runner(_config(bench, tmp_path / "a", limit=10, seed=1)).questions
    b = Runner(_config(bench, tmp_path / "b", limit=10, seed=1)).questions
    c = Runner(_config(bench, tmp_path / "c", limit=10, seed=2)).questions
    assert [q["id"] for q in a] == [q["id"] for q in b] != [q["id"] for q in c]


def test_bad_run_config(bench, tmp_path):
    with pytest.raises(ConfigError, match="unknown answerer"):
        _config(bench, tmp_path, answerers=["oracle"])
    with pytest.raises(ConfigError, match="not a benchmark directory"):
        _config(tmp_path, tmp_path)


def test_mcnemar_counts_discordant_pairs():
    t = mcnemar([1, 1, 0, 0, 1], [1, 0, 1, 1, 1])
    assert (t["a_only"], t["b_only"]) == (1, 2) and t["p_value"] == pytest.approx(1.0)
    assert mcnemar([0] * 10, [1] * 10)["p_value"] == pytest.approx(2 * 0.5**10)


def test_cache_key_depends_on_the_index_encoder(bench, tmp_path):
    runner = Runner(_config(bench, tmp_path / "k"))
    before = runner._key("bm25", "rulerag")
    runner.index.manifest.encoder = {"path": "/models/ft", "fingerprint": "abc123"}  # an index built with a fine-tuned encoder
    assert runner._key("bm25", "rulerag") != before


def test_plots_are_reported_as_written(bench, tmp_path):
    from rulerag.bench.runner import PLOTS

    results = run_benchmark(_config(bench, tmp_path / "out", answerers=["none"]))
    assert results["plots"] == list(PLOTS) and "plots_skipped" not in results
    assert json.loads((tmp_path / "out" / "results.json").read_text())["plots"] == list(PLOTS)


def test_without_matplotlib_plots_are_skipped_and_said_so(bench, tmp_path, monkeypatch):
    """`rulerag bench run` without matplotlib: no PNG, and the message says the plots were skipped and
    which extra installs them instead of claiming them."""
    from typer.testing import CliRunner

    from rulerag.cli import app

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "recall_at_k.png").write_bytes(b"an earlier run's plot")  # would show other results: removed
    res = CliRunner().invoke(app, ["bench", "run", "--bench", str(bench), "--out", str(out), "--retrievers", "bm25",
                                   "--modes", "standard,rulerag", "--answerers", "none", "-q"])
    assert res.exit_code == 0, res.output
    said = res.stderr
    assert "plots skipped: matplotlib is not installed" in said and 'pip install "rulerag[bench]"' in said, said
    assert ".png" not in said and "plots (" not in said, said
    assert not list(out.glob("*.png"))
    saved = json.loads((out / "results.json").read_text())
    assert saved["plots"] == [] and "rulerag[bench]" in saved["plots_skipped"]
    assert "Plots skipped: matplotlib is not installed" in (out / "results.md").read_text()
