"""Rules: model, both text forms, files, and matching rules to questions."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from rulerag.errors import RuleFormatError
from rulerag.rules import Atom, Rule, RuleMatch, RuleStore, load_rules, parse_rule, save_rules

# --- parsing ----------------------------------------------------------------------------------


def test_text_form_length_one():
    rule = parse_rule("[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]")
    assert rule.head == Atom("citizen_of", "X", "Y")
    assert rule.body == (Atom("born_in", "X", "Y"),)
    assert rule.length == 1
    assert rule.datalog == "citizen_of(X,Y) <- born_in(X,Y)"
    assert rule.text == "[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]"


@pytest.mark.parametrize("joiner", ["&", ",", "and", "^"])
def test_text_form_chain_joiners(joiner):
    rule = parse_rule(f"[Entity1, r1, Entity3] {joiner} [Entity3, r3, Entity2] leads to [Entity1, r2, Entity2]")
    assert rule.datalog == "r2(X,Y) <- r1(X,Z), r3(Z,Y)"
    assert rule.text == "[Entity1, r1, Entity3] & [Entity3, r3, Entity2] leads to [Entity1, r2, Entity2]"
    assert rule.body_relations == ("r1", "r3")
    assert rule.length == 2


@pytest.mark.parametrize("arrow", ["<-", ":-", "<="])
def test_datalog_form_arrows(arrow):
    rule = parse_rule(f"r2(X,Y) {arrow} r1(X,Z), r3(Z,Y)")
    assert rule.head == Atom("r2", "X", "Y")
    assert rule.body == (Atom("r1", "X", "Z"), Atom("r3", "Z", "Y"))


def test_inverse_atoms_in_both_forms():
    from_text = parse_rule("[Entity2, r1, Entity1] leads to [Entity1, r2, Entity2]")
    from_datalog = parse_rule("r2(X,Y) <- r1(Y,X)")
    assert from_text == from_datalog
    assert from_text.body == (Atom("r1", "Y", "X"),)
    assert from_datalog.text == "[Entity2, r1, Entity1] leads to [Entity1, r2, Entity2]"


def test_relation_names_with_spaces_slashes_dots_parentheses_and_commas():
    rule = parse_rule("[A, Make an appeal or request, C] & [C, /people/person.nationality, B] "
                      "leads to [A, Consult (formal), B]")
    assert rule.body_relations == ("Make an appeal or request", "/people/person.nationality")
    assert rule.head.relation == "Consult (formal)"
    assert parse_rule(rule.datalog) == rule
    assert parse_rule("/film/x(X,Y) <- Impose embargo, boycott, or sanctions(Y,X)").body == (
        Atom("Impose embargo, boycott, or sanctions", "Y", "X"),
    )


def test_three_atom_chain_and_variable_normalisation():
    rule = parse_rule("p(A,B) <- q(A,M), s(M,N), t(N,B)")
    assert rule.datalog == "p(X,Y) <- q(X,Z), s(Z,W), t(W,Y)"
    assert rule.text == ("[Entity1, q, Entity3] & [Entity3, s, Entity4] & [Entity4, t, Entity2] "
                         "leads to [Entity1, p, Entity2]")
    assert parse_rule(rule.text) == rule


@pytest.mark.parametrize("text", [
    "[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]",
    "[Entity2, r1, Entity1] leads to [Entity1, r2, Entity2]",
    "[Entity1, r1, Entity3] & [Entity3, r3, Entity2] leads to [Entity1, r2, Entity2]",
    "[Entity3, r1, Entity1] & [Entity3, r3, Entity2] leads to [Entity1, r2, Entity2]",
])
def test_text_datalog_round_trip(text):
    rule = parse_rule(text)
    assert rule.text == text
    again = parse_rule(rule.datalog)
    assert again == rule and again.text == text and again.datalog == rule.datalog


def test_equality_ignores_variable_names_and_statistics():
    a = parse_rule("[A, r1, C] & [C, r3, B] leads to [A, r2, B]")
    b = parse_rule("r2(P,Q) <- r1(P,R), r3(R,Q)")
    c = Rule(Atom("r2", "s", "o"), (Atom("r1", "s", "m"), Atom("r3", "m", "o")), confidence=0.4)
    assert a == b == c
    assert len({a, b, c}) == 1
    assert a.id == b.id == c.id and len(a.id) == 12
    assert a != parse_rule("r2(X,Y) <- r1(Y,Z), r3(Z,X)")


def test_rule_constructor_validates():
    with pytest.raises(ValueError, match="no body atoms"):
        Rule(Atom("r", "X", "Y"), ())
    with pytest.raises(ValueError, match="at most 3"):
        Rule(Atom("r", "X", "Y"), (Atom("a", "X", "A"), Atom("b", "A", "B"), Atom("c", "B", "C"), Atom("d", "C", "Y")))
    with pytest.raises(ValueError, match="support"):
        Rule(Atom("r", "X", "Y"), (Atom("a", "X", "Y"),), support=-1)
    with pytest.raises(ValueError, match="same variable twice"):
        Rule(Atom("r", "X", "Y"), (Atom("a", "X", "Y"), Atom("b", "Y", "Y")))


# --- files --------------------------------------------------------------------------------------


def test_jsonl_save_load_round_trip(tmp_path):
    rules = [
        Rule(Atom("citizen_of", "X", "Y"), (Atom("born_in", "X", "Y"),), confidence=0.8, support=12,
             head_coverage=0.3, pca_confidence=0.9),
        parse_rule("r2(X,Y) <- r1(X,Z), r3(Z,Y)"),
        Rule(Atom("r2", "X", "Y"), (Atom("r1", "Y", "X"),), confidence=0.5, id="custom"),
    ]
    path = tmp_path / "out" / "rules.jsonl"
    assert save_rules(rules, path) == 3
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["text"] == "[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]"
    loaded = load_rules(path)
    assert [r.to_dict() for r in loaded] == [r.to_dict() for r in rules]
    assert loaded[2].id == "custom"


def test_jsonl_accepts_rule_and_text_keys(tmp_path):
    path = tmp_path / "rules.jsonl"
    path.write_text(
        '{"rule": "citizen_of(X,Y) <- born_in(X,Y)", "confidence": 0.7, "support": 3}\n'
        "\n"
        '{"text": "[Entity2, r1, Entity1] leads to [Entity1, r2, Entity2]"}\n'
        '{"head": {"relation": "r5", "subject": "A", "object": "B"}, '
        '"body": [{"relation": "r6", "subject": "B", "object": "A"}], "confidence": 1}\n'
    )
    rules = load_rules(path)
    assert [r.datalog for r in rules] == ["citizen_of(X,Y) <- born_in(X,Y)", "r2(X,Y) <- r1(Y,X)", "r5(X,Y) <- r6(Y,X)"]
    assert (rules[0].confidence, rules[0].support) == (0.7, 3)
    assert rules[2].confidence == 1.0


def test_text_file_with_comments_anyburl_lines_and_duplicates(tmp_path, caplog):
    path = tmp_path / "demo.txt"
    path.write_text(
        "# rules mined for the demo\n"
        "\n"
        "[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]\n"
        "   lives_in(X,Y) <- born_in(X,Y)   \n"
        "120\t80\t0.667\tworks_for(X,Y) <= employed_by(X,Y)\n"
        "citizen_of(A,B) <- born_in(A,B)\n"
    )
    with caplog.at_level(logging.WARNING, logger="rulerag.rules.parse"):
        rules = load_rules(path)
    assert [r.head.relation for r in rules] == ["citizen_of", "lives_in", "works_for"]
    assert (rules[2].support, rules[2].confidence) == (80, 0.667)
    assert "demo.txt:6: duplicate of the rule on line 3" in caplog.text


@pytest.mark.parametrize(("name", "content", "line", "problem"), [
    ("a.txt", "# ok\n[Entity1, born_in, Entity2] [Entity1, citizen_of, Entity2]\n", 2, "expected 'leads to' or '<-'"),
    ("b.txt", "r2(X,Y) <- r1(X,Y)\n\n[Entity1, born_in, Entity2 leads to [Entity1, citizen_of, Entity2]\n", 3,
     "unbalanced bracket"),
    ("c.txt", "[Entity1, born_in, Entity3] leads to [Entity1, citizen_of, Entity2]\n", 1,
     "head variable 'Entity2' does not occur in the body"),
    ("d.txt", "r2(X,Y) <- r1(X,Y)\nr2(X,Y) <- r1(X,Y), r3(A,B)\n", 2, "shares no variable"),
    ("e.txt", "r2(X,Y) <- r1(X,Z r3(Z,Y)\n", 1, "unbalanced parenthesis"),
    ("f.jsonl", '{"rule": "r2(X,Y) <- r1(X,Y)"}\n{"rule": "r2(X,Y) <- r1(Y,X)", "confidence": 1.5}\n', 2,
     "confidence must be a number in [0, 1]"),
    ("g.jsonl", '["r2(X,Y) <- r1(X,Y)"]\n', 1, "expected a JSON object"),
    ("h.jsonl", '{"rule": "r2(X,Y) <- r1(X,Y)"\n', 1, "invalid JSON"),
    ("i.jsonl", '{"confidence": 0.5}\n', 1, 'none of "head", "rule" or "text"'),
    ("j.txt", "r2(X,Y) <- r1(X,Y), r3(Y,Z)\n", 1, "occurs only once"),
])
def test_malformed_rules_name_file_and_line(tmp_path, name, content, line, problem):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RuleFormatError) as info:
        load_rules(path)
    err = info.value
    assert (err.path, err.line) == (str(path), line)
    assert problem in err.problem
    assert str(err).startswith(f"{path}:{line}: ")
    assert "Fix: " in str(err)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(RuleFormatError, match="rule file not found") as info:
        load_rules(tmp_path / "nope.txt")
    assert info.value.line is None
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(RuleFormatError, match="no rules found") as info:
        load_rules(empty)
    assert info.value.path == str(empty) and info.value.line is None


def test_parse_rule_error_names_source():
    with pytest.raises(RuleFormatError) as info:
        parse_rule("r2(X,Y)", source="cli", line=4)
    assert str(info.value).startswith("cli:4: expected 'leads to' or '<-'")


# --- store ----------------------------------------------------------------------------------------


RULES = [
    "[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]",
    "[Entity1, lives_in, Entity2] leads to [Entity1, citizen_of, Entity2]",
    "[Entity1, r1, Entity3] & [Entity3, located_in, Entity2] leads to [Entity1, citizen_of, Entity2]",
    "[Entity2, married_to, Entity1] leads to [Entity1, married_to, Entity2]",
    "[Entity1, employed_by, Entity2] leads to [Entity1, works_for, Entity2]",
    "[Entity1, citizen_of, Entity2] leads to [Entity1, /people/person/nationality, Entity2]",
]


@pytest.fixture
def store():
    confidences = [0.5, None, 0.9, 0.8, 0.6, 0.7]
    rules = [Rule(r.head, r.body, confidence=c) for r, c in zip(map(parse_rule, RULES), confidences)]
    return RuleStore(rules + [rules[0]])


def test_store_basics_and_by_head_order(store):
    assert len(store) == 6
    assert list(store)[0].body_relations == ("born_in",)
    assert store.relations == ["/people/person/nationality", "citizen_of", "married_to", "works_for"]
    assert [r.confidence for r in store.by_head("citizen_of")] == [0.9, 0.5, None]
    assert store.by_head("unknown") == []


def test_match_relation(store):
    matches = store.match_relation("citizen_of")
    assert [m.score for m in matches] == [0.9, 0.5, 1.0]
    assert all(m.reason == "head relation" and m.embedding_score is None for m in matches)
    assert len(store.match_relation("citizen_of", top_n=2)) == 2
    assert store.match_relation("nope") == []


def test_match_mentions_only(store):
    matches = store.match("Which country is Alice Marlow a citizen of?")
    assert [m.rule.head.relation for m in matches] == ["citizen_of"] * 3
    assert [m.rule.confidence for m in matches] == [0.9, 0.5, None]
    assert matches[0].score == matches[0].mention_score == 1.0
    assert matches[0].embedding_score is None
    assert matches[0].reason == "relation 'citizen of' mentioned"
    json.dumps(matches[0].to_dict())
    assert len(store.match("Which country is Alice Marlow a citizen of?", top_n=1)) == 1
    # light matching: citizenship ~ citizen, employed ~ employ... only head relations count
    assert store.match("Does Alice hold citizenship?")[0].rule.head.relation == "citizen_of"
    assert store.match("Who is Bob married to?")[0].rule.head.relation == "married_to"
    # one of three words of /people/person/nationality: 1/3 is below the default threshold
    assert store.match("What is the nationality of Alice?") == []
    partial = store.match("What is the nationality of Alice?", min_score=0.3)
    assert partial[0].mention_score == pytest.approx(1 / 3)
    assert partial[0].reason == "'nationality' of relation 'people person nationality' mentioned"
    assert store.match("What is the weather like today?") == []
    assert store.match_many(["Who is Bob married to?", "weather today?"], top_n=2)[1] == []


class FakeEncoder:
    """Deterministic vectors from a table; records every encode call."""

    def __init__(self, name: str, table: dict[str, list[float]]) -> None:
        self.model_name = name
        self.table = table
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        vecs = np.array([self.table[t] for t in texts], dtype=np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_match_combines_mention_and_embedding_exactly():
    rules = [parse_rule("citizen_of(X,Y) <- born_in(X,Y)"), parse_rule("born_in(X,Y) <- lives_in(X,Y)"),
             parse_rule("married_to(X,Y) <- married_to(Y,X)")]
    store = RuleStore(rules)
    q1, q2 = "which passport does alice hold", "is alice a citizen"
    enc = FakeEncoder("fake", {"citizen of": [1, 0, 0], "born in": [0, 1, 0], "married to": [0, 0, 1],
                               q1: [0.6, 0.8, 0.0], q2: [0.6, 0.0, -0.8]})
    first, second = store.match_many([q1, q2], encoder=enc, mention_weight=0.25, min_score=0.0, top_n=None)
    # q1: no mentions; similarities 0.6 (citizen of), 0.8 (born in), 0 (married to)
    assert [m.rule.head.relation for m in first] == ["born_in", "citizen_of", "married_to"]
    assert [m.score for m in first] == pytest.approx([0.75 * 0.8, 0.75 * 0.6, 0.0])
    assert [m.embedding_score for m in first] == pytest.approx([0.8, 0.6, 0.0])
    assert [m.mention_score for m in first] == [0.0, 0.0, 0.0]
    assert first[0].reason == "relation 'born in' not mentioned; similarity 0.80"
    # q2: "citizen" mentioned; the negative cosine with "married to" is clipped to 0
    assert second[0].rule.head.relation == "citizen_of"
    assert second[0].score == pytest.approx(0.25 * 1.0 + 0.75 * 0.6)
    assert second[0].reason == "relation 'citizen of' mentioned; similarity 0.60"
    assert second[-1].embedding_score == 0.0
    # the threshold applies to the combined score; relations are embedded once per encoder
    assert [m.rule.head.relation for m in store.match(q1, encoder=enc, mention_weight=0.25, min_score=0.5)] == ["born_in"]
    assert enc.calls == [["born in", "citizen of", "married to"], [q1, q2], [q1]]
    # without an encoder, only mentions count
    assert [m.rule.head.relation for m in store.match(q2)] == ["citizen_of"]


def test_match_masks_entity_names_before_embedding():
    store = RuleStore([parse_rule("citizen_of(X,Y) <- born_in(X,Y)")])
    enc = FakeEncoder("fake-mask", {"citizen of": [1, 0], "Is someone a citizen of someone?": [1, 0]})
    match = store.match("Is Alice Marlow a citizen of Norland?", encoder=enc)[0]
    assert enc.calls[-1] == ["Is someone a citizen of someone?"]
    assert match.score == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mention_weight"):
        store.match("x", encoder=enc, mention_weight=1.5)


@pytest.mark.integration
def test_real_encoder_matches_paraphrase_without_relation_words():
    from rulerag.embedding import Encoder

    store = RuleStore(parse_rule(t) for t in [
        "[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]",
        "[Entity2, married_to, Entity1] leads to [Entity1, married_to, Entity2]",
        "[Entity1, employed_by, Entity2] leads to [Entity1, works_for, Entity2]",
        "[Entity1, works_in, Entity2] leads to [Entity1, lives_in, Entity2]",
    ])
    question = "What nationality does Alice Marlow hold?"
    assert store.match(question) == []  # no relation word is mentioned
    matches = store.match(question, encoder=Encoder(), mention_weight=0.0)
    assert [m.rule.head.relation for m in matches] == ["citizen_of"]
    assert matches[0].mention_score == 0.0
    assert matches[0].embedding_score > 0.35
    assert isinstance(matches[0], RuleMatch)
