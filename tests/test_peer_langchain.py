"""benchmarks/peer_langchain.py end to end on a tiny benchmark made from the demo world.

Needs the `bench` extra (langchain-community, rank-bm25) and the packaged embedding model."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import orjson
import pytest

from rulerag.demo import DEMO_CORPUS, DEMO_RULES
from rulerag.retrieval.index import build_index

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("langchain_community") is None or importlib.util.find_spec("rank_bm25") is None,
                       reason="the LangChain peer needs the bench extra: pip install -e '.[bench]'"),
    pytest.mark.integration,
]

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    {"id": "q1", "question": "Which country is Alice Marlow a citizen of?", "golden_answers": ["Norland"]},
    {"id": "q2", "question": "Where is Karsland Rail headquartered?", "golden_answers": ["Karsland"]},
    {"id": "q3", "question": "Whom is Jonas Brandt married to?", "golden_answers": ["Nobody In Particular"]},
]


@pytest.fixture(scope="module")
def peer_module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import peer_langchain
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return peer_langchain


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-bench")
    (root / "questions.jsonl").write_bytes(b"".join(orjson.dumps(q) + b"\n" for q in QUESTIONS))
    shutil.copy(DEMO_RULES, root / "rules.jsonl")
    build_index(DEMO_CORPUS, root / "index", progress=False)
    return root


def test_peer_benchmark_runs_both_systems_on_the_same_queries(peer_module, bench, tmp_path):
    result = peer_module.main(["--bench", str(bench), "--limit", "0", "--warmup", "0", "--batch-size", "2", "--out", str(tmp_path),
                                "--bm25-variants", "lucene,robertson"])
    assert result["questions"] == 3
    assert result["queries"] > 3  # the demo rules add rule queries (main() exits when the two sides' queries differ)
    assert result["embedding_max_abs_diff"] < 1e-5  # the peer's HuggingFaceEmbeddings = our encoder
    rows = result["rows"]
    assert {"rulerag_batched", "rulerag_single", "langchain"} <= set(rows)  # + "rulerag_defaults" when the defaults differ
    assert rows["rulerag_batched"]["recall"] == rows["rulerag_single"]["recall"]
    assert 0 < rows["rulerag_batched"]["recall"] < 1  # q3's gold answer is nowhere in the corpus
    saved = json.loads((tmp_path / "peer_langchain.json").read_text())
    assert saved["rows"]["langchain"]["recall"] == rows["langchain"]["recall"]
    # the variant rerun rebuilds BM25 in memory; its lucene row must reproduce the stored index's run
    variants = result["bm25_variants"]
    assert set(variants) == {"lucene", "robertson"}
    assert variants["lucene"]["recall"] == rows["rulerag_batched"]["recall"]
    assert 0 <= variants["robertson"]["recall"] <= 1
    md = (tmp_path / "peer_langchain.md").read_text()
    assert "| LangChain EnsembleRetriever" in md and "peer_langchain.py --bench" in md
    assert "| robertson |" in md


def test_peer_dense_side_searches_our_vectors(peer_module, bench):
    from rulerag.config import Settings
    from rulerag.retrieval.index import load_index
    from rulerag.rules import RuleStore

    index = load_index(bench / "index")
    peer = peer_module.LangChainPeer(index, RuleStore.from_file(bench / "rules.jsonl"), Settings(), depth=10)
    encoder = index.encoder()
    for q in QUESTIONS:
        ours = [h.pos for h in index.dense.search(encoder.encode([q["question"]]), 10)[0]]
        theirs = [d.metadata["pos"] for d in peer.dense.invoke(q["question"])]
        assert theirs == ours
