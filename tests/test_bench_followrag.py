"""FollowRAG benchmark: deterministic repairs, the three-setting resumable runner, its report, the
lenient item reader and `rulerag bench followrag`. Items come from tests/data/followrag_fixture.json
(written for these tests: a made-up kingdom, not FollowRAG data)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from rulerag.bench.followrag import SETTINGS, FollowRAGRun, parse_settings
from rulerag.bench.followrag_report import run_followrag
from rulerag.checking import check_instruction, default_followrag_dir, load_followrag
from rulerag.checking.followrag import read_followrag
from rulerag.checking.instructions import INSTRUCTIONS, canonical_id, follow_instructions
from rulerag.checking.repair import MODEL_ONLY, REPAIRS, repair_answer, repaired_by
from rulerag.cli import app
from rulerag.config import load_settings
from rulerag.errors import ConfigError, InputFormatError
from rulerag.generation import FixedBackend, standard_prompt
from rulerag.generation.usage import MeteredGenerator
from rulerag.refine import Constraint, verify_and_refine

FIXTURE = Path(__file__).parent / "data" / "followrag_fixture.json"
ENGLISH = "The capital of the kingdom is the old harbour city on the northern sea."

# canonical id -> (kwargs, an answer that fails it, an answer that follows it)
CASES: dict[str, tuple[dict, str, str]] = {
    "length_constraints:number_words": ({"relation": "less than", "num_words": 8},
                                        "Tarvik is the capital. It lies on the northern sea coast of Norland.", "Tarvik is the capital."),
    "length_constraints:number_sentences": ({"relation": "less than", "num_sentences": 2},
                                            "Tarvik is the capital. It is old. It is big.", "Tarvik is the capital."),
    "keywords:forbidden_words": ({"forbidden_words": ["capital"]}, "Tarvik is the capital of Norland.", "Tarvik rules Norland."),
    "punctuation:no_comma": ({}, "Tarvik, Norland.", "Tarvik in Norland."),
    "change_case:capital_word_frequency": ({"capital_relation": "at least", "capital_frequency": 2},
                                           "Tarvik is the capital.", "TARVIK IS the capital."),
    "combination:two_responses": ({}, "Tarvik is the capital. It is old.", "Tarvik.\n******\nIt is Tarvik."),
    "detectable_format:number_bullet_lists": ({"num_bullets": 2}, "Tarvik is the capital. It is old. It has a harbour.",
                                              "* Tarvik\n* Norland"),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 2}, "Tarvik is the capital. It is old.", "Tarvik.\n***\nNorland."),
    "detectable_format:multiple_sections": ({"section_spliter": "SECTION", "num_sections": 2},
                                            "Tarvik is the capital. It is old.", "SECTION 1\nTarvik.\nSECTION 2\nOld."),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2}, "Tarvik is the capital of Norland.",
                                                      "*Tarvik* is the *capital*."),
    "detectable_content:number_placeholders": ({"num_placeholders": 2}, "Write to [address].", "Write to [name] at [address]."),
    "detectable_format:title": ({}, "Tarvik is the capital.", "<<Capital>>\nTarvik."),
    "length_constraints:nth_paragraph_first_word": ({"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "also"},
                                                    "Tarvik is the capital. It is old.", "Tarvik is the capital.\n\nAlso it is old."),
    "detectable_content:postscript": ({"postscript_marker": "P.S."}, "Tarvik.", "Tarvik.\nP.S. Old city."),
    "startend:end_checker": ({"end_phrase": "Any other questions?"}, "Tarvik.", "Tarvik. Any other questions?"),
    "combination:repeat_prompt": ({"prompt_to_repeat": "Where was Alice born?"}, "Tarvik.", "Where was Alice born? Tarvik."),
    "change_case:english_lowercase": ({}, ENGLISH, ENGLISH.lower()),
    "change_case:english_capital": ({}, ENGLISH, ENGLISH.upper()),
    "startend:quotation": ({}, "Tarvik.", '"Tarvik."'),
    "detectable_format:json_format": ({}, "Tarvik.\nIt is old.", '{"answer": "Tarvik"}'),
}


# ------------------------------------------------------------------------------------ repairs


def test_every_repair_has_a_planted_case_and_every_id_is_code_or_model():
    assert set(CASES) == set(REPAIRS)
    assert set(REPAIRS) | set(MODEL_ONLY) == set(INSTRUCTIONS) and not set(REPAIRS) & set(MODEL_ONLY)


@pytest.mark.parametrize("cid", sorted(CASES))
def test_repair_turns_a_planted_failure_into_a_pass(cid):
    kwargs, failing, _ = CASES[cid]
    assert not check_instruction(cid, failing, kwargs)
    result = repair_answer(failing, [cid], [kwargs])
    assert check_instruction(cid, result.answer, kwargs), result.answer
    assert result.applied == [cid] and result.followed == [True]


@pytest.mark.parametrize("cid", sorted(CASES))
def test_repair_leaves_a_passing_answer_unchanged(cid):
    kwargs, _, passing = CASES[cid]
    assert check_instruction(cid, passing, kwargs)
    result = repair_answer(passing, [cid], [kwargs])
    assert result.answer == passing and result.applied == [] and result.rejected == []


def test_repairs_accept_followrag_ids_and_keep_no_repair_that_breaks_a_passing_instruction():
    answer = "SECTION 1\nThe capital is Tarvik.\nSECTION 2\nIt is old."
    ids, kwargs = ["cases_lowercase", "structure_sections"], [{}, {"section_spliter": "SECTION", "num_sections": 2}]
    result = repair_answer(answer, ids, kwargs)  # lower-casing would break the passing SECTION headers
    assert result.answer == answer and result.rejected == ["change_case:english_lowercase"] and result.followed == [False, True]


def test_json_repair_falls_back_to_a_json_string_that_keeps_the_end_phrase():
    ids, kwargs = ["format_json", "position_end_with"], [{}, {"end_phrase": "Any other questions?"}]
    result = repair_answer("Tarvik. Any other questions?", ids, kwargs)
    assert json.loads(result.answer) == "Tarvik. Any other questions?" and result.followed == [True, True]


def test_repairs_compose_in_order_structural_last():
    ids = ["format_quotation", "position_postscript", "cases_lowercase", "format_no_commas"]
    kwargs = [{}, {"postscript_marker": "P.S."}, {}, {}]
    result = repair_answer(ENGLISH.replace(" is", ", is"), ids, kwargs)
    assert all(follow_instructions(result.answer, ids, kwargs)), result.answer
    assert result.applied[-1] == "startend:quotation" and result.answer.startswith('"the capital')


def test_empty_answers_and_model_families_are_not_repaired():
    assert repair_answer("  ", ["format_quotation"], [{}]).answer == "  "
    result = repair_answer("Tarvik.", ["keywords_inclusion"], [{"keywords": ["harbour"]}])
    assert result.answer == "Tarvik." and result.applied == []
    assert repaired_by("keywords_inclusion") == "model" and repaired_by("structure_title") == "code"
    assert repaired_by("length_words", {"relation": "less than", "num_words": 9}) == "code"


def test_refine_with_repairs_asks_the_model_only_for_what_code_cannot_fix():
    gen = FixedBackend("Tarvik, by the harbour.")
    constraints = [Constraint("format_no_commas"), Constraint("keywords_inclusion", {"keywords": ["Norland"]})]
    result = verify_and_refine(gen, standard_prompt("Where?", ["Tarvik is in Norland."]), constraints, rounds=1,
                               first_answer="Tarvik, the capital.", repair=True, max_new_tokens=16)
    failed = gen.prompts[0].user.split("<failed>")[1]
    assert "keywords:existence" in failed and "no_comma" not in failed
    assert result.rounds[0]["repairs"] == ["punctuation:no_comma"] and result.rounds[0]["generated"] == "Tarvik, the capital."
    assert result.first_answer == "Tarvik, the capital." and len(result.rounds) == 2


def test_forbidden_word_repair_keeps_answer_content_the_question_does_not_use():
    ids, kwargs = ["keywords:forbidden_words"], [{"forbidden_words": ["fungi", "mycology"]}]
    question = "Mycology is the study of what?"
    kept = repair_answer("Mycology is the study of fungi.", ids, kwargs, question=question)
    assert kept.answer == "Mycology is the study of fungi." and kept.applied == [] and kept.followed == [False]
    cut = repair_answer("Mycology is the study of moulds.", ids, kwargs, question=question)
    assert cut.answer == "is the study of moulds." and cut.applied == ["keywords:forbidden_words"]
    # without the question every forbidden word is deleted, as before
    assert repair_answer("Mycology is the study of fungi.", ids, kwargs).answer == "is the study of."


def test_refine_never_keeps_a_reask_that_echoes_the_prompt():
    echo = "<failed> - change_case:english_lowercase (all lower-case) </failed>"
    constraints = [Constraint("cases_lowercase"), Constraint("keywords:forbidden_words", {"forbidden_words": ["timberlake"]})]
    result = verify_and_refine(FixedBackend(echo), standard_prompt("who played?", ["Justin Timberlake played."]),
                               constraints, rounds=2, first_answer="Justin Timberlake", repair=True, max_new_tokens=16,
                               question="who played?")
    # the echo follows both instructions, the real answer neither; the real answer is kept
    assert [r.get("echo", False) for r in result.rounds] == [False, True, True]
    assert result.answer == "Justin Timberlake" and result.rounds[0]["kept"]


def test_metered_generator_reads_backend_usage():
    class Counted(FixedBackend):
        def generate(self, prompt, *, max_new_tokens, temperature=0.0):
            self.last_usage = {"prompt_tokens": 40, "completion_tokens": 3, "seconds": 0.1}
            return super().generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature)

    gen = MeteredGenerator(Counted("Tarvik"))
    for _ in range(2):
        gen.generate(standard_prompt("Where?", ["d"]), max_new_tokens=4)
    usage = gen.take()
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (2, 80, 6, False)
    assert gen.take().calls == 0


# ------------------------------------------------------------------------------------ reader


def test_read_followrag_skips_malformed_items_with_index_field_and_fix(tmp_path):
    good = json.loads(FIXTURE.read_text())[0]
    rows = [good, {**good, "key": "b", "instruction_id_list": ["format_nope"]}, {**good, "key": "c"},
            {**good, "key": "d", "kwargs": [{}, {"bogus": 1}]}, {**good}, "not an object", {**good, "key": "e", "answer_gold": " / "}]
    path = tmp_path / "items.json"
    path.write_text(json.dumps(rows))
    items, skipped = read_followrag(path)
    assert [i.key for i in items] == ["n0", "c"]
    assert [(s.index, s.field) for s in skipped] == [(1, "instruction_id_list"), (3, "kwargs[1]"), (4, "key"),
                                                     (5, "(item)"), (6, "answer_gold")]
    assert "unknown kwarg(s) 'bogus'" in skipped[1].problem and skipped[1].fix
    assert "format_nope" in str(skipped[0]) and "Fix:" in str(skipped[0])
    with pytest.raises(InputFormatError, match="item 1 .key 'b'.: unknown instruction id 'format_nope'"):
        load_followrag(path)  # the strict loader stops at the first malformed item


# ------------------------------------------------------------------------------------ runner


class CountingGenerator(FixedBackend):
    """A fixed answer per question; re-asks add 'harbour'. Raises KeyboardInterrupt on call ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__("")
        self.calls = 0
        self.fail_at = fail_at

    def generate(self, prompt, *, max_new_tokens, temperature=0.0):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        self.prompts.append(prompt)
        if prompt.template.endswith("+refine"):
            return "* The Vessel River flows to the harbour.\n* It meets the sea."
        question = prompt.user.rsplit("Question:", 1)[1]
        return f"Tarvik, Norland. {question.split('?')[0].strip()} in the kingdom, as document 1 says."


