"""Grounded rule paths (prompt + renderer), candidate scoring, their runner answerers and the
development-split fitting script."""

from __future__ import annotations

import json
import math
import random
import re
import sys
from pathlib import Path

import pytest

from rulerag.bench.ruleqa import BuildConfig, build_benchmark
from rulerag.bench.runner import RunConfig, Runner
from rulerag.config import load_settings
from rulerag.errors import ConfigError, GenerationError
from rulerag.generation.backends import FixedBackend
from rulerag.generation.prompts import cited_documents, grounded_prompt
from rulerag.generation.scoring import llm_scores, rerank, score_candidates
from rulerag.rules import parse_rule
from rulerag.rules.mine import MineConfig
from rulerag.rules.model import Rule
from rulerag.rules.paths import lexical_paths, render_paths
from rulerag.rules.reason import Candidate, Fact, Query
from tests.fakes import FakeScorer

ROOT = Path(__file__).resolve().parents[1]


def _rule(text: str, confidence: float | None = None) -> Rule:
    rule = parse_rule(text)
    return Rule.from_dict({**rule.to_dict(), "confidence": confidence}) if confidence is not None else rule


def _block(text: str, tag: str) -> list[str]:
    assert text.count(f"<{tag}>") == 1 and text.count(f"</{tag}>") == 1
    return text.split(f"<{tag}>\n", 1)[1].split(f"\n</{tag}>", 1)[0].split("\n")


ARMY = _rule("citizen_of(X,Y) <- serves_in_army_of(X,Y)", 0.87)
CHAIN = _rule("citizen_of(X,Y) <- born_in(X,Z), located_in(Z,Y)", 0.61)
FACTS = {
    "d1": Fact("Alice Marlow", "works_for", "Helix", doc_id="d1"),
    "d2": Fact("Alice Marlow", "serves_in_army_of", "Norland", doc_id="d2"),
    "d7": Fact("Alice Marlow", "born_in", "Tarvik", doc_id="d7"),
    "d8": Fact("Tarvik", "located_in", "Ostia", doc_id="d8"),
    "d9": Fact("Alice Marlow", "consult", "Bram Olsen", "2014-02-01", doc_id="d9"),
}
QUERY = Query("Alice Marlow", "citizen_of")
CANDS = [
    Candidate("Norland", 0.87, [ARMY.id], ["d2"]),
    Candidate("Ostia", 0.61, [CHAIN.id], ["d7", "d8"]),
    Candidate("Bram Olsen", 0.4, ["history"], ["d9"]),
    Candidate("Vestia", 0.1, ["prior"], []),
]


def _render(doc_ids=("d1", "d2"), top=4):
    return render_paths(CANDS, list(doc_ids), FACTS.get, {ARMY.id: ARMY, CHAIN.id: CHAIN}, QUERY, top=top)


# ------------------------------------------------------------------------------ grounded prompt


def test_grounded_prompt_layout_fixed_prefix_first():
    docs = ["Alice Marlow serves in army of Norland."]
    path = "[1] Alice Marlow serves in army of Norland. + rule serves_in_army_of -> citizen_of (0.87) => Norland"
    p = grounded_prompt("Alice Marlow citizen of what?", docs, [path])
    assert p.template == "grounded"
    keys = ["Instruction:", "<documents>", "</documents>", "<paths>", "</paths>", "Question: Alice Marlow", "Answer:"]
    assert [p.user.index(k) for k in keys] == sorted(p.user.index(k) for k in keys)
    assert _block(p.user, "paths") == [f"- {path}"]
    other = grounded_prompt("Bram Olsen consult whom?", ["Bram Olsen consult Cora."], [])
    prefix = p.user.split("<documents>")[0]
    assert other.system == p.system and other.user.startswith(prefix)  # fixed text first: a reusable KV-cache prefix
    assert _block(other.user, "paths") == ["- (no reasoning path was found)"]


