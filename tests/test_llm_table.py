"""benchmarks/llm_table.py: one table from several runs, paired by question."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import llm_table  # noqa: E402


def _run(folder: Path, ids: list[str], flags: dict[str, list[int]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"question_ids": ids, "entity_em_flags": flags}))
    return folder


def test_rows_from_two_runs_are_paired_question_by_question(tmp_path):
    ids = [f"q{i}" for i in range(6)]
    a = _run(tmp_path / "std", ids, {"hybrid/standard/llm": [0, 0, 0, 1, 0, 0]})
    b = _run(tmp_path / "rg", ids, {"hybrid/rulerag/reasoner": [1, 1, 0, 0, 1, 0], "hybrid/rulerag/llm+paths": [1, 1, 1, 0, 1, 1]})
    llm_table.main([str(a), str(b), "--out", str(tmp_path / "table")])
    table = json.loads((tmp_path / "table.json").read_text())
    rows = {r["setting"]: r for r in table["rows"]}
    paths = rows["hybrid/rulerag/llm+paths"]
    assert paths["entity_em"] == pytest.approx(500 / 6)
    assert (paths["vs_reasoner"]["a_only"], paths["vs_reasoner"]["b_only"]) == (0, 2)
    assert (paths["vs_standard_rag"]["a_only"], paths["vs_standard_rag"]["b_only"]) == (1, 5)
    assert "vs_standard_rag" not in rows["hybrid/standard/llm"]  # not compared with itself
    md = (tmp_path / "table.md").read_text()
    assert "standard RAG" in md and "LLM + grounded rule paths (rulerag)" in md


def test_runs_on_other_questions_are_refused(tmp_path):
    a = _run(tmp_path / "a", ["q1", "q2"], {"hybrid/standard/llm": [0, 1]})
    b = _run(tmp_path / "b", ["q1", "q3"], {"hybrid/rulerag/reasoner": [1, 1]})
    with pytest.raises(SystemExit, match="other questions"):
        llm_table.main([str(a), str(b), "--out", str(tmp_path / "t")])
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="no per-question flags"):
        llm_table.main([str(old), "--out", str(tmp_path / "t")])


def _table(tmp_path: Path, name: str, flags: dict[str, list[int]]) -> Path:
    ids = [f"q{i}" for i in range(len(next(iter(flags.values()))))]
    run = _run(tmp_path / f"{name}-run", ids, flags)
    out = tmp_path / f"{name}-llm300-table"
    llm_table.main([str(run), "--out", str(out)])
    return out.with_suffix(".json")


def test_summary_checks_the_targets_per_set(tmp_path):
    n = 40
    # set a: scoring wins 12 questions, loses none against the reasoner (p < 0.05); paths beat standard RAG
    a = _table(tmp_path, "ruleqa-a", {"hybrid/standard/llm": [0] * n, "hybrid/rulerag/llm+paths": [1] * 5 + [0] * 35,
                                      "hybrid/rulerag/reasoner": [1] * 10 + [0] * 30,
                                      "hybrid/rulerag/llm-score": [1] * 22 + [0] * 18})
    # set b: scoring only ties the reasoner; rules in the prompt lose to standard RAG
    b = _table(tmp_path, "ruleqa-b", {"hybrid/standard/llm": [1] * 6 + [0] * 34, "hybrid/rulerag/llm": [1] * 2 + [0] * 38,
                                      "hybrid/rulerag/reasoner": [1] * 10 + [0] * 30,
                                      "hybrid/rulerag/llm-score": [0] + [1] * 10 + [0] * 29})
    llm_table.main(["--summary", str(a), str(b), "--out", str(tmp_path / "summary")])
    summary = json.loads((tmp_path / "summary.json").read_text())
    ta, tb = summary["sets"]["ruleqa-a"]["targets"], summary["sets"]["ruleqa-b"]["targets"]
    assert ta["best_llm_beats_reasoner"] and ta["rule_prompt_matches_standard"]
    assert tb["best_llm_matches_reasoner"] and not tb["best_llm_beats_reasoner"]  # 10 = 10: matches, 1 / 1 won/lost
    assert not tb["rule_prompt_matches_standard"]
    assert summary["beats_reasoner_on"] == ["ruleqa-a"]
    md = (tmp_path / "summary.md").read_text()
    assert "| RuleQA-A | RuleQA-B |" in md and "on 1 of 2 sets (ruleqa-a)" in md
    assert "55.0 (12 / 0, p = 0.00049)" in md  # won / lost against the reasoner


def test_summary_refuses_a_folder(tmp_path):
    with pytest.raises(SystemExit, match="not a table file"):
        llm_table.main(["--summary", str(tmp_path), "--out", str(tmp_path / "s")])
