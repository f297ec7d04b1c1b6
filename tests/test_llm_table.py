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