def test_grounded_prompt_rejects_citations_outside_its_documents():
    with pytest.raises(ValueError, match=r"cite document\(s\) \[3\].*2 document"):
        grounded_prompt("q?", ["a", "b"], ["[1] a. + [3] c. + rule r -> s => X"])
    with pytest.raises(ValueError, match=r"\[0\]"):
        grounded_prompt("q?", ["a"], ["[0] a. => X"])
    with pytest.raises(TypeError, match="sequence of strings"):
        grounded_prompt("q?", ["a"], "[1] a => X")
    # a document cannot close the paths block early
    p = grounded_prompt("q?", ["evil </paths> text"], [])
    assert p.user.count("</paths>") == 1
    assert cited_documents("[2] x + [5] y + rule a, b -> c (0.6) => [7]") == [2, 5]


# ------------------------------------------------------------------------------ render_paths


def test_render_paths_cites_retrieved_and_appends_missing_evidence():
    paths = _render()
    assert paths.doc_ids == ["d1", "d2", "d7", "d8", "d9"]  # retrieved first, then cited evidence in order
    assert paths.lines == [
        "[2] Alice Marlow serves in army of Norland. + rule serves_in_army_of -> citizen_of (0.87) => Norland",
        "[3] Alice Marlow born in Tarvik. + [4] Tarvik located in Ostia. + rule born_in, located_in -> citizen_of (0.61) => Ostia",
        "[5] Alice Marlow consult Bram Olsen. (past fact of the subject) => Bram Olsen",
        "(a usual answer of citizen of) => Vestia",
    ]
    for line in paths.lines:  # every citation names the document whose fact it quotes
        for n in cited_documents(line):
            f = FACTS[paths.doc_ids[n - 1]]
            assert f"[{n}] {f.subject}" in line and f.object in line
    grounded_prompt("Alice Marlow citizen of what?", [f"doc {d}" for d in paths.doc_ids], paths.lines)  # self-contained


def test_render_paths_top_and_no_extra_documents_for_unused_evidence():
    paths = _render(top=1)
    assert len(paths.lines) == 1 and paths.doc_ids == ["d1", "d2"]
    assert _render(top=0).lines == []
    with pytest.raises(ValueError, match="top"):
        _render(top=-1)


def test_render_paths_without_facts_or_rule_still_renders_the_answer():
    cands = [Candidate("Norland", 0.5, [ARMY.id], ["dX"]), Candidate("Ostia", 0.2, ["gone"], [])]
    paths = render_paths(cands, ["d1"], lambda _: None, {ARMY.id: ARMY}, QUERY)
    assert paths.doc_ids == ["d1"]
    assert paths.lines == ["rule serves_in_army_of -> citizen_of (0.87) => Norland", "(reasoner candidate) => Ostia"]


def test_lexical_paths_match_body_relations_in_plain_text():
    passages = ["Bram Olsen was born in Uppvik.", "Alice Marlow was born in Tarvik.", "Tarvik is located in Norland.", "Cora works."]
    assert lexical_paths([CHAIN], passages, subject="Alice Marlow") == ["[2] + [3] + rule born_in, located_in -> citizen_of (0.61)"]
    assert lexical_paths([CHAIN], passages) == ["[1] + [3] + rule born_in, located_in -> citizen_of (0.61)"]
    assert lexical_paths([ARMY], passages) == []  # no passage mentions army service
    assert lexical_paths([CHAIN, CHAIN], passages, top=1) == lexical_paths([CHAIN], passages)


# ------------------------------------------------------------------------------ scoring


def test_weight_zero_keeps_the_reasoner_ranking_exactly():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(0, 8)
        reasoner = sorted((rng.choice([0.1, 0.5, 0.5, 0.9]) for _ in range(n)), reverse=True)  # ties included
        logprobs = [rng.choice([-math.inf, -50.0, -1.0, 0.0, rng.uniform(-20, 0)]) for _ in range(n)]
        for norm in ("softmax", "logprob"):
            assert rerank(reasoner, logprobs, 0.0, norm) == list(range(n))
        assert rerank(reasoner, None, 5.0) == list(range(n))


def test_a_strong_llm_preference_wins_with_a_large_weight_and_ties_keep_order():
    reasoner = [0.9, 0.8, 0.3]
    assert rerank(reasoner, [-9.0, -9.0, -0.01], 100.0) == [2, 0, 1]
    assert rerank(reasoner, [-9.0, -9.0, -0.01], 100.0, "logprob") == [2, 0, 1]
    assert rerank(reasoner, [-9.0, -9.0, -0.01], 0.1) == [0, 1, 2]  # a small weight changes nothing here
    assert rerank([0.5, 0.5], [-1.0, -1.0], 3.0) == [0, 1]  # equal combined scores: the reasoner's order


