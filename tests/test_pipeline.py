"""The pipeline, the CLI and the LangChain retriever, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from rulerag.cli import app
from rulerag.demo import DEMO_CORPUS, DEMO_QUESTION, DEMO_RULES
from rulerag.config import load_settings
from rulerag.corpus import iter_corpus
from rulerag.generation import FixedBackend
from rulerag.integrations.langchain import RuleRAGRetriever
from rulerag.pipeline import RuleRAG
from rulerag.retrieval.index import build_index, load_index
from rulerag.rules import RuleStore
from tests.fakes import HashEncoder

ARMY_DOC = "Alice Marlow serves in army of Norland."
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- demo data


def test_demo_corpus_is_the_linearised_demo_kg():
    kg = [line.split("\t") for line in (DEMO_CORPUS.parent / "kg.tsv").read_text().splitlines() if not line.startswith("#")]
    docs = list(iter_corpus(DEMO_CORPUS))
    assert 200 <= len(docs) == len(kg)
    assert [(d.metadata["subject"], d.metadata["relation"], d.metadata["object"]) for d in docs] == [tuple(f) for f in kg]
    facts = {tuple(f) for f in kg}
    # the demo's premise: the answer is not stated, the rule body fact is
    assert ("Alice Marlow", "citizen_of", "Norland") not in facts
    assert ("Alice Marlow", "serves_in_army_of", "Norland") in facts
    assert any(d.contents == ARMY_DOC for d in docs)
    rules = RuleStore.from_file(DEMO_RULES)
    assert any(r.body_relations == ("serves_in_army_of",) and r.head.relation == "citizen_of" for r in rules)


# ---------------------------------------------------------------- pipeline with fakes


@pytest.fixture(scope="module")
def fake_rag(tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "demo"
    build_index(DEMO_CORPUS, out, progress=False, encoder=HashEncoder())
    settings = load_settings(overrides={"retrieval": {"retriever": "bm25", "k": 5}})
    return RuleRAG(load_index(out), RuleStore.from_file(DEMO_RULES), settings, generator=FixedBackend(), encoder=HashEncoder())


def test_ask_returns_answer_rules_documents_and_prompt(fake_rag):
    ans = fake_rag.ask(DEMO_QUESTION)
    assert ans.mode.value == "rulerag"
    assert ans.rules and all(m.rule.head.relation == "citizen_of" for m in ans.rules)
    assert len(ans.documents) == 5 and [d.rank for d in ans.documents] == [1, 2, 3, 4, 5]
    assert ARMY_DOC in [d.contents for d in ans.documents]
    assert ans.rules[0].rule.text in ans.prompt.user
    # the fixed backend answers with the first document: the answer is wired from the generator
    assert ans.answer == ans.documents[0].contents.rstrip(".")
    assert set(ans.timings) == {"retrieval_s", "generation_s", "total_s"}
    d = ans.to_dict()
    assert d["rules"][0]["rule"]["text"] == ans.rules[0].rule.text and d["documents"][0]["id"] == ans.documents[0].id


def test_standard_mode_has_no_rules_in_prompt_or_retrieval(fake_rag):
    ans = fake_rag.ask(DEMO_QUESTION, mode="standard")
    assert ans.rules == [] and "leads to" not in ans.prompt.user and ans.prompt.template == "standard"
    assert ARMY_DOC not in [d.contents for d in ans.documents]


def test_batch_retrieval_equals_single(fake_rag):
    qs = [DEMO_QUESTION, "Which language does Cora speak?", "Where does Alice Marlow work?"]
    batch = fake_rag.retrieve_many(qs)
    for q, res in zip(qs, batch):
        single = fake_rag.retrieve(q)
        assert [d.id for d in res.documents] == [d.id for d in single.documents]
        assert [m.rule.id for m in res.rules] == [m.rule.id for m in single.rules]


def test_langchain_retriever_invoke(fake_rag):
    retriever = RuleRAGRetriever(pipeline=fake_rag, k=3)
    docs = retriever.invoke(DEMO_QUESTION)
    assert len(docs) == 3
    assert docs[0].metadata["rank"] == 1 and docs[0].metadata["score"] >= docs[1].metadata["score"]
    assert docs[0].metadata["rules"][0]["rule"]["head"]["relation"] == "citizen_of"
    assert docs[0].page_content == fake_rag.retrieve(DEMO_QUESTION, k=3).documents[0].contents
    assert len(RuleRAGRetriever(pipeline=fake_rag, k=1).invoke(DEMO_QUESTION)) == 1
    with pytest.raises(ValueError):
        RuleRAGRetriever(pipeline=fake_rag, k=0)


# ---------------------------------------------------------------- CLI with the real embedding model


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "demo"
    res = CliRunner().invoke(app, ["index", "build", "--corpus", str(DEMO_CORPUS), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return out


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.integration
def test_cli_index_info_and_retrieve(demo_index):
    runner = CliRunner()
    info = _json(runner.invoke(app, ["index", "info", str(demo_index), "--json"]))
    assert info["num_docs"] == sum(1 for _ in iter_corpus(DEMO_CORPUS))
    assert info["embedding_model"] == "all-MiniLM-L6-v2" and info["embedding_dim"] == 384
    table = runner.invoke(app, ["index", "info", str(demo_index)])
    assert table.exit_code == 0 and "corpus_sha256" in table.stdout

    base = ["retrieve", DEMO_QUESTION, "--index", str(demo_index), "--rules", str(DEMO_RULES), "--json"]
    for retriever in ("bm25", "dense", "hybrid"):
        std = _json(runner.invoke(app, base + ["--mode", "standard", "--retriever", retriever]))
        rag = _json(runner.invoke(app, base + ["--mode", "rulerag", "--retriever", retriever]))
        assert ARMY_DOC not in [d["contents"] for d in std["documents"]], retriever
        assert ARMY_DOC in [d["contents"] for d in rag["documents"]][:3], retriever
        assert rag["rules"][0]["rule"]["text"] == "[Entity1, serves_in_army_of, Entity2] leads to [Entity1, citizen_of, Entity2]"
    assert len(_json(runner.invoke(app, base + ["--k", "2"]))["documents"]) == 2


@pytest.mark.integration
def test_cli_batch_questions_file(demo_index, tmp_path):
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps({"id": f"q{i}", "question": q}) for i, q in enumerate([DEMO_QUESTION, "Which language does Alice Marlow speak?"])) + "\n")
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["retrieve", "--questions", str(qfile), "--index", str(demo_index), "--rules", str(DEMO_RULES), "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [x["id"] for x in lines] == ["q0", "q1"]
    assert ARMY_DOC in [d["contents"] for d in lines[0]["documents"]]
    assert lines[1]["rules"][0]["rule"]["head"]["relation"] == "speaks"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": "ok?"}\n{"id": 2}\n')
    res = CliRunner().invoke(app, ["retrieve", "--questions", str(bad), "--index", str(demo_index), "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code != 0 and "bad.jsonl:2" in str(res.exception)
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.integration
def test_cli_ask_with_fixed_backend(demo_index):
    res = CliRunner().invoke(app, ["ask", DEMO_QUESTION, "--index", str(demo_index), "--rules", str(DEMO_RULES), "--backend", "fixed", "--json"])
    data = _json(res)
    assert data["generator"] == "fixed" and data["answer"] == data["documents"][0]["contents"].rstrip(".")
    assert data["rules"] and data["prompt"]["template"] == "rulerag"
    table = CliRunner().invoke(app, ["ask", DEMO_QUESTION, "--index", str(demo_index), "--rules", str(DEMO_RULES), "--backend", "fixed"])
    assert table.exit_code == 0 and "Rules used" in table.stdout and "Documents" in table.stdout


def _run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rulerag.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300)


def test_cli_user_errors_are_one_line_and_exit_2(tmp_path):
    missing = _run_cli("retrieve", "q?", "--index", str(tmp_path / "none"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    rules = tmp_path / "bad.txt"
    rules.write_text("citizen_of(X,Y) <- born_in(X,Y)\nthis is not a rule\n")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "1", "contents": "a"}\n{"id": "1", "contents": "b"}\n')
    dup = _run_cli("index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"))
    assert dup.returncode == 2 and "c.jsonl:2" in dup.stderr and "duplicate id" in dup.stderr
    assert not (tmp_path / "idx").exists()
    badcfg = _run_cli("config", "show", env={"RULERAG_RETRIEVAL__MERGE": "zipper"})
    assert badcfg.returncode == 2 and "retrieval.merge" in badcfg.stderr


def test_cli_config_show_reflects_layers(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("retrieval:\n  k: 11\n")
    res = CliRunner().invoke(app, ["--config", str(cfg), "config", "show"])
    assert res.exit_code == 0 and json.loads(res.stdout)["retrieval"]["k"] == 11


@pytest.mark.integration
@pytest.mark.slow
def test_demo_answers_correctly_with_the_embedded_generator(tmp_path):
    """README command (1)'s last step: the real embedded generator answers the demo question."""
    res = _run_cli("demo", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(res.stdout)
    assert data["answer"] == "Norland"
    assert data["rules"][0]["rule"]["body"][0]["relation"] == "serves_in_army_of"
    assert ARMY_DOC in [d["contents"] for d in data["documents"]]
