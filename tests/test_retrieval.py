"""Retrieval: fusion maths, BM25 / dense / hybrid rankings, rule-guided retrieval, index directories."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rulerag.config import FaissIndexType, IndexSettings, MergePolicy, Mode, RetrievalSettings, RetrieverKind, load_settings
from rulerag.corpus import Document, write_corpus
from rulerag.errors import ConfigError, IndexLoadError
from rulerag.retrieval.bm25 import BM25Index
from rulerag.retrieval.dense import DenseIndex, gpu_count
from rulerag.retrieval.fusion import round_robin, rrf, weighted_sum
from rulerag.retrieval.guided import RuleGuidedRetriever
from rulerag.retrieval.hits import Hit
from rulerag.retrieval.index import build_index, load_index, read_manifest
from rulerag.retrieval.search import Searcher
from rulerag.rules import RuleStore, parse_rule
from tests.fakes import HashEncoder

CORPUS = [
    "Alice Marlow lives in Tarvik.",
    "Alice Marlow works for Karsland Rail.",
    "Alice Marlow visited Dravport.",
    "Alice Marlow born in Norland.",
    "Alicia Marlow citizen of Karsland.",
    "Bram Teller citizen of Estova.",
    "Tarvik located in Norland.",
    "Karsland Rail headquartered in Ulmen.",
    "Cora Novak born in Ostria.",
    "Cora Novak citizen of Ostria.",
]


# ---------------------------------------------------------------- fusion


def test_rrf_matches_hand_computation():
    a = [Hit(1, 9.0), Hit(2, 5.0)]
    b = [Hit(2, 0.9), Hit(3, 0.8)]
    fused = {h.pos: h.score for h in rrf([a, b], rrf_k=60)}
    assert fused[2] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1] == pytest.approx(1 / 61)
    assert fused[3] == pytest.approx(1 / 62)
    weighted = {h.pos: h.score for h in rrf([a, b], rrf_k=0, weights=[2.0, 1.0])}
    assert weighted[1] == pytest.approx(2.0)
    assert weighted[2] == pytest.approx(2.0 / 2 + 1.0)


def test_weighted_sum_normalises_each_list():
    a = [Hit(1, 10.0), Hit(2, 5.0), Hit(3, 0.0)]
    b = [Hit(3, 0.9), Hit(1, 0.1)]
    fused = {h.pos: h.score for h in weighted_sum([a, b], weights=[0.5, 0.5])}
    assert fused[1] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert fused[2] == pytest.approx(0.5 * 0.5)
    assert fused[3] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)


def test_round_robin_interleaves_and_dedupes():
    a = [Hit(1, 3), Hit(2, 2), Hit(3, 1)]
    b = [Hit(2, 9), Hit(4, 8)]
    c = [Hit(5, 1)]
    merged = round_robin([a, b, c])
    assert [h.pos for h in merged] == [1, 2, 5, 4, 3]
    assert [h.score for h in merged] == [1.0, 0.5, 1 / 3, 0.25, 0.2]


def test_fusion_rejects_wrong_weight_count():
    with pytest.raises(ValueError, match="2 weights for 1 lists"):
        rrf([[Hit(1, 1.0)]], weights=[1.0, 2.0])


# ---------------------------------------------------------------- first-stage search


@pytest.fixture(scope="module")
def encoder():
    return HashEncoder()


@pytest.fixture(scope="module")
def searcher(encoder):
    bm25 = BM25Index.build(CORPUS)
    dense = DenseIndex.build(encoder.encode(CORPUS))
    return Searcher(bm25, dense, encoder, RetrievalSettings(depth=10))


def test_bm25_ranks_the_document_with_the_rare_terms_first(searcher):
    hits = searcher.search_many(["Where is Karsland Rail headquartered?"], retriever="bm25")[0]
    assert hits[0].pos == 7
    assert all(h.score > 0 for h in hits)
    assert searcher.search_many(["zebra quantum"], retriever="bm25") == [[]]


def test_dense_exact_search_returns_cosine_order(searcher, encoder):
    hits = searcher.search_many([CORPUS[5]], retriever="dense")[0]
    assert hits[0].pos == 5
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_fuses_both_lists(searcher):
    sparse = searcher.search_many(["Tarvik located Norland"], retriever="bm25")[0]
    dense = searcher.search_many(["Tarvik located Norland"], retriever="dense")[0]
    hybrid = searcher.search_many(["Tarvik located Norland"], retriever="hybrid")[0]
    assert hybrid[0].pos == 6
    expected = rrf([sparse, dense], rrf_k=60, weights=[0.5, 0.5])
    assert [h.pos for h in hybrid] == [h.pos for h in expected][: len(hybrid)]


@pytest.mark.parametrize("kind", [FaissIndexType.ivf, FaissIndexType.hnsw])
def test_approximate_faiss_indexes_find_exact_neighbours(kind):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(400, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    settings = IndexSettings(faiss_type=kind, ivf_nlist=8, ivf_nprobe=8)
    index = DenseIndex.build(vecs, settings)
    hits = index.search(vecs[:20], depth=1)
    assert [h[0].pos for h in hits] == list(range(20))


def test_gpu_policy_without_a_gpu_is_explicit():
    vecs = np.eye(4, dtype=np.float32)
    if gpu_count() > 0:
        pytest.skip("a GPU is present: the no-GPU behaviour cannot be observed")
    assert not DenseIndex.build(vecs, IndexSettings(gpu="auto")).on_gpu
    with pytest.raises(ConfigError, match="index.gpu=always but FAISS sees no GPU"):
        DenseIndex.build(vecs, IndexSettings(gpu="always"))


@pytest.mark.gpu
def test_gpu_index_matches_cpu_search():
    if gpu_count() == 0:
        pytest.skip("no GPU visible to FAISS (install faiss-gpu on a CUDA machine)")
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(2000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cpu = DenseIndex.build(vecs, IndexSettings(gpu="never"))
    gpu = DenseIndex.build(vecs, IndexSettings(gpu="always"))
    assert gpu.on_gpu
    assert [[h.pos for h in row] for row in gpu.search(vecs[:50], 10)] == [[h.pos for h in row] for row in cpu.search(vecs[:50], 10)]


# ---------------------------------------------------------------- rule-guided retrieval


def test_rule_guided_retrieval_finds_the_rule_body_document(searcher):
    rules = RuleStore([parse_rule("[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]")])
    docs = [Document(str(i), t) for i, t in enumerate(CORPUS)]
    settings = RetrievalSettings(k=3, retriever=RetrieverKind.bm25, depth=10)
    retriever = RuleGuidedRetriever(searcher, docs, rules, settings)
    question = "Which country is Alice Marlow a citizen of?"
    plain = retriever.retrieve(question, mode="standard")
    guided = retriever.retrieve(question, mode="rulerag")
    # the question alone prefers the near-namesake's citizenship and Alice's other facts;
    # the rule's body relation (born_in) pulls the birth fact into the top 3
    assert plain.documents[0].contents == "Alicia Marlow citizen of Karsland."
    assert "Alice Marlow born in Norland." not in [d.contents for d in plain.documents]
    assert "Alice Marlow born in Norland." in [d.contents for d in guided.documents]
    assert guided.rules and guided.rules[0].rule.head.relation == "citizen_of"
    assert guided.queries == [question, question + " born in"]
    born = next(d for d in guided.documents if d.contents.startswith("Alice Marlow born"))
    assert any(label.startswith("rule:") for label in born.found_by)
    # structured queries match by head relation, batch results equal single ones
    batch = retriever.retrieve_many([question, question], relations=["citizen_of", None])
    assert [d.id for d in batch[0].documents] == [d.id for d in batch[1].documents] == [d.id for d in guided.documents]


def test_rule_query_style_paper_appends_rule_text(searcher):
    rules = RuleStore([parse_rule("citizen_of(X,Y) <- born_in(X,Y)")])
    docs = [Document(str(i), t) for i, t in enumerate(CORPUS)]
    settings = RetrievalSettings(k=3, retriever=RetrieverKind.bm25, rule_query="rule")
    res = RuleGuidedRetriever(searcher, docs, rules, settings).retrieve("Which country is Alice a citizen of?")
    assert res.queries[1] == "Which country is Alice a citizen of? [Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]"


def test_merge_policies_are_configurable(searcher):
    rules = RuleStore([parse_rule("citizen_of(X,Y) <- born_in(X,Y)"), parse_rule("citizen_of(X,Y) <- lives_in(X,Z), located_in(Z,Y)")])
    docs = [Document(str(i), t) for i, t in enumerate(CORPUS)]
    question = "Which country is Alice Marlow a citizen of?"
    by_policy = {}
    for policy in MergePolicy:
        settings = RetrievalSettings(k=4, retriever=RetrieverKind.bm25, depth=10, merge=policy)
        res = RuleGuidedRetriever(searcher, docs, rules, settings).retrieve(question)
        by_policy[policy] = res
        assert len(res.documents) == 4 and len({d.id for d in res.documents}) == 4
    lists = searcher.search_many(by_policy[MergePolicy.rrf].queries, retriever="bm25", depth=10)
    rr = [str(h.pos) for h in round_robin(lists)][:4]
    assert [d.id for d in by_policy[MergePolicy.round_robin].documents] == rr


def test_standard_mode_never_uses_rules(searcher):
    rules = RuleStore([parse_rule("citizen_of(X,Y) <- born_in(X,Y)")])
    docs = [Document(str(i), t) for i, t in enumerate(CORPUS)]
    res = RuleGuidedRetriever(searcher, docs, rules, RetrievalSettings(k=3, mode=Mode.standard)).retrieve("Which country is Alice a citizen of?")
    assert res.rules == [] and len(res.queries) == 1


# ---------------------------------------------------------------- index directories


@pytest.fixture()
def corpus_file(tmp_path):
    path = tmp_path / "corpus.jsonl"
    write_corpus([Document(f"d{i}", t, {"n": i}) for i, t in enumerate(CORPUS)], path)
    return path


def _build(corpus_file, out, encoder=None, **overrides):
    return build_index(corpus_file, out, load_settings(overrides=overrides), progress=False, encoder=encoder or HashEncoder())


def test_index_round_trip(tmp_path, corpus_file, encoder):
    out = tmp_path / "idx"
    manifest = _build(corpus_file, out)
    assert manifest.num_docs == len(CORPUS) and manifest.embedding_model == "hash-64" and manifest.embedding_dim == 64
    assert set(manifest.files) >= {"docs.jsonl", "dense.faiss"} and any(f.startswith("bm25/") for f in manifest.files)
    assert {"embedding", "bm25", "faiss", "writing"} <= set(manifest.timings)
    assert read_manifest(out).corpus_sha256 == manifest.corpus_sha256
    index = load_index(out)
    assert [d.id for d in index.docs] == [f"d{i}" for i in range(len(CORPUS))]
    assert index.docs[3].metadata == {"n": 3}
    s = Searcher(index.bm25, index.dense, encoder, RetrievalSettings())
    q = ["Where is Karsland Rail headquartered?"]
    fresh = Searcher(BM25Index.build(CORPUS), DenseIndex.build(encoder.encode(CORPUS)), encoder, RetrievalSettings())
    assert s.search_many(q) == fresh.search_many(q)
    assert not list(tmp_path.glob(".idx.*")), "no temporary directory may be left behind"


def test_existing_index_is_not_overwritten_without_flag(tmp_path, corpus_file):
    out = tmp_path / "idx"
    _build(corpus_file, out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        _build(corpus_file, out)
    build_index(corpus_file, out, overwrite=True, progress=False, encoder=HashEncoder())
    assert load_index(out).manifest.num_docs == len(CORPUS)


def test_failed_build_leaves_nothing(tmp_path, corpus_file, monkeypatch):
    def boom(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(DenseIndex, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        _build(corpus_file, tmp_path / "idx")
    assert list(tmp_path.iterdir()) == [corpus_file]


def test_corrupt_or_mismatched_index_is_refused(tmp_path, corpus_file):
    out = tmp_path / "idx"
    _build(corpus_file, out)
    with pytest.raises(IndexLoadError, match="built with embedding model 'hash-64'.*rebuild"):
        load_index(out, embedding_model="all-MiniLM-L6-v2")

    bad = tmp_path / "corrupt"
    shutil.copytree(out, bad)
    with open(bad / "dense.faiss", "r+b") as fh:
        fh.seek(40)
        fh.write(b"\x00garbage\x00")
    with pytest.raises(IndexLoadError, match="dense.faiss does not match its checksum"):
        load_index(bad)
    with pytest.raises(IndexLoadError, match="could not be read"):
        load_index(bad, verify=False)

    missing = tmp_path / "missing"
    shutil.copytree(out, missing)
    (missing / "docs.jsonl").unlink()
    with pytest.raises(IndexLoadError, match="missing docs.jsonl"):
        load_index(missing)

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "manifest.json").write_text('{"format_version": 1', encoding="utf-8")
    with pytest.raises(IndexLoadError, match="manifest.json is corrupt"):
        load_index(broken)

    with pytest.raises(IndexLoadError, match="does not exist"):
        load_index(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexLoadError, match="no manifest.json"):
        load_index(tmp_path / "empty")

    future = tmp_path / "future"
    shutil.copytree(out, future)
    m = json.loads((future / "manifest.json").read_text())
    m["format_version"] = 99
    (future / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexLoadError, match="format 99"):
        load_index(future)


# ---------------------------------------------------------------- retriever options


def _fact_docs():
    facts = [
        ("Alpha", "Consult", "Beta", "2014-01-01"), ("Alpha", "Consult", "Beta", "2014-01-02"), ("Alpha", "Consult", "Beta", "2014-01-03"),
        ("Alpha", "Praise", "Beta", "2014-01-04"), ("Alpha", "Consult", "Gamma", "2014-01-05"), ("Alpha", "Consult", "Delta", "2014-03-01"),
    ]
    return [Document(str(i), f"Time {t} {s} {r} {o}.", {"subject": s, "relation": r, "object": o, "time": t}) for i, (s, r, o, t) in enumerate(facts)]


def test_dedup_collapses_repeated_facts_and_pairs():
    docs = _fact_docs()
    texts = [d.contents for d in docs]
    enc = HashEncoder()
    searcher = Searcher(BM25Index.build(texts), DenseIndex.build(enc.encode(texts)), enc, RetrievalSettings(depth=10))

    def ids(dedup):
        settings = RetrievalSettings(k=10, retriever="bm25", mode="standard", dedup=dedup, depth=10)
        return [d.id for d in RuleGuidedRetriever(searcher, docs, None, settings).retrieve("Alpha consult whom").documents]

    none, fact, pair = ids("none"), ids("fact"), ids("pair")
    assert len(none) == 6
    assert len(fact) == 4 and {"3", "4", "5"} <= set(fact)  # three dated copies of Alpha Consult Beta collapse into one
    assert len(pair) == 3  # Alpha-Beta (any relation), Alpha-Gamma, Alpha-Delta
    assert fact[0] == none[0]  # the best-ranked copy is kept


def test_time_filter_drops_documents_on_or_after_the_question_time():
    docs = _fact_docs()
    texts = [d.contents for d in docs]
    enc = HashEncoder()
    searcher = Searcher(BM25Index.build(texts), DenseIndex.build(enc.encode(texts)), enc, RetrievalSettings(depth=10))
    # dedup off: only the time filter removes documents here
    retriever = RuleGuidedRetriever(searcher, docs, None, RetrievalSettings(k=10, retriever="bm25", mode="standard", dedup="none"))
    kept = retriever.retrieve("Alpha consult whom", time="2014-01-05").documents
    assert {d.metadata["time"] for d in kept} == {"2014-01-01", "2014-01-02", "2014-01-03", "2014-01-04"}
    off = RuleGuidedRetriever(searcher, docs, None,
                              RetrievalSettings(k=10, retriever="bm25", mode="standard", dedup="none", time_filter=False))
    assert len(off.retrieve("Alpha consult whom", time="2014-01-05").documents) == 6


def test_rewrite_rule_query_replaces_the_relation():
    from rulerag.retrieval.guided import rule_query
    from rulerag.rules import RuleMatch

    m = RuleMatch(parse_rule("consult(X,Y) <- make_a_visit(X,Y)"), 1.0, 1.0, None, "")
    assert rule_query("Thailand consult whom on 2014-12-03?", m, "rewrite", "Consult") == "Thailand make a visit whom on 2014-12-03?"
    assert rule_query("Who did Thailand meet?", m, "rewrite") == "Who did Thailand meet? make a visit"


def test_bm25_only_index(tmp_path, corpus_file):
    build_index(corpus_file, tmp_path / "bm25", progress=False, encoder=HashEncoder(), dense=False)
    index = load_index(tmp_path / "bm25")
    assert index.dense is None and index.manifest.embedding_model is None and not (tmp_path / "bm25" / "dense.faiss").exists()
    searcher = Searcher(index.bm25, index.dense, HashEncoder(), RetrievalSettings())
    assert searcher.search_many(["Karsland Rail headquartered"], retriever="bm25")[0][0].pos == 7
    with pytest.raises(ConfigError, match="BM25-only"):
        searcher.search_many(["x"], retriever="hybrid")


def test_query_embedding_cache_encodes_each_text_once():
    enc = HashEncoder()
    s = Searcher(BM25Index.build(CORPUS), DenseIndex.build(enc.encode(CORPUS)), enc, RetrievalSettings(), cache_size=3)
    enc.calls.clear()
    first = s.search_many(["Alice born", "Tarvik"], retriever="dense")
    again = s.search_many(["Tarvik", "Alice born", "Norland"], retriever="dense")
    assert enc.calls == [["Alice born", "Tarvik"], ["Norland"]]
    assert again[0] == first[1] and again[1] == first[0]
    s.search_many(["a1", "a2", "a3"], retriever="dense")  # evicts the oldest entries (size 3)
    assert len(s._cache) == 3


def test_rule_evidence_puts_one_document_per_reasoner_candidate_first():
    from rulerag.config import ReasonerSettings
    from rulerag.rules import Rule, RuleStore, parse_rule

    docs = _fact_docs() + [Document("6", "Time 2014-01-06 Alpha Visit Omega.",
                                    {"subject": "Alpha", "relation": "Visit", "object": "Omega", "time": "2014-01-06"})]
    texts = [d.contents for d in docs]
    enc = HashEncoder()
    searcher = Searcher(BM25Index.build(texts), DenseIndex.build(enc.encode(texts)), enc, RetrievalSettings(depth=10))
    rules = RuleStore([Rule.from_dict({**parse_rule("Consult(X,Y) <- Visit(X,Y)").to_dict(), "confidence": 0.9})])

    def ids(merge, history=0.0):
        settings = RetrievalSettings(k=3, retriever="bm25", mode="rulerag", dedup="pair", rule_evidence=2, evidence_merge=merge)
        retriever = RuleGuidedRetriever(searcher, docs, rules, settings, reasoner=ReasonerSettings(history_weight=history))
        result = retriever.retrieve_many(["Alpha consult whom"], relations=["Consult"], times=["2014-02-01"], subjects=["Alpha"])[0]
        return [(d.id, "reasoner" in d.found_by) for d in result.documents]

    first = ids("first")
    assert first[0] == ("6", True)  # the rule Visit -> Consult proposes Omega; its document leads
    assert ids("interleave")[1] == ("6", True)  # second place: after the retrieved list's best
    with_history = ids("first", history=1.0)
    # history: Beta, consulted three times (recurrence), now leads with its latest Consult document;
    # Omega (rule 0.9 + one Visit) comes second
    assert with_history[:2] == [("2", True), ("6", True)]