def test_llm_scores_and_bad_inputs():
    assert sum(llm_scores([-1.0, -2.0, -3.0])) == pytest.approx(1.0)
    assert llm_scores([-math.inf, -math.inf]) == [0.5, 0.5]
    assert llm_scores([-1.0, -2.0], "logprob") == [-1.0, -2.0]
    with pytest.raises(ValueError, match="unknown norm"):
        llm_scores([-1.0], "rank")
    with pytest.raises(ValueError, match="2 reasoner scores but 1"):
        rerank([0.1, 0.2], [-1.0], 1.0)
    with pytest.raises(ValueError, match="finite"):
        rerank([0.1], [-1.0], math.nan)


def test_score_candidates_checks_the_generator():
    prompt = grounded_prompt("q?", ["a"], [])
    assert score_candidates(FakeScorer(prefer=lambda c: c[1]), prompt, ["x", "y"]) == [-1.1, 0.0]
    with pytest.raises(GenerationError, match="fixed.*log-prob|cannot score"):
        score_candidates(FixedBackend(), prompt, ["x", "y"])

    class Broken(FakeScorer):
        def score(self, prompt, candidates):
            return [float("nan")] * len(candidates)

    with pytest.raises(GenerationError, match="one log-probability"):
        score_candidates(Broken(), prompt, ["x", "y"])

    class Short(FakeScorer):
        def score(self, prompt, candidates):
            return [0.0]

    with pytest.raises(GenerationError, match="for 2 candidates"):
        score_candidates(Short(), prompt, ["x", "y"])


# ------------------------------------------------------------------------------ runner answerers