def _settings():
    return load_settings(overrides={"generation": {"backend": "fixed"}})


def _scores(results):
    return {"settings": {n: {k: v for k, v in s.items() if k != "cost"} for n, s in results["settings"].items()},
            "paired": results["paired"], "per_family": results["per_family"], "skipped": results["skipped"]}


def test_runner_interrupted_resumes_without_regenerating_and_gives_the_same_table(tmp_path):
    whole = CountingGenerator()
    full = run_followrag(FIXTURE, tmp_path / "a", settings=_settings(), generator=whole, progress=False)
    # 6 valid items: plain + constraint once each, refine re-asks only where code could not fix everything
    reasks = round(full["settings"]["refine"]["cost"]["model_calls_per_item"] * 6)
    assert whole.calls == 12 + reasks and reasks >= 1
    interrupted = CountingGenerator(fail_at=8)
    with pytest.raises(KeyboardInterrupt):
        run_followrag(FIXTURE, tmp_path / "b", settings=_settings(), generator=interrupted, progress=False)
    resumed = CountingGenerator()
    again = run_followrag(FIXTURE, tmp_path / "b", settings=_settings(), generator=resumed, progress=False)
    assert (interrupted.calls - 1) + resumed.calls == whole.calls  # nothing generated twice
    assert _scores(again) == _scores(full)
    rerun = CountingGenerator()
    run_followrag(FIXTURE, tmp_path / "b", settings=_settings(), generator=rerun, progress=False)
    assert rerun.calls == 0
    lines = [json.loads(x) for f in sorted((tmp_path / "b" / "answers").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert len(lines) == 18 and len({(x["setting"], x["id"]) for x in lines}) == 18


def test_refine_reuses_the_constraint_answer_and_reports_repairs_cost_and_skips(tmp_path):
    gen = CountingGenerator()
    res = run_followrag(FIXTURE, tmp_path, settings=_settings(), setups="refine", generator=gen, progress=False)
    assert list(res["settings"]) == ["constraint", "refine"]
    first_prompts = [p for p in gen.prompts if p.template == "standard"]
    assert len(first_prompts) == 6 and all("<instructions>" in p.user for p in first_prompts)
    refine = res["settings"]["refine"]
    assert refine["repairs"]["items_repaired"] >= 4 and "punctuation:no_comma" in refine["repairs"]["kept_by_instruction"]
    assert refine["if"]["prompt_level_strict_acc"] > res["settings"]["constraint"]["if"]["prompt_level_strict_acc"]
    pair = res["paired"]["refine vs constraint"]["follow_all_strict"]
    assert pair["items"] == 5 and pair["fixed"] >= 4 and pair["broken"] == 0 and 0 < pair["p_value"] <= 1
    assert res["settings"]["refine"]["cost"]["tokens_estimated"] is True
    assert res["skipped_count"] == 1 and res["skipped"][0]["index"] == 3 and res["skipped"][0]["field"] == "kwargs"
    md = (tmp_path / "results.md").read_text()
    assert "item 3 (key 'n3'): kwargs:" in md and "| structure_bullets |" in md and "answer accuracy" in md
    rows = {r["instruction"]: r for r in res["per_family"]}
    assert rows["format_quotation"]["strict"]["refine"] == 1.0 and rows["keywords_inclusion"]["repaired_by"] == "model"
    saved = orjson.loads((tmp_path / "results.json").read_bytes())
    assert saved["skipped"][0]["index"] == 3 and saved["config"]["settings"] == ["constraint", "refine"]


def test_report_only_generates_nothing(tmp_path):
    run_followrag(FIXTURE, tmp_path, settings=_settings(), setups="plain", generator=CountingGenerator(), progress=False, limit=2)
    idle = CountingGenerator()
    res = run_followrag(FIXTURE, tmp_path, settings=_settings(), setups="plain", generator=idle, progress=False, generate=False)
    assert idle.calls == 0 and res["items"] == 6 and res["settings"]["plain"]["answered"] == 2


def test_answer_files_are_named_by_set_setting_engine_prompt_and_tokens():
    run = FollowRAGRun(FIXTURE, Path("o"), max_new_tokens=64, refine_rounds=1)
    assert run.answers_path("plain").name.startswith("followrag-fixture.plain.llamacpp-")
    assert run.answers_path("refine").name.endswith(".t64.r1.jsonl")
    assert parse_settings(" refine,plain ") == ("plain", "refine") and SETTINGS == ("plain", "constraint", "refine")
    with pytest.raises(ConfigError, match="Fix: use a comma-separated subset"):
        parse_settings("plain,fancy")


def test_followrag_cli(tmp_path):
    res = CliRunner().invoke(app, ["bench", "followrag", "--data", str(FIXTURE), "--out", str(tmp_path / "o"), "--backend", "fixed",
                                   "--settings", "plain,constraint", "--limit", "2", "-q"])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["items"] == 2 and saved["config"]["settings"] == ["plain", "constraint"] and len(saved["settings"]) == 2
    assert "## Pass rate per instruction type" in res.output
    again = CliRunner().invoke(app, ["bench", "followrag", "--data", str(FIXTURE), "--out", str(tmp_path / "o"), "--backend", "fixed",
                                     "--settings", "plain,constraint", "--limit", "2", "--report", "-q"])
    assert again.exit_code == 0 and json.loads((tmp_path / "o" / "results.json").read_text())["settings"] == saved["settings"]


# --------------------------------------------------------------------------- shared data


def _shared_items(limit):
    folder = default_followrag_dir()
    path = folder / "followRAG_ifnq.json" if folder else None
    if path is None or not path.is_file():
        pytest.skip("shared FollowRAG data not found (followRAG_ifnq.json; set RULERAG_DATA to the folder holding followrag/)")
    return read_followrag(path, limit)


def test_repairs_never_break_a_passing_instruction_on_shared_items():
    items, skipped = _shared_items(150)
    assert not skipped
    answer = "Gravity is the force that attracts masses, as Newton described. It keeps the planets in orbit.\n\nIt is weakest at the equator."
    for item in items:
        ids, kwargs = list(item.instruction_id_list), [dict(k) for k in item.kwargs]
        before = follow_instructions(answer, ids, kwargs)
        result = repair_answer(answer, ids, kwargs)
        after = follow_instructions(result.answer, ids, kwargs)
        assert after == result.followed
        assert all(a for a, b in zip(after, before) if b), (item.key, result.applied)
        assert sum(after) >= sum(before) and all(canonical_id(i) in REPAIRS for i in result.applied)


def test_without_matplotlib_the_plot_is_skipped_and_said(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib now raises ImportError
    (tmp_path / "per_family.png").write_bytes(b"an older chart")
    res = CliRunner().invoke(app, ["bench", "followrag", "--data", str(FIXTURE), "--out", str(tmp_path), "--backend", "fixed",
                                   "--settings", "plain", "--limit", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "per_family.png").exists() and "per_family.png" not in res.output
    assert "plots skipped: matplotlib is not installed" in res.output and "rulerag[bench]" in res.output
