"""`rulerag bench followrag` end to end with the fixed backend on items written by the test."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rulerag.bench.followrag import run_followrag
from rulerag.cli import app
from rulerag.config import load_settings


def _items(path):
    items = [
        {"key": 1, "question": "Where was Alice Marlow born?", "question_with_instrs": "Where was Alice Marlow born? Do not use any commas.",
         "instruction_id_list": ["format_no_commas"], "kwargs": [{}], "answer_gold": "Tarvik",
         "passages": [{"title": "Alice", "content": "Alice Marlow was born in Tarvik, Norland."}]},
        {"key": 2, "question": "Who is Alice married to?", "question_with_instrs": "Who is Alice married to? Answer in all lowercase letters.",
         "instruction_id_list": ["cases_lowercase"], "kwargs": [{}], "answer_gold": "Jonas Brandt/Jonas",
         "passages": [{"title": "Alice", "content": "Alice Marlow is married to Jonas Brandt."}]},
    ]
    path.write_text(json.dumps(items))
    return path


def test_followrag_run_scores_and_resumes(tmp_path):
    data = _items(tmp_path / "fr.json")
    settings = load_settings(overrides={"generation": {"backend": "fixed", "fixed_answer": "the answer is tarvik and nothing else"}})
    res = run_followrag(data, tmp_path / "out", settings=settings, refine_rounds=1, progress=False)
    assert res["items"] == 2
    w = res["without_refinement"]
    assert w["instruction_level_strict_acc"] == 1.0  # no commas, all lowercase English
    assert w["em"] == 0.0 and 0.0 < w["recall"] <= 1.0
    assert res["with_refinement"]["followrag_if_score"] == 1.0 and res["mean_rounds"] == 1.0
    assert (tmp_path / "out" / "results.md").read_text().startswith("# FollowRAG: fr.json, 2 items")
    cache = next((tmp_path / "out" / "cache").glob("answers-*.jsonl"))
    assert len(cache.read_text().splitlines()) == 2
    again = run_followrag(data, tmp_path / "out", settings=settings, refine_rounds=1, progress=False)
    assert again["with_refinement"] == res["with_refinement"] and len(cache.read_text().splitlines()) == 2


def test_followrag_cli(tmp_path):
    data = _items(tmp_path / "fr.json")
    res = CliRunner().invoke(app, ["bench", "followrag", "--data", str(data), "--out", str(tmp_path / "o"), "--backend", "fixed",
                                   "--limit", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o" / "results.json").read_text())["items"] == 1