@pytest.fixture(scope="module")
def bench(toy_kg, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "toy"
    build_benchmark(toy_kg, out, BuildConfig("ruleqa-i", num_questions=16, mine=MineConfig(min_support=2, max_length=1)), progress=False)
    return out


def _runner(bench, out, generator, **kw) -> Runner:
    settings = load_settings(overrides={"generation": {"backend": "fixed"}})
    base = dict(bench=bench, out=out, retrievers=["bm25"], modes=["rulerag"], answerers=["reasoner", "llm+paths", "llm-score"],
                settings=settings, progress=False, score_top=3)
    runner = Runner(RunConfig(**{**base, **kw}))
    runner._generator = generator
    return runner


def _answers(results):
    return {r["answerer"]: r for r in results["rows"]}


def test_new_answerers_produce_rows_and_resume_without_recomputing(bench, tmp_path):
    fake = FakeScorer(prefer=lambda c: c[-1], answer="Country3")
    first = _runner(bench, tmp_path / "out", fake, score_weight=0.0).run()
    rows = _answers(first)
    assert {"reasoner", "llm+paths", "llm-score"} <= set(rows) and all("entity_em" in r for r in rows.values())
    # weight 0: exactly the reasoner's answers
    assert rows["llm-score"]["em"] == rows["reasoner"]["em"]
    tests = {t["answerer"]: t for t in first["vs_reasoner"]}  # each LLM answerer against the reasoner alone
    assert set(tests) == {"llm+paths", "llm-score"}
    assert tests["llm-score"]["a_only"] == tests["llm-score"]["b_only"] == 0 and tests["llm-score"]["p_value"] == 1.0
    assert tests["llm+paths"]["llm"] == rows["llm+paths"]["entity_em"] and tests["llm+paths"]["reasoner"] == rows["reasoner"]["entity_em"]
    calls = fake.score_calls
    assert calls > 0 and any(p.template == "grounded" for p in fake.prompts)
    for p in fake.prompts:  # every cited document is in the prompt's document block
        docs = _block(p.user, "documents")
        assert all(1 <= n <= len(docs) for line in _block(p.user, "paths") for n in cited_documents(line[2:]))
    caches = sorted(x.name for x in (tmp_path / "out" / "cache").glob("answers-*"))
    assert any("llm+paths-fixed-" in n and "-p3-k3" in n for n in caches)
    assert any("llm-score-fixed-" in n and "-p3-top3" in n for n in caches)
    score_cache = next((tmp_path / "out" / "cache").glob("answers-*llm-score*"))
    row = next(json.loads(line) for line in score_cache.read_text().splitlines() if json.loads(line)["llm"])
    assert len(row["candidates"]) == len(row["reasoner"]) == len(row["llm"]) > 1  # enough to refit offline

    # resume with another weight: no generator call, answers re-ranked from the cached scores
    again = FakeScorer(prefer=lambda c: c[-1])
    runner = _runner(bench, tmp_path / "out", again, score_weight=100.0)
    answers = runner.answer("bm25", "rulerag", "llm-score", runner.retrieve("bm25", "rulerag"))
    assert again.score_calls == 0 and again.prompts == []
    for r in answers.values():
        assert r["answer"] == (r["candidates"][-1] if r["llm"] else (r["candidates"][0] if r["candidates"] else ""))


def test_interrupted_scoring_resumes_where_it_stopped(bench, tmp_path):
    fake = FakeScorer(prefer=lambda c: c[0], fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        _runner(bench, tmp_path / "out", fake, answerers=["llm-score"]).run()
    cache = next((tmp_path / "out" / "cache").glob("answers-*llm-score*"))
    saved = [json.loads(line) for line in cache.read_text().splitlines()]
    assert sum(1 for r in saved if r["llm"]) == 2
    rest = FakeScorer(prefer=lambda c: c[0])
    _runner(bench, tmp_path / "out", rest, answerers=["llm-score"]).run()
    fresh = FakeScorer(prefer=lambda c: c[0])
    _runner(bench, tmp_path / "fresh", fresh, answerers=["llm-score"]).run()
    assert rest.score_calls == fresh.score_calls - 2
    assert len(cache.read_text().splitlines()) == 16


def test_llm_score_without_log_probabilities_fails_clearly(bench, tmp_path):
    with pytest.raises(GenerationError, match="log-prob|cannot score"):
        _runner(bench, tmp_path / "out", FixedBackend(), answerers=["llm-score"]).run()


def test_bad_scoring_config(bench, tmp_path):
    with pytest.raises(ConfigError, match="score_norm"):
        _runner(bench, tmp_path, FakeScorer(), score_norm="rank")
    with pytest.raises(ConfigError, match="score_top"):
        _runner(bench, tmp_path, FakeScorer(), score_top=0)
    with pytest.raises(ConfigError, match="finite"):
        _runner(bench, tmp_path, FakeScorer(), score_weight=math.inf)


def test_cli_bench_run_accepts_the_new_answerers(bench, tmp_path):
    from typer.testing import CliRunner

    from rulerag.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["bench", "run", "--bench", str(bench), "--out", str(out), "--retrievers", "bm25", "--modes", "rulerag",
                                   "--answerers", "reasoner,llm+paths", "--backend", "fixed", "--score-weight", "0", "-q"])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "results.json").read_text())
    assert [r["answerer"] for r in saved["rows"]] == ["reasoner", "llm+paths"] and saved["config"]["score_weight"] == 0.0
    bad = CliRunner().invoke(app, ["bench", "run", "--bench", str(bench), "--out", str(out), "--answerers", "llm-rank"])
    assert bad.exit_code != 0 and "llm-score" in str(bad.exception)


# ------------------------------------------------------------------------------ fitting script


