"""Rule mining: planted rules on synthetic KGs, hand-computed numbers, and a brute-force reference."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from rulerag.kg import FactTable
from rulerag.rules import Atom, Rule, load_rules
from rulerag.rules.mine import MineConfig, mine_rules, mine_to_file

ALL = {"min_support": 1, "min_pairs": 1, "min_head_coverage": 0.0, "min_confidence": 0.0, "max_rules_per_head": None}


def by_datalog(rules: list[Rule]) -> dict[str, Rule]:
    return {r.datalog: r for r in rules}


# --- static: planted rules -------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted() -> FactTable:
    rng = np.random.default_rng(7)
    people = [f"p{i}" for i in range(200)]
    facts = []
    for i, p in enumerate(people):
        facts.append((p, "born_in", f"country{i % 40}"))
        # citizen_of = born_in for exactly 160 of the 200 people (80%); the others another country
        facts.append((p, "citizen_of", f"country{i % 40 if i < 160 else (i + 1) % 40}"))
    for j in range(20):
        facts.append((f"company{j}", "headquartered_in", f"city{j % 10}"))
    for i in range(0, 200, 2):  # 100 employees; works_in follows from works_for + headquartered_in
        facts.append((people[i], "works_for", f"company{(i // 2) % 20}"))
        facts.append((people[i], "works_in", f"city{((i // 2) % 20) % 10}"))
    for j in range(50):  # 50 couples, married_to stated both ways
        a, b = people[4 * j + 1], people[4 * j + 3]
        facts += [(a, "married_to", b), (b, "married_to", a)]
    for rel in ("knows", "follows"):  # independent random noise among people
        for _ in range(300):
            a, b = rng.choice(200, size=2, replace=False)
            facts.append((people[a], rel, people[b]))
    return FactTable.from_triples(facts, name="planted")


def test_planted_length_one(planted):
    rules = by_datalog(mine_rules(planted, MineConfig()))
    rule = rules["citizen_of(X,Y) <- born_in(X,Y)"]
    assert rule.support == 160
    assert rule.confidence == pytest.approx(160 / 200)
    assert rule.head_coverage == pytest.approx(160 / 200)
    assert rule.pca_confidence == pytest.approx(160 / 200)  # every person has a citizen_of fact
    back = rules["born_in(X,Y) <- citizen_of(X,Y)"]
    assert (back.support, back.confidence) == (160, pytest.approx(0.8))


def test_planted_length_two(planted):
    rules = by_datalog(mine_rules(planted, MineConfig()))
    rule = rules["works_in(X,Y) <- works_for(X,Z), headquartered_in(Z,Y)"]
    assert (rule.support, rule.confidence, rule.head_coverage, rule.pca_confidence) == (100, 1.0, 1.0, 1.0)
    assert rule.length == 2
    # inverse: a company's headquarters city is where its employees work
    inv = rules["headquartered_in(X,Y) <- works_for(Z,X), works_in(Z,Y)"]
    assert inv.support == 20
    assert inv.confidence == 1.0


def test_planted_inverse_rule(planted):
    rules = by_datalog(mine_rules(planted, MineConfig()))
    rule = rules["married_to(X,Y) <- married_to(Y,X)"]
    assert (rule.support, rule.confidence, rule.head_coverage, rule.pca_confidence) == (100, 1.0, 1.0, 1.0)
    assert "married_to(X,Y) <- married_to(X,Y)" not in rules  # the trivial rule is never produced


def test_noise_gives_no_rules(planted):
    rules = mine_rules(planted, MineConfig())
    noise = {"knows", "follows"}
    assert not [r.datalog for r in rules if r.head.relation in noise]
    assert not [r.datalog for r in rules if noise & set(r.body_relations)]


def test_thresholds_respected(planted):
    cfg = MineConfig(min_support=5, min_head_coverage=0.3, min_confidence=0.5, max_rules_per_head=3)
    rules = mine_rules(planted, cfg)
    assert rules
    heads: dict[str, int] = {}
    for r in rules:
        assert r.support >= 5 and r.head_coverage >= 0.3 and r.confidence >= 0.5
        heads[r.head.relation] = heads.get(r.head.relation, 0) + 1
    assert max(heads.values()) <= 3
    # sorted by head relation, then confidence descending
    keys = [(r.head.relation, -r.confidence) for r in rules]
    assert keys == sorted(keys)


def test_min_confidence_cuts_the_planted_rule(planted):
    rules = by_datalog(mine_rules(planted, MineConfig(min_confidence=0.81, max_length=1)))
    assert "citizen_of(X,Y) <- born_in(X,Y)" not in rules
    assert "married_to(X,Y) <- married_to(Y,X)" in rules
    assert all(r.length == 1 for r in rules.values())


def test_head_relations_filter(planted):
    rules = mine_rules(planted, MineConfig(head_relations=["works_in"]))
    assert rules and {r.head.relation for r in rules} == {"works_in"}
    with pytest.raises(ValueError, match="unknown head relation"):
        mine_rules(planted, MineConfig(head_relations=["nope"]))


# --- static: hand-computed numbers -----------------------------------------------------------


def test_hand_computed_static():
    kg = FactTable.from_triples([
        ("a", "r1", "b"), ("a", "r1", "c"), ("d", "r1", "e"), ("g", "r1", "h"),
        ("a", "r2", "b"), ("d", "r2", "e"), ("d", "r2", "f"), ("f", "r2", "d"),
        ("a", "r1", "b"),  # duplicate: counted once
        ("a", "r2", "a"),  # self-loop: ignored
    ])
    rules = by_datalog(mine_rules(kg, MineConfig(max_length=1, **ALL)))
    r = rules["r2(X,Y) <- r1(X,Y)"]
    # body pairs {ab, ac, de, gh}; head pairs {ab, de, df, fd}; subjects of r2: a, d, f
    assert (r.support, r.confidence, r.head_coverage, r.pca_confidence) == (2, 0.5, 0.5, pytest.approx(2 / 3))
    r = rules["r2(X,Y) <- r2(Y,X)"]
    # body pairs {ba, ed, fd, df}; supported: df, fd; of the body pairs, fd and df have an r2 subject
    assert (r.support, r.confidence, r.head_coverage, r.pca_confidence) == (2, 0.5, 0.5, 1.0)
    r = rules["r1(X,Y) <- r2(X,Y)"]
    assert (r.support, r.confidence, r.head_coverage, r.pca_confidence) == (2, 0.5, 0.5, pytest.approx(2 / 3))


def test_hand_computed_chain_excludes_x_equals_y():
    kg = FactTable.from_triples([
        ("a", "p", "m"), ("b", "p", "m"), ("c", "p", "n"),
        ("a", "sib", "b"), ("b", "sib", "a"), ("a", "sib", "c"),
    ])
    rules = by_datalog(mine_rules(kg, MineConfig(**ALL)))
    r = rules["sib(X,Y) <- p(X,Z), p(Y,Z)"]
    # body pairs (x != y sharing a p-object): ab, ba -> both are sib facts; aa, bb, cc are not counted
    assert (r.support, r.confidence, r.head_coverage, r.pca_confidence) == (2, 1.0, pytest.approx(2 / 3), 1.0)


def test_static_mining_of_a_temporal_table():
    kg = FactTable.from_triples([("a", "r", "b", 5), ("a", "s", "b", 1), ("a", "s", "b", 2), ("c", "r", "d", 1),
                                 ("c", "s", "d", 9)], time_unit="year")
    rules = by_datalog(mine_rules(kg, MineConfig(temporal=False, **ALL)))
    r = rules["r(X,Y) <- s(X,Y)"]
    assert (r.support, r.confidence, r.pca_confidence) == (2, 1.0, 1.0)
    t = by_datalog(mine_rules(kg, MineConfig(**ALL)))["r(X,Y) <- s(X,Y)"]
    assert (t.support, t.confidence, t.pca_confidence) == (1, 0.5, None)  # c-d: s is dated after r


# --- temporal --------------------------------------------------------------------------------


def test_temporal_body_must_precede_head():
    facts = []
    for i in range(4):  # body two years before the head: counts
        facts += [(f"x{i}", "visit", f"y{i}", 2001), (f"x{i}", "sign_deal", f"y{i}", 2003)]
    facts += [("u", "visit", "v", 2010), ("u", "sign_deal", "v", 2005)]  # body after the head
    facts += [("w", "visit", "q", 2007), ("w", "sign_deal", "q", 2007)]  # same year
    kg = FactTable.from_triples(facts, time_unit="year")
    strict = by_datalog(mine_rules(kg, MineConfig(**ALL)))["sign_deal(X,Y) <- visit(X,Y)"]
    assert strict.support == 4  # neither u-v (body later) nor w-q (same year) counts
    assert strict.confidence == pytest.approx(4 / 6)  # 6 body pairs, 4 followed by the head
    assert strict.head_coverage == pytest.approx(4 / 6)
    assert strict.pca_confidence is None
    loose = by_datalog(mine_rules(kg, MineConfig(strict=False, **ALL)))["sign_deal(X,Y) <- visit(X,Y)"]
    assert loose.support == 5 and loose.confidence == pytest.approx(5 / 6)  # w-q now counts, u-v still not
    # the reverse direction: visit after sign_deal happens only for u-v
    rev = by_datalog(mine_rules(kg, MineConfig(**ALL)))["visit(X,Y) <- sign_deal(X,Y)"]
    assert (rev.support, rev.confidence) == (1, pytest.approx(1 / 6))


def test_temporal_support_counts_head_facts_and_earliest_body():
    kg = FactTable.from_triples([
        ("a", "b", "c", 5), ("a", "b", "c", 1),               # earliest body time 1
        ("a", "h", "c", 1), ("a", "h", "c", 3), ("a", "h", "c", 8),  # 3 and 8 follow it, 1 does not
    ], time_unit="day")
    r = by_datalog(mine_rules(kg, MineConfig(**ALL)))["h(X,Y) <- b(X,Y)"]
    assert (r.support, r.confidence, r.head_coverage) == (2, 1.0, pytest.approx(2 / 3))
    # support 2 but from one pair only: min_pairs (default 2) drops it
    assert not mine_rules(kg, MineConfig(min_support=2, min_head_coverage=0.0))


def test_temporal_length_two_time_ordered():
    facts = [
        ("x1", "b1", "z1", 1), ("z1", "b2", "y1", 2), ("x1", "h", "y1", 3),  # t1 <= t2 < t: valid
        ("x2", "b1", "z2", 2), ("z2", "b2", "y2", 2), ("x2", "h", "y2", 3),  # t1 == t2: valid
        ("x3", "b1", "z3", 3), ("z3", "b2", "y3", 2), ("x3", "h", "y3", 5),  # t1 > t2: no body grounding
        ("x4", "b1", "z4", 1), ("z4", "b2", "y4", 4), ("x4", "h", "y4", 4),  # t2 == t: not under strict
        ("x5", "b1", "z5", 1), ("z5", "b2", "y5", 6), ("x5", "h", "y5", 4),  # body completes after the head
    ]
    kg = FactTable.from_triples(facts, time_unit="day")
    r = by_datalog(mine_rules(kg, MineConfig(**ALL)))["h(X,Y) <- b1(X,Z), b2(Z,Y)"]
    assert r.support == 2
    assert r.confidence == pytest.approx(2 / 4)  # body pairs: x1y1, x2y2, x4y4, x5y5 (x3y3 is not time-ordered)
    assert r.head_coverage == pytest.approx(2 / 5)
    loose = by_datalog(mine_rules(kg, MineConfig(strict=False, **ALL)))["h(X,Y) <- b1(X,Z), b2(Z,Y)"]
    assert loose.support == 3 and loose.confidence == pytest.approx(3 / 4)


def test_temporal_planted_rule_recovered():
    rng = np.random.default_rng(3)
    facts = []
    for i in range(100):
        t = int(rng.integers(0, 300))
        facts.append((f"c{i}", "threaten", f"d{i}", t))
        if i < 70:  # 70% are followed by a protest 1-30 days later
            facts.append((f"d{i}", "protest_against", f"c{i}", t + int(rng.integers(1, 30))))
    for _ in range(200):
        a, b = rng.choice(100, size=2, replace=False)
        facts.append((f"c{a}", "praise", f"d{b}", int(rng.integers(0, 330))))
    kg = FactTable.from_triples(facts, time_unit="day")
    rules = by_datalog(mine_rules(kg, MineConfig()))
    r = rules["protest_against(X,Y) <- threaten(Y,X)"]
    assert (r.support, r.confidence, r.head_coverage) == (70, pytest.approx(0.7), 1.0)
    assert not [d for d in rules if "praise" in d]


# --- brute-force reference -------------------------------------------------------------------


def _reference(kg: FactTable, temporal: bool, strict: bool = True, max_length: int = 2):
    """Naive miner with every measure as defined in rulerag.rules.mine (no thresholds)."""
    R = kg.num_relations
    times: dict[tuple[int, int, int], set[int]] = {}  # directed edge (a, b, d) -> times
    for i in range(len(kg)):
        s, r, o = int(kg.subjects[i]), int(kg.relation_ids[i]), int(kg.objects[i])
        if s == o:
            continue
        t = int(kg.times[i]) if temporal else 0
        times.setdefault((s, o, r), set()).add(t)
        times.setdefault((o, s, r + R), set()).add(t)
    out_edges: dict[int, list[tuple[int, int]]] = {}
    for (a, b, d) in times:
        out_edges.setdefault(a, []).append((b, d))

    def completion(body):  # {(x, y): earliest completion time}
        comp: dict[tuple[int, int], int] = {}
        if len(body) == 1:
            for (a, b, d), ts in times.items():
                if d == body[0]:
                    comp[(a, b)] = min(ts)
            return comp
        for (x, z, d), ts1 in times.items():
            if d != body[0]:
                continue
            for (y, d2) in out_edges.get(z, []):
                if d2 != body[1] or y == x:
                    continue
                later = [t2 for t2 in times[(z, y, d2)] if t2 >= min(ts1)]
                if later:
                    comp[(x, y)] = min(comp.get((x, y), later[0]), min(later))
        return comp

    bodies = [(d,) for d in range(2 * R)]
    if max_length == 2:
        bodies += list(itertools.product(range(2 * R), repeat=2))
    result = {}
    for h in range(R):
        head = {(a, b): ts for (a, b, d), ts in times.items() if d == h}
        subjects = {a for a, _ in head}
        n_head = sum(len(ts) for ts in head.values()) if temporal else len(head)
        for body in bodies:
            if body == (h,) and not temporal:  # static tautology; temporal keeps recurrence
                continue
            comp = completion(body)
            if not comp:
                continue
            if temporal:
                def after(ts, c):
                    return [t for t in ts if (t > c if strict else t >= c)]

                support = sum(len(after(head.get(p, ()), c)) for p, c in comp.items())
                conf = sum(bool(after(head.get(p, ()), c)) for p, c in comp.items()) / len(comp)
                pca = None
            else:
                support = len(set(comp) & set(head))
                conf = support / len(comp)
                pca_body = sum(1 for (x, _) in comp if x in subjects)
                pca = support / pca_body if pca_body else None
            if support:
                result[(h, body)] = (support, conf, support / n_head, pca)
    return result


def test_temporal_mining_finds_recurrence():
    facts = [("a", "consult", "b", t) for t in (1, 5, 9)] + [("c", "consult", "d", t) for t in (2, 6)] + [("e", "consult", "f", 3)]
    kg = FactTable.from_triples(facts, time_unit="year")
    rules = {r.datalog: r for r in mine_rules(kg, MineConfig(min_support=1, min_pairs=1, max_length=1))}
    rec = rules["consult(X,Y) <- consult(X,Y)"]
    # head facts with an earlier occurrence of the same pair: (a,b,5), (a,b,9), (c,d,6)
    assert rec.support == 3
    # body pairs followed by a later head: (a,b), (c,d) of 3 pairs
    assert rec.confidence == pytest.approx(2 / 3)
    static = {r.datalog for r in mine_rules(kg, MineConfig(min_support=1, min_pairs=1, max_length=1, temporal=False))}
    assert "consult(X,Y) <- consult(X,Y)" not in static


def _key(kg: FactTable, rule: Rule):
    names = kg.relations
    R = len(names)

    def d(atom: Atom, u: str) -> int:
        return names.index(atom.relation) + (0 if atom.subject == u else R)

    body = (d(rule.body[0], "X"),) if rule.length == 1 else (d(rule.body[0], "X"), d(rule.body[1], "Z"))
    return names.index(rule.head.relation), body


def _random_kg(seed: int, temporal: bool, n_ent: int = 9, n_rel: int = 3, n_facts: int = 45) -> FactTable:
    rng = np.random.default_rng(seed)
    facts = []
    for _ in range(n_facts):
        s, o = rng.integers(0, n_ent, size=2)  # self-loops and duplicates included on purpose
        fact = (f"e{s}", f"r{rng.integers(0, n_rel)}", f"e{o}")
        facts.append(fact + (int(rng.integers(0, 6)),) if temporal else fact)
    return FactTable.from_triples(facts, time_unit="day" if temporal else None)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["static", "strict", "loose"])
def test_matches_brute_force(seed, mode):
    temporal = mode != "static"
    kg = _random_kg(seed, temporal)
    cfg = MineConfig(strict=mode != "loose", chunk_rows=1000, **ALL)  # tiny chunks: exercises chunking
    want = _reference(kg, temporal, strict=mode != "loose")
    got = {_key(kg, r): r for r in mine_rules(kg, cfg)}
    assert set(got) == set(want)
    for key, (support, conf, hc, pca) in want.items():
        r = got[key]
        assert r.support == support, r.datalog
        assert r.confidence == pytest.approx(conf), r.datalog
        assert r.head_coverage == pytest.approx(hc), r.datalog
        assert (r.pca_confidence is None) if pca is None else (r.pca_confidence == pytest.approx(pca)), r.datalog


@pytest.mark.parametrize("mode", ["static", "strict"])
def test_matches_brute_force_with_many_chunks(mode):
    temporal = mode != "static"
    kg = _random_kg(11, temporal, n_ent=40, n_rel=3, n_facts=700)
    want = _reference(kg, temporal)
    got = {_key(kg, r): r for r in mine_rules(kg, MineConfig(chunk_rows=1000, **ALL))}
    assert set(got) == set(want)
    for key, (support, conf, hc, pca) in want.items():
        r = got[key]
        assert (r.support, r.confidence, r.head_coverage) == (support, pytest.approx(conf), pytest.approx(hc))
        assert (r.pca_confidence is None) if pca is None else (r.pca_confidence == pytest.approx(pca))


def test_lower_bound_pruning_drops_only_low_confidence_bodies():
    # a hub z with 30 x's and 30 y's: the body r(X,Z), r(Y,Z) has >= 870 pairs; 2 head facts -> conf < 0.1
    facts = [(f"x{i}", "r", "hub") for i in range(30)] + [("x0", "h", "x1"), ("x2", "h", "x3")]
    kg = FactTable.from_triples(facts)
    assert not mine_rules(kg, MineConfig(min_support=1, min_head_coverage=0.0, head_relations=["h"]))
    r = by_datalog(mine_rules(kg, MineConfig(**ALL)))["h(X,Y) <- r(X,Z), r(Y,Z)"]
    assert (r.support, r.confidence) == (2, pytest.approx(2 / 870))


# --- output and config -----------------------------------------------------------------------


def test_mine_to_file_roundtrip(planted, tmp_path):
    out = tmp_path / "rules.jsonl"
    n = mine_to_file(planted, out, MineConfig(max_length=1))
    loaded = load_rules(out)
    assert n == len(loaded) == len(mine_rules(planted, MineConfig(max_length=1)))
    first = json.loads(out.read_text().splitlines()[0])
    assert {"head", "body", "confidence", "support", "head_coverage", "pca_confidence"} <= set(first)
    with pytest.raises(ValueError, match="jsonl"):
        mine_to_file(planted, tmp_path / "rules.txt")


def test_empty_and_progress(planted):
    empty = FactTable.from_triples([("a", "r", "b")]).select(np.zeros(1, bool))
    assert mine_rules(empty) == []
    assert mine_rules(FactTable.from_triples([("a", "r", "a"), ("b", "s", "b")])) == []  # only self-loops
    assert mine_rules(FactTable.from_triples([("a", "r", "a", 1), ("b", "s", "b", 2)], time_unit="year")) == []
    assert mine_rules(planted, MineConfig(max_length=1), progress=True)


@pytest.mark.parametrize("bad", [{"max_length": 3}, {"min_support": 0}, {"min_confidence": 1.5},
                                 {"min_head_coverage": -0.1}, {"max_rules_per_head": 0},
                                 {"min_pairs": 0}])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        MineConfig(**bad)


def test_temporal_config_needs_times(planted):
    with pytest.raises(ValueError, match="times"):
        mine_rules(planted, MineConfig(temporal=True))


def test_per_head_cap_ranks_by_support_or_confidence():
    # head h: b1 predicts it on 2 of 2 pairs (conf 1.0, support 2); b2 on 6 of 10 pairs (conf 0.6, support 6)
    facts = [(f"x{i}", "b1", f"y{i}") for i in range(2)] + [(f"x{i}", "h", f"y{i}") for i in range(2)]
    facts += [(f"u{i}", "b2", f"v{i}") for i in range(10)] + [(f"u{i}", "h", f"v{i}") for i in range(6)]
    kg = FactTable.from_triples(facts)
    cfg = dict(max_length=1, min_support=1, min_pairs=1, head_relations=["h"], max_rules_per_head=1)
    by_support = mine_rules(kg, MineConfig(**cfg))
    by_conf = mine_rules(kg, MineConfig(**cfg, rank_by="confidence"))
    assert [r.datalog for r in by_support] == ["h(X,Y) <- b2(X,Y)"]
    assert [r.datalog for r in by_conf] == ["h(X,Y) <- b1(X,Y)"]
    with pytest.raises(ValueError, match="rank_by"):
        MineConfig(rank_by="luck")
