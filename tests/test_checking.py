"""Checker: instruction verifiers (strict/loose, aliases, kwargs, contradictions), faithfulness,
correctness, reports, FollowRAG loading. Every example is written here; the shared FollowRAG data
(CC BY-NC) is only read, by the tests that skip when it is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from rulerag.checking import (
    FOLLOWRAG_ALIASES,
    FOLLOWRAG_FILES,
    INSTRUCTIONS,
    InstructionError,
    JudgeVerdict,
    Judge,
    NoJudge,
    canonical_id,
    check,
    check_file,
    check_instruction,
    correctness,
    default_followrag_dir,
    detect_language,
    faithfulness,
    follow_instructions,
    followrag_prompt_parts,
    followrag_record,
    grounding,
    k_f1,
    k_precision,
    k_precision_pp,
    k_recall,
    load_followrag,
    loose_variants,
    summarise,
    unsatisfiable_reasons,
    validate_kwargs,
)
from rulerag.errors import InputFormatError, RuleRAGError



def _has_langdetect() -> bool:
    try:
        import langdetect  # noqa: F401
    except ImportError:
        return False
    return True


needs_langdetect = pytest.mark.skipif(not _has_langdetect(), reason="langdetect not installed (pip install langdetect)")

# --------------------------------------------------------------------------------- aliases

EXPECTED_ALIASES = {
    "cases_capital_words": "change_case:capital_word_frequency",
    "cases_uppercase": "change_case:english_capital",
    "cases_lowercase": "change_case:english_lowercase",
    "format_repeat_question": "combination:repeat_prompt",
    "structure_placeholder": "detectable_content:number_placeholders",
    "position_postscript": "detectable_content:postscript",
    "format_json": "detectable_format:json_format",
    "structure_sections": "detectable_format:multiple_sections",
    "structure_bullets": "detectable_format:number_bullet_lists",
    "structure_highlights": "detectable_format:number_highlighted_sections",
    "structure_title": "detectable_format:title",
    "keywords_inclusion": "keywords:existence",
    "keywords_exclusion": "keywords:forbidden_words",
    "keywords_frequency": "keywords:frequency",
    "format_language": "language:response_language",
    "position_first_word": "length_constraints:nth_paragraph_first_word",
    "length_paragraph": "length_constraints:number_paragraphs",
    "length_sentence": "length_constraints:number_sentences",
    "length_words": "length_constraints:number_words",
    "format_no_commas": "punctuation:no_comma",
    "position_end_with": "startend:end_checker",
    "format_quotation": "startend:quotation",
}


def test_all_25_ifeval_ids_and_22_followrag_aliases() -> None:
    assert len(INSTRUCTIONS) == 25
    assert FOLLOWRAG_ALIASES == EXPECTED_ALIASES
    for followrag_id, ifeval_id in EXPECTED_ALIASES.items():
        assert canonical_id(followrag_id) == ifeval_id
        assert canonical_id(ifeval_id) == ifeval_id
    unaliased = set(INSTRUCTIONS) - set(EXPECTED_ALIASES.values())
    assert unaliased == {"keywords:letter_frequency", "detectable_format:constrained_response", "combination:two_responses"}


def test_unknown_id_suggests_close_names() -> None:
    with pytest.raises(InstructionError, match="format_no_commas"):
        canonical_id("format_no_comma")
    assert isinstance(InstructionError("x"), RuleRAGError)


_DATA = default_followrag_dir()


def _shared(name: str) -> Path:
    if _DATA is None or not (_DATA / name).is_file():
        pytest.skip(f"shared FollowRAG data not found ({name}; set RULERAG_DATA to the folder holding followrag/)")
    return _DATA / name


def test_every_id_in_the_shared_followrag_files_resolves() -> None:
    seen: set[str] = set()
    for name in FOLLOWRAG_FILES:
        for item in orjson.loads(_shared(name).read_bytes()):
            seen.update(item["instruction_id_list"])
    atoms = orjson.loads(_shared("atom_instruction.json").read_bytes())
    seen.update(atoms)
    assert seen and {canonical_id(i) for i in seen} <= set(INSTRUCTIONS)
    assert set(atoms) == set(EXPECTED_ALIASES)


# ------------------------------------------------------------------------------- verifiers

LT, AL = "less than", "at least"
CASES = [
    ("keywords_inclusion", {"keywords": ["gravity", "Newton"]}, "Newton studied GRAVITY.", "Newton studied mass."),
    ("keywords_frequency", {"keyword": "moon", "frequency": 2, "relation": AL}, "A moon and a Moon.", "One moon."),
    ("keywords_frequency", {"keyword": "moon", "frequency": 2, "relation": LT}, "One moon.", "moon moon"),
    ("keywords_exclusion", {"forbidden_words": ["cat"]}, "Category theory.", "A Cat sat."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": AL}, "Zebra zone", "zebra"),
    ("length_sentence", {"num_sentences": 3, "relation": LT}, "One. Two.", "One. Two. Three."),
    ("length_sentence", {"num_sentences": 3, "relation": AL}, "Dr. Who came. He saw. He left!", "Dr. Who came. He left."),
    ("length_paragraph", {"num_paragraphs": 2}, "First part.\n***\nSecond part.", "Only one part."),
    ("length_words", {"num_words": 5, "relation": LT}, "one two three four", "one two three four five"),
    ("length_words", {"num_words": 5, "relation": AL}, "one two three four five", "one two three four"),
    ("position_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "gravity"},
     "Intro.\n\nGravity pulls.", "Intro.\n\nMass pulls."),
    ("structure_placeholder", {"num_placeholders": 2}, "[name] lives at [address].", "[name] lives here."),
    ("position_postscript", {"postscript_marker": "P.S."}, "Answer.\nP.S. More.", "Answer. PS more."),
    ("position_postscript", {"postscript_marker": "NB"}, "Answer.\nNB: more.", "It is unbelievable."),
    ("structure_bullets", {"num_bullets": 2}, "* a\n- b\n***", "* a\n* b\n* c"),
    ("detectable_format:constrained_response", {}, "My answer is no.", "No."),
    ("structure_highlights", {"num_highlights": 2}, "*a* and **b**", "*a* and ** **"),
    ("structure_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\na\nSECTION 2\nb", "SECTION 1\na\nsection 2\nb"),
    ("format_json", {}, '{"answer": "gravity"}', "answer: gravity"),
    ("structure_title", {}, "<<Gravity>>\nText.", "<< >> Text."),
    ("combination:two_responses", {}, "a\n******\nb", "a\n******\na"),
    ("format_repeat_question", {"prompt_to_repeat": "What is gravity?"},
     "what is gravity? It is a force.", "Gravity is a force. What is gravity?"),
    ("position_end_with", {"end_phrase": "Any other questions?"},
     "Gravity. Any other questions?", "Any other questions? Gravity."),
    ("cases_capital_words", {"capital_frequency": 2, "capital_relation": AL}, "NASA and ESA", "NASA and Esa"),
    ("format_no_commas", {}, "Gravity is a force.", "Gravity, a force."),
    ("format_quotation", {}, '  "Gravity."\n', "Gravity."),
    pytest.param("format_language", {"language": "it"},
                 "Questa risposta è scritta interamente in italiano, senza usare altre lingue.",
                 "This answer is written entirely in English without any other language.", marks=needs_langdetect),
    pytest.param("cases_uppercase", {}, "THE COMMON NAME FOR THIS FORCE IS GRAVITY.",
                 "The common name for this force is gravity.", marks=needs_langdetect),
    pytest.param("cases_lowercase", {}, "the common name for this force is gravity.",
                 "The common name for this force is gravity.", marks=needs_langdetect),
]


@pytest.mark.parametrize(("iid", "kwargs", "good", "bad"), CASES)
def test_verifier_passes_compliant_and_fails_non_compliant(iid, kwargs, good, bad) -> None:
    assert check_instruction(iid, good, kwargs) is True
    assert check_instruction(iid, bad, kwargs) is False
    assert check_instruction(canonical_id(iid), good, kwargs) is True  # same under the IFEval id


def test_every_instruction_type_has_a_case() -> None:
    ids = {canonical_id(c.values[0] if hasattr(c, "values") else c[0]) for c in CASES}
    assert ids == set(INSTRUCTIONS)


def test_empty_response_follows_nothing() -> None:
    assert check_instruction("format_no_commas", "  \n ") is False
    assert follow_instructions("", ["keywords_exclusion"], [{"forbidden_words": ["x"]}], loose=True) == [False]


def test_no_comma_counts_commas_inside_quotes_and_other_scripts() -> None:
    assert not check_instruction("punctuation:no_comma", 'He said "yes, sir" loudly.')
    assert not check_instruction("punctuation:no_comma", "نعم، هذا صحيح")
    assert check_instruction("punctuation:no_comma", 'He said "yes sir" loudly.')


def test_number_words_boundary_at_n() -> None:
    five = "one two three four five"
    assert not check_instruction("length_words", five, {"num_words": 5, "relation": LT})
    assert check_instruction("length_words", five, {"num_words": 5, "relation": AL})
    assert check_instruction("length_words", five, {"num_words": 6, "relation": LT})
    assert not check_instruction("length_words", five, {"num_words": 6, "relation": AL})


def test_json_inside_fences_is_json() -> None:
    assert check_instruction("format_json", '```json\n{"a": [1, 2]}\n```')
    assert check_instruction("format_json", '```JSON\n{"a": 1}\n```')
    assert check_instruction("format_json", '```\n["x"]\n```')
    assert not check_instruction("format_json", '```json\n{"a": 1,}\n```')
    assert not check_instruction("format_json", 'Here it is: {"a": 1}')


def test_end_checker_ignores_trailing_whitespace_quotes_and_case() -> None:
    kw = {"end_phrase": "Peace!"}
    assert check_instruction("position_end_with", "Bye. peace!  \n\n\t", kw)
    assert check_instruction("position_end_with", '"Bye. Peace!"', kw)
    assert check_instruction("position_end_with", "Bye.", {"end_phrase": "  Bye. "})
    assert not check_instruction("position_end_with", "Peace! Bye.", kw)


@pytest.mark.parametrize(
    ("kwargs", "text", "expected"),
    [
        ({"keywords": ["C++"]}, "I write C++ daily.", True),
        ({"keywords": ["C++"]}, "I write C daily.", False),
        ({"keywords": ["a.b"]}, "see axb", False),
        ({"keywords": ["a.b"]}, "see A.B", True),
        ({"keywords": ["(x"]}, "an unbalanced (x here", True),
    ],
)
def test_keywords_are_literal(kwargs, text, expected) -> None:
    assert check_instruction("keywords:existence", text, kwargs) is expected


def test_forbidden_and_frequency_keywords_are_literal() -> None:
    assert not check_instruction("keywords_exclusion", "C++ rocks.", {"forbidden_words": ["C++"]})
    assert check_instruction("keywords_exclusion", "C rocks.", {"forbidden_words": ["C++"]})
    assert check_instruction("keywords_exclusion", "axb", {"forbidden_words": ["a.b"]})
    kw = {"keyword": "a.b", "frequency": 2, "relation": AL}
    assert not check_instruction("keywords_frequency", "a.b axb", kw)
    assert check_instruction("keywords_frequency", "a.b A.B", kw)


def test_paragraph_dividers_and_bullets() -> None:
    assert check_instruction("length_paragraph", "a\n* * *\nb\n***\nc", {"num_paragraphs": 3})
    assert not check_instruction("length_paragraph", "a\n***\n***\nc", {"num_paragraphs": 3})  # empty inner paragraph
    assert check_instruction("structure_bullets", "* a\n  * b\n---\n* * *\n**bold** line", {"num_bullets": 2})


def test_nth_paragraph_needs_the_exact_paragraph_count() -> None:
    kw = {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "Gravity"}
    assert check_instruction("position_first_word", '"Gravity," she said.\n\n  \n\nEnd.', kw)
    assert not check_instruction("position_first_word", "Gravity.\n\nMiddle.\n\nEnd.", kw)


@needs_langdetect
def test_language_detection_is_deterministic_across_runs() -> None:
    texts = ["ciao", "the sun", "Das ist gut", "ok", "gravity"]
    here = [detect_language(t) for t in texts]
    detect_language.cache_clear()
    assert [detect_language(t) for t in texts] == here
    code = (
        "import json; from rulerag.checking import detect_language; "
        f"print(json.dumps([detect_language(t) for t in {texts!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == here
    assert detect_language("1234 !!") is None
    assert check_instruction("format_language", "1234 !!", {"language": "fi"})  # undetectable passes (IFEval)


# ------------------------------------------------------------------------------ loose / strict


def test_loose_variants_are_ifevals_eight() -> None:
    variants = loose_variants("Sure:\n*a*\nBye")
    assert variants == ["Sure:\n*a*\nBye", "*a*\nBye", "Sure:\n*a*", "*a*", "Sure:\na\nBye", "a\nBye", "Sure:\na", "a"]


@needs_langdetect
def test_loose_forgives_a_leading_line_before_a_lowercase_answer() -> None:
    response = "Sure, here it is:\nthe common name for this force is gravity, as everyone knows."
    assert follow_instructions(response, ["cases_lowercase"]) == [False]
    assert follow_instructions(response, ["cases_lowercase"], loose=True) == [True]
    report = check(response, ["cases_lowercase", "format_no_commas"], [{}, {}])
    assert report.strict.follow_instruction_list == [False, False]
    assert report.loose.follow_instruction_list == [True, False]
    assert not report.loose.follow_all_instructions


def test_loose_differs_from_strict_only_where_it_should() -> None:
    r = check("Sure, here it is:\ngravity", ["format_no_commas"], [{}])
    assert (r.strict.follow_all_instructions, r.loose.follow_all_instructions) == (False, True)
    r = check("Gravity, mass", ["format_no_commas"], [{}])
    assert (r.strict.follow_all_instructions, r.loose.follow_all_instructions) == (False, False)
    kw = [{"num_paragraphs": 1, "nth_paragraph": 1, "first_word": "gravity"}]
    r = check("**Gravity** pulls.", ["position_first_word"], kw)  # '*' removed in a loose variant
    assert (r.strict.follow_all_instructions, r.loose.follow_all_instructions) == (False, True)
    r = check("Gravity. Any questions?\nHope this helps", ["position_end_with"], [{"end_phrase": "Any questions?"}])
    assert (r.strict.follow_all_instructions, r.loose.follow_all_instructions) == (False, True)


# ------------------------------------------------------------------------------------ kwargs


@pytest.mark.parametrize(
    ("iid", "kwargs", "needle"),
    [
        ("keywords_frequency", {"keyword": "x", "freq": 2, "relation": AL}, "unknown kwarg(s) 'freq'"),
        ("keywords_frequency", {"keyword": "x"}, "missing required kwarg(s) 'frequency', 'relation'"),
        ("keywords_frequency", {"keyword": "x", "frequency": "2", "relation": AL}, "'frequency' must be an integer"),
        ("keywords_frequency", {"keyword": "x", "frequency": True, "relation": AL}, "'frequency' must be an integer"),
        ("length_words", {"num_words": 3, "relation": "at most"}, "must be 'less than' or 'at least'"),
        ("length_words", {"num_words": -1, "relation": LT}, "integer >= 0"),
        ("keywords_inclusion", {"keywords": "gravity"}, "must be a list of strings"),
        ("keywords_inclusion", {"keywords": ["ok", ""]}, "non-empty strings"),
        ("format_language", {"language": "klingon"}, "not a known language code"),
        ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 1, "let_relation": AL}, "one letter a-z"),
        ("format_no_commas", {"anything": 1}, "accepted kwargs: none"),
        ("position_first_word", {"num_paragraphs": 2, "nth_paragraph": 0, "first_word": "x"}, "integer >= 1"),
    ],
)
def test_bad_kwargs_fail_clearly(iid, kwargs, needle) -> None:
    with pytest.raises(InstructionError) as excinfo:
        validate_kwargs(iid, kwargs)
    message = str(excinfo.value)
    assert needle in message
    assert canonical_id(iid) in message and "Fix:" in message


def test_kwargs_nulls_are_dropped_and_values_normalised() -> None:
    kw = {"num_words": 5.0, "relation": " At  Least ", "keyword": None, "language": None}
    assert validate_kwargs("length_words", kw) == {"num_words": 5, "relation": "at least"}
    with pytest.raises(InstructionError, match="2 instruction ids but 1 kwargs"):
        follow_instructions("x", ["format_json", "format_no_commas"], [{}])


# ----------------------------------------------------------------------------- unsatisfiable


@pytest.mark.parametrize(
    ("ids", "kwargs", "rule"),
    [
        (["cases_lowercase", "cases_uppercase"], [{}, {}], "lowercase+capital"),
        (["cases_uppercase", "format_language"], [{}, {"language": "it"}], "case+language"),
        (["length_words", "length_words"], [{"num_words": 10, "relation": LT}, {"num_words": 10, "relation": AL}], "count-bounds"),
        (["length_words", "length_words"], [{"num_words": 10, "relation": LT}, {"num_words": 12, "relation": AL}], "count-bounds"),
        (["format_no_commas", "keywords_inclusion"], [{}, {"keywords": ["New York, USA"]}], "no-comma+required-text"),
        (["format_no_commas", "format_repeat_question"], [{}, {"prompt_to_repeat": "In 1990, who won?"}], "no-comma+required-text"),
        (["keywords_exclusion", "keywords_inclusion"], [{"forbidden_words": ["Paris"]}, {"keywords": ["paris"]}], "forbidden+required-text"),
        (["cases_lowercase", "structure_sections"], [{}, {"section_spliter": "PART", "num_sections": 3}], "case+case-sensitive-text"),
        (["format_json", "format_repeat_question"], [{}, {"prompt_to_repeat": "What is gravity?"}], "repeat-prompt+start"),
        (["format_quotation", "format_repeat_question"], [{}, {"prompt_to_repeat": "What is gravity?"}], "repeat-prompt+start"),
        (["length_words", "format_repeat_question"], [{"num_words": 3, "relation": LT}, {"prompt_to_repeat": "What is gravity?"}], "count-bounds"),
        (["keywords_inclusion", "keywords_frequency"], [{"keywords": ["moon"]}, {"keyword": "Moon", "frequency": 1, "relation": LT}], "count-bounds"),
        (["structure_bullets", "structure_bullets"], [{"num_bullets": 2}, {"num_bullets": 3}], "count-bounds"),
        (["length_sentence", "length_words"], [{"num_sentences": 5, "relation": AL}, {"num_words": 5, "relation": LT}], "sentences>words"),
        (["position_end_with", "position_end_with"], [{"end_phrase": "Bye."}, {"end_phrase": "Ciao."}], "two-end-phrases"),
        (["position_first_word"], [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "x"}], "first-word"),
        (["position_first_word"], [{"num_paragraphs": 2, "nth_paragraph": 1, "first_word": '"Club"'}], "first-word"),
    ],
)
def test_contradictions_are_flagged(ids, kwargs, rule) -> None:
    reasons = unsatisfiable_reasons(ids, kwargs)
    assert any(r.startswith(rule + ":") for r in reasons), reasons


@pytest.mark.parametrize(
    ("ids", "kwargs", "witness"),
    [
        (["length_words", "length_words"], [{"num_words": 10, "relation": LT}, {"num_words": 9, "relation": AL}],
         "one two three four five six seven eight nine"),
        (["keywords_exclusion", "keywords_inclusion"], [{"forbidden_words": ["cat"]}, {"keywords": ["category"]}], "A category."),
        (["format_json", "structure_title"], [{}, {}], '{"title": "<<Gravity>>"}'),
        (["format_json", "position_postscript"], [{}, {"postscript_marker": "P.S."}], '{"a": "b", "ps": "P.S. done"}'),
        (["format_json", "position_end_with"], [{}, {"end_phrase": "Peace!"}], '"Gravity. Peace!"'),
        (["position_end_with", "position_end_with"], [{"end_phrase": "Peace!"}, {"end_phrase": "and Peace!"}], "War and peace!"),
    ],
)
def test_satisfiable_sets_are_not_flagged(ids, kwargs, witness) -> None:
    assert unsatisfiable_reasons(ids, kwargs) == []
    assert all(follow_instructions(witness, ids, kwargs))


def test_unsatisfiable_items_are_reported_and_excluded() -> None:
    flagged = check("Gravity, mass", ["cases_lowercase", "cases_uppercase", "format_no_commas"], [{}, {}, {}], key="u")
    assert flagged.unsatisfiable and "lowercase+capital" in flagged.unsatisfiable_reason
    passed = check("Gravity.", ["format_no_commas"], [{}])
    failed = check("Gravity, mass.", ["format_no_commas", "length_words"], [{}, {"num_words": 5, "relation": LT}])
    summary = summarise([flagged, passed, failed])
    assert summary["unsatisfiable"] == 1 and summary["unsatisfiable_items"][0]["key"] == "u"
    assert summary["instruction_items"] == 2
    assert summary["prompt_level_strict_acc"] == 0.5
    assert summary["instruction_level_strict_acc"] == pytest.approx(2 / 3)
    assert summary["followrag_if_score"] == summary["instruction_level_loose_acc"]
    assert summary["per_instruction"]["punctuation:no_comma"] == {"count": 2, "strict_acc": 0.5, "loose_acc": 0.5}


# ------------------------------------------------------------------------------ faithfulness

DOCS = ["Alice Marlow was born in Norland."]


def test_k_precision_and_plus_plus_hand_computed() -> None:
    answer = "Alice Marlow was born in Paris, Norland."
    question = "Where was Alice Marlow born?"
    # answer tokens: alice marlow was born in paris norland (7); "paris" is not in the document
    assert k_precision(answer, DOCS) == pytest.approx(6 / 7)
    # minus question tokens (where was alice marlow born): in paris norland -> 2 of 3 in the document
    assert k_precision_pp(answer, DOCS, question) == pytest.approx(2 / 3)
    # document tokens: alice marlow was born in norland (6), all in the answer
    assert k_recall(answer, DOCS) == 1.0
    assert k_f1(answer, DOCS) == pytest.approx(2 * (6 / 7) / (6 / 7 + 1))
    assert k_precision_pp("Alice Marlow", DOCS, question) is None  # nothing left after the question's words
    assert k_precision("", DOCS) is None


def test_grounding_flags_an_invented_entity_and_a_wrong_number() -> None:
    docs = ["Alice Marlow was born in Norland in 1990. The city has 1,200,000 people.", "Bob Stone lives in Eastport."]
    ok = grounding("Alice Marlow was born in Norland in 1990 [1]. It has 1200000 people.", docs)
    assert ok.grounded and ok.entities == ["Alice Marlow"] and ok.numbers == ["1990", "1200000"]
    bad = grounding("Alice Marlow was born in Westfall City in 1991.", docs)
    assert not bad.grounded
    assert bad.unsupported_entities == ["Westfall City"] and bad.unsupported_numbers == ["1991"]
    wrong_citation = grounding("Bob Stone lives in Eastport [1].", docs)
    assert wrong_citation.cited == [1] and wrong_citation.unsupported_entities == ["Bob Stone"]
    assert grounding("Bob Stone lives in Eastport.", docs).grounded  # no citation: any document
    quoted = grounding('It was called "the little sparrow game".', ["Mahjong means little sparrow."])
    assert quoted.unsupported_entities == ["the little sparrow game"]
    assert grounding("THE ANSWER IS BOB STONE IN 1990.", docs).entities == []  # no case signal


def test_forced_tokens_do_not_lower_faithfulness() -> None:
    response = "Alice Marlow was born in Norland. Is there anything else I can help with?"
    end = [{"end_phrase": "Is there anything else I can help with?"}]
    assert k_precision(response, DOCS) < 1.0
    scores = faithfulness(response, DOCS, instruction_id_list=["position_end_with"], kwargs=end)
    assert scores.k_precision == 1.0 and scores.content == "Alice Marlow was born in Norland."
    response = (
        'Where was Alice born? ```json\n{"a": "SECTION 1 Alice Marlow was born in Norland [1] in [place].", '
        '"note": "P.S. Alice Marlow was born."}\n```'
    )
    ids = ["format_repeat_question", "format_json", "structure_sections", "structure_placeholder", "position_postscript",
           "keywords_inclusion"]
    kw = [{"prompt_to_repeat": "Where was Alice born?"}, {}, {"section_spliter": "SECTION", "num_sections": 1},
          {"num_placeholders": 1}, {"postscript_marker": "P.S."}, {"keywords": ["marvellous"]}]
    scores = faithfulness(response + " marvellous", DOCS, instruction_id_list=ids, kwargs=kw)
    assert scores.k_precision == 1.0, scores.content
    assert scores.grounding.grounded


def test_correctness_hand_computed() -> None:
    assert correctness("The Kingdom of Norland!", ["Norland", "the Kingdom of Norland"]).em == 1.0
    c = correctness("It is Norland", ["Kingdom of Norland", "Norland City"])
    assert c.em == 0.0
    # it is norland vs norland city: p = 1/3, r = 1/2 -> F1 = 0.4 (vs kingdom of norland: 1/3)
    assert c.f1 == pytest.approx(0.4)
    assert c.recall == pytest.approx(0.5)
    assert correctness("Norland", "Norland").to_dict() == {"em": 1.0, "f1": 1.0, "recall": 1.0}


class _FakeJudge:
    name = "fake"

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def __call__(self, question, answer, documents) -> JudgeVerdict:
        self.seen.append((question, answer, list(documents)))
        return JudgeVerdict(label="supported", score=1.0, rationale="the document says so")


def test_judge_slot() -> None:
    judge = _FakeJudge()
    assert isinstance(judge, Judge) and isinstance(NoJudge(), Judge)
    r = check("Norland. Bye!", ["position_end_with"], [{"end_phrase": "Bye!"}], question="Where?", documents=DOCS, judge=judge)
    assert r.judge.label == "supported" and r.to_dict()["judge"]["name"] == "fake"
    assert judge.seen == [("Where?", "Norland.", DOCS)]  # the judge sees the answer without forced text
    assert check("Norland.", [], judge=NoJudge()).judge is None
    assert summarise([r])["judge_labels"] == {"supported": 1}


# ------------------------------------------------------------------------------------ files


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_check_file_end_to_end(tmp_path: Path) -> None:
    rows = [
        {"key": "a", "response": "Alice Marlow was born in Norland. Bye!", "prompt": "Where was Alice born?",
         "instruction_id_list": ["format_no_commas", "position_end_with"], "kwargs": [{}, {"end_phrase": "Bye!"}],
         "documents": [{"title": "Alice Marlow", "content": "Alice Marlow was born in Norland."}],
         "golden_answers": ["Norland"]},
        {"key": "b", "response": "Norland, 1991.", "instruction_id_list": ["punctuation:no_comma"],
         "kwargs": [{"language": None}], "documents": DOCS, "golden_answers": "Norland"},
        "",
        {"key": "c", "response": "x", "instruction_id_list": ["length_words", "length_words"],
         "kwargs": [{"num_words": 3, "relation": "less than"}, {"num_words": 5, "relation": "at least"}]},
    ]
    reports, summary = check_file(_write_jsonl(tmp_path / "in.jsonl", rows))
    assert [r.key for r in reports] == ["a", "b", "c"] and [r.line for r in reports] == [1, 2, 4]
    assert reports[0].question == "Where was Alice born?" and reports[0].strict.follow_all_instructions
    assert reports[1].faithfulness.grounding.unsupported_numbers == ["1991"]
    assert summary["items"] == 3 and summary["unsatisfiable"] == 1
    assert summary["prompt_level_strict_acc"] == 0.5 and summary["instruction_level_loose_acc"] == pytest.approx(2 / 3)
    assert summary["grounding_rate"] == 0.5 and summary["em"] == 0.0 and summary["recall"] == 1.0
    json.dumps([r.to_dict() for r in reports]), json.dumps(summary)  # JSON-ready


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"response": "x", "instruction_id_list": [', "not valid JSON"),
        ('{"instruction_id_list": []}', "missing or non-string 'response'"),
        ('{"response": "x", "instruction_id_list": ["length_words"], "kwargs": [{"num_words": 3}]}', "missing required kwarg"),
        ('{"response": "x", "instruction_id_list": ["no_such_thing"]}', "unknown instruction id"),
        ('{"response": "x", "documents": "one doc"}', "'documents' must be a list"),
    ],
)
def test_check_file_errors_name_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", ['{"response": "fine"}', line])
    with pytest.raises(InputFormatError) as excinfo:
        check_file(path)
    assert str(excinfo.value).startswith(f"{path}:2: ") and needle in str(excinfo.value)


def _followrag_item(key: int, **over) -> dict:
    item = {
        "key": key, "type": "ifnq", "prompt": "Given the following information: ...",
        "question": "where was alice marlow born",
        "answer_gold": "Norland/Kingdom of Norland",
        "question_with_instrs": "Where was Alice Marlow born? Do not use any commas in your response.",
        "instruction_id_list": ["format_no_commas"], "kwargs": [{}],
        "passages": [{"title": "Alice Marlow", "content": "Alice Marlow was born in Norland."},
                     {"title": "Norland", "content": "Norland is a kingdom."}],
    }
    item.update(over)
    return item


def test_load_followrag_and_prompt_parts(tmp_path: Path) -> None:
    repeat = "Where was Alice Marlow born? (in 1990)"
    items = [
        _followrag_item(0),
        _followrag_item(1, instruction_id_list=["format_repeat_question"], kwargs=[{"prompt_to_repeat": repeat}],
                        question_with_instrs=repeat + ". First repeat the request word for word, then answer."),
    ]
    path = tmp_path / "f.json"
    path.write_bytes(orjson.dumps(items))
    loaded = load_followrag(path)
    assert len(loaded) == 2 and len(load_followrag(path, limit=1)) == 1
    first = loaded[0]
    assert first.golden_answers == ("Norland", "Kingdom of Norland") and first.source == "ifnq"
    question, instructions, documents = followrag_prompt_parts(first)
    assert question == "Where was Alice Marlow born?"
    assert instructions == "Do not use any commas in your response."
    assert documents == ["Alice Marlow: Alice Marlow was born in Norland.", "Norland: Norland is a kingdom."]
    assert followrag_prompt_parts(loaded[1])[:2] == (repeat + ".", "First repeat the request word for word, then answer.")
    record = followrag_record(first, "Norland.")
    report = check_file(_write_jsonl(tmp_path / "r.jsonl", [record]))[0][0]
    assert report.strict.follow_all_instructions and report.correctness.em == 1.0


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"cases_lowercase": {"instruction_description": "x", "cases": []}}', "atom_instruction.json"),
        (b"[1, 2]", "item 0: not an object"),
        (orjson.dumps([_followrag_item(5, passages=None)]), "'passages' must be a list"),
        (orjson.dumps([{"key": 3, "question": "q"}]), "item 0 (key 3): missing field(s)"),
        (orjson.dumps([_followrag_item(7, kwargs=[{"bogus": 1}])]), "unknown kwarg(s) 'bogus'"),
        (b"not json", "not valid JSON"),
    ],
)
def test_load_followrag_wrong_file(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(InputFormatError, match="Fix: pass a FollowRAG item file") as excinfo:
        load_followrag(path)
    assert needle in str(excinfo.value)


# ------------------------------------------------------------------------------ integration


@pytest.mark.integration
@pytest.mark.parametrize("name", FOLLOWRAG_FILES)
def test_shared_followrag_items_are_accepted(name: str) -> None:
    items = load_followrag(_shared(name))  # validates every id and kwargs dict
    assert len(items) == 700
    flagged = 0
    for item in items:
        assert item.golden_answers and len(item.passages) == 3
        for iid, kw in zip(item.instruction_id_list, item.kwargs):
            validate_kwargs(iid, kw)
        question, instructions, documents = followrag_prompt_parts(item)
        assert question and instructions and len(documents) == 3
        assert " ".join(f"{question} {instructions}".split()) == " ".join(item.question_with_instructions.split())
        reasons = unsatisfiable_reasons(item.instruction_id_list, item.kwargs)
        ids = set(item.instruction_id_list)
        if {"cases_lowercase", "cases_uppercase"} <= ids:
            assert any(r.startswith("lowercase+capital") for r in reasons)
        flagged += bool(reasons)
    assert 0 < flagged < len(items) // 5