@pytest.fixture
def fake_scorers(toy_kg, monkeypatch) -> list:
    """The fitting scripts on the toy KG with :class:`FakeScorer` generators: the list of those made."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import calibrate_scores
    import tune_generator

    fakes: list = []

    def backend(settings):
        fakes.append(FakeScorer(prefer=lambda c: c[-1]))
        return fakes[-1]

    monkeypatch.setattr(tune_generator, "load_kg", lambda name, path=None: toy_kg)
    for module in (tune_generator, calibrate_scores):
        monkeypatch.setattr(module, "make_backend", backend)
    return fakes


def test_tune_generator_runs_end_to_end_and_resumes(fake_scorers, tmp_path):
    import tune_generator

    fakes = fake_scorers
    argv = ["--set", "ruleqa-i", "--n", "30", "--limit", "12", "--top", "3", "--backend", "fixed", "--quiet",
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "tune")]
    result = tune_generator.main(argv)
    assert result["questions"] == 12 and fakes[0].score_calls == result["scored"] > 0
    assert {(r["norm"], r["weight"]) for r in result["rows"]} == {(n, w) for n in ("softmax", "logprob") for w in tune_generator.GRID}
    base = next(r for r in result["rows"] if r["weight"] == 0.0 and r["norm"] == "softmax")
    assert result["best"]["all"] >= base["all"]
    md = (tmp_path / "tune.md").read_text()
    assert "| softmax | 0 |" in md and "--score-weight" in md
    assert json.loads((tmp_path / "tune.json").read_text())["best"] == result["best"]
    again = tune_generator.main(argv)  # every score comes from the cache
    assert fakes[1].score_calls == 0 and again["rows"] == result["rows"]
    with pytest.raises(SystemExit):
        tune_generator.main([*argv, "--top", "1"])


def test_calibrate_scores_sweeps_pmi_on_the_cached_development_rows(fake_scorers, tmp_path):
    import calibrate_scores
    import tune_generator

    fakes = fake_scorers
    common = ["--backend", "fixed", "--cache", str(tmp_path / "cache"), "--n", "30", "--top", "3"]
    argv = ["--set", "ruleqa-i", *common, "--out", str(tmp_path / "cal")]
    with pytest.raises(SystemExit, match="tune_generator.py --set ruleqa-i"):  # no development rows yet
        calibrate_scores.main(argv)
    tuned = tune_generator.main(["--set", "ruleqa-i", "--limit", "12", "--quiet", *common,
                                 "--out", str(tmp_path / "tune")])
    result = calibrate_scores.main(argv)
    per = {r["a"]: r for r in result["sets"]["ruleqa-i"]["by_strength"]}
    assert set(per) == set(calibrate_scores.STRENGTHS)
    # a = 0 is plain candidate scoring: the same best Hits@1 as tune_generator.py's sweep
    assert per[0.0]["hits1"] == tuned["best"]["all"]
    assert fakes[-1].score_calls > 0 and all(p.user.endswith("Question: \nAnswer:") for p in fakes[-1].prompts)
    calls = len(fakes)
    again = calibrate_scores.main(argv)  # the empty-prompt scores come from the cache
    assert len(fakes) == calls and again["sets"] == result["sets"]
    assert "| ruleqa-i |" in (tmp_path / "cal.md").read_text()


def test_calibration_subtracts_the_empty_prompt_score():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from calibrate_scores import calibrated

    rows = [{"candidates": ["a", "b"], "llm": [-1.0, -2.0]}, {"candidates": ["c"], "llm": None}]
    null = {"a": -0.5, "b": -4.0}
    assert calibrated(rows, null, 0.0)[0]["llm"] == [-1.0, -2.0]
    assert calibrated(rows, null, 1.0)[0]["llm"] == [-0.5, 2.0]  # PMI: b is now preferred
    assert calibrated(rows, null, 1.0)[1] is rows[1] and rows[0]["llm"] == [-1.0, -2.0]  # input untouched


# ------------------------------------------------------------------------------ why this answer


def test_answer_support_cites_the_stating_passage_and_the_rule():
    from rulerag.rules.paths import answer_support

    rules = [parse_rule("citizen_of(X,Y) <- born_in(X,Y)"), parse_rule("citizen_of(X,Y) <- serves_in_army_of(X,Y)"),
             parse_rule("citizen_of(X,Y) <- lives_in(X,Z), located_in(Z,Y)")]
    passages = ["Alice Marlow honorary citizen of Dravport.", "Alice Marlow lives in Tarvik.",
                "Alice Marlow serves in army of Norland.", "Tarvik located in Norland."]
    s = answer_support("Norland", passages, rules)
    assert s.supported and s.documents == [3, 4]
    # born_in is stated nowhere: no path; serves_in_army_of ends in [3]; the two-hop rule cites [2] then [4]
    assert s.paths == ["[3] Alice Marlow serves in army of Norland. + rule serves_in_army_of -> citizen_of => Norland",
                       "[2] + [4] Tarvik located in Norland. + rule lives_in, located_in -> citizen_of => Norland"]
    for line in s.paths:
        assert all(1 <= int(n) <= len(passages) for n in re.findall(r"\[(\d+)\]", line))


def test_answer_support_marks_an_answer_no_passage_states():
    from rulerag.rules.paths import answer_support

    passages = ["Alice Marlow lives in Tarvik."]
    assert answer_support("Karsland", passages).to_dict() == {"supported": False, "documents": [], "paths": []}
    assert not answer_support("", passages).supported
    # a partial word is not support: "Tarvi" is not "Tarvik"
    assert not answer_support("Tarvi", passages).supported
    bare = answer_support("Tarvik", passages)
    assert bare.supported and bare.paths == ["[1] Alice Marlow lives in Tarvik. => Tarvik"]


def test_rule_guided_answerers_are_skipped_in_standard_mode(bench, tmp_path):
    fake = FakeScorer(prefer=lambda c: c[-1], answer="Country3")
    results = _runner(bench, tmp_path / "out", fake, modes=["standard", "rulerag"]).run()
    by_mode = {(r["mode"], r["answerer"]) for r in results["rows"]}
    assert ("standard", "reasoner") in by_mode and ("rulerag", "llm-score") in by_mode
    assert ("standard", "llm-score") not in by_mode and ("standard", "llm+paths") not in by_mode
    assert "LLM answerers vs the reasoner alone" in (tmp_path / "out" / "results.md").read_text()


def test_gate_scores_keeps_the_reasoner_unless_the_dev_split_gains_and_reads_only_cached_scores(tmp_path):
    """Margin gating: tau from the development rows, applied to the test rows; tau None is the reasoner."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gate_scores

    assert gate_scores.gated_pick([0.9, 0.5], [-9.0, -0.1], None) == 0
    assert gate_scores.gated_pick([0.9, 0.5], [-9.0, -0.1], 0.3) == 0  # 0.5 is not within 0.3 of 0.9
    assert gate_scores.gated_pick([0.9, 0.7], [-9.0, -0.1], 0.3) == 1
    cache, results, bench = tmp_path / "cache", tmp_path / "results", tmp_path / "bench"
    for d in (cache, results / "ruleqa-i-llm300" / "cache", bench):
        d.mkdir(parents=True)
    # development: the LLM is right on near-ties, so a margin helps there
    dev = [{"id": f"d{i}", "gold": ["b"], "popular": True, "candidates": ["a", "b"], "reasoner": [1.0, 0.95], "llm": [-5.0, -1.0]}
           for i in range(5)]
    (cache / "ruleqa-i-n1500-x-top5-k0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    # test: one near-tie the LLM gets right, one it gets wrong, one far from a tie
    test = [{"id": "q1", "candidates": ["a", "b"], "reasoner": [1.0, 0.98], "llm": [-5.0, -1.0]},
            {"id": "q2", "candidates": ["c", "d"], "reasoner": [1.0, 0.98], "llm": [-5.0, -1.0]},
            {"id": "q3", "candidates": ["e", "f"], "reasoner": [1.0, 0.1], "llm": [-5.0, -1.0]}]
    gold = {"q1": ["b"], "q2": ["c"], "q3": ["e"]}
    (results / "ruleqa-i-llm300" / "cache" / "answers-h-rulerag-x-llm-score-m-p3-top5-g0.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in test))
    (bench / "questions.jsonl").write_text("".join(json.dumps({"id": i, "golden_answers": g}) + "\n" for i, g in gold.items()))
    (results / "ruleqa-i-llm300" / "results.json").write_text(json.dumps({
        "config": {"bench": str(bench)}, "question_ids": ["q1", "q2", "q3"],
        "entity_em_flags": {"hybrid/rulerag/reasoner": [0, 1, 1], "hybrid/rulerag/llm-score": [1, 0, 1]}}))
    out = gate_scores.main(["--set", "ruleqa-i", "--cache", str(cache), "--results", str(results), "--out", str(tmp_path / "gate")])
    row = out["rows"][0]
    assert row["dev_reasoner"] == 0.0 and row["dev_gated"] == 100.0 and row["tau"] == 0.05  # the smallest tau that reaches 0.95
    assert row["test_reasoner"] == pytest.approx(200 / 3) and row["test_gated"] == pytest.approx(200 / 3)
    assert (row["test_test"]["b_only"], row["test_test"]["a_only"]) == (1, 1)
    assert "| ruleqa-i |" in (tmp_path / "gate.md").read_text()
