"""`rulerag check` end to end."""

from __future__ import annotations

import json

import orjson
from typer.testing import CliRunner

from rulerag.cli import app


def test_check_cli_scores_and_writes_reports(tmp_path):
    answers = tmp_path / "a.jsonl"
    answers.write_text(
        json.dumps({"response": "norland is the answer", "instruction_id_list": ["change_case:english_lowercase", "format_no_commas"],
                    "kwargs": [{}, {}], "documents": ["Alice serves in army of Norland."], "golden_answers": ["Norland"]}) + "\n"
        + json.dumps({"response": "NORLAND, SURELY", "instruction_id_list": ["cases_uppercase", "format_no_commas"],
                      "kwargs": [{}, {}], "golden_answers": ["Norland"]}) + "\n"
    )
    out = tmp_path / "r.jsonl"
    res = CliRunner().invoke(app, ["check", "--answers", str(answers), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["items"] == 2
    assert summary["prompt_level_strict_acc"] == 0.5 and summary["instruction_level_strict_acc"] == 0.75
    reports = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [r["strict"]["follow_all_instructions"] for r in reports] == [True, False]


def test_check_cli_names_the_bad_line(tmp_path):
    answers = tmp_path / "a.jsonl"
    answers.write_text('{"response": "x", "instruction_id_list": [], "kwargs": []}\n{"response": 3}\n')
    res = CliRunner().invoke(app, ["check", "--answers", str(answers)])
    assert res.exit_code != 0 and "a.jsonl:2" in str(res.exception)
