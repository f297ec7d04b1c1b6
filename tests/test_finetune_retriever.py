"""RuleRAG-FT retriever: data handling, a real (tiny) fine-tune that must improve recall, indexes
built with the fine-tuned encoder, and the CLI.

The encoder is a tiny random-weight BERT built from a config with the packaged MiniLM tokenizer
(no hub), trained single-threaded (fast and deterministic on a busy CPU).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from rulerag.corpus import read_corpus
from rulerag.errors import ConfigError, IndexLoadError, InputFormatError
from rulerag.checkpoint import MARKER, read_marker
from rulerag.finetune.data import (
    TrainExample,
    contains_answer,
    examples_from_pairs,
    make_batches,
    mine_hard_negatives,
    read_retriever_pairs,
    split_groups,
)

NAMES = ["Norland", "Karsland", "Valdoria", "Dravport", "Tarvik", "Ulmstad", "Brenica", "Corvane", "Elsmark", "Fennow",
         "Galdor", "Hestia", "Istran", "Jorvik", "Kelmar", "Lunara", "Morvia", "Nessia", "Ostrav", "Pellan", "Quarin",
         "Rostel", "Sarnia", "Tellur"]
RULE = "[Entity1, Make a visit, Entity2] leads to [Entity1, Consult, Entity2]"


def build_tiny_encoder(out: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A sentence-transformers directory: tiny random BERT (MiniLM's tokenizer) + mean pooling + normalise."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rulerag.embedding import resolve_model_path

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2")))
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128)
    raw = out.parent / f"{out.name}-hf"
    BertModel(config).save_pretrained(raw)
    tok.save_pretrained(raw)
    model = SentenceTransformer(modules=[Transformer(str(raw), max_seq_length=64), Pooling(hidden, "mean"), Normalize()], device="cpu")
    model.save(str(out), create_model_card=False)
    shutil.rmtree(raw)
    return out


def build_synthetic_bench(out: Path, seed: int = 0) -> Path:
    """A RuleQA-shaped directory: corpus.jsonl and finetune_retriever.jsonl (one question per entity:
    'X consult whom?' with the rule 'visit -> consult'; the positive is X's visit fact; distractors:
    X's other facts and visits *to* X)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    docs, pairs = [], []

    def add(s: str, r: str, o: str, t: str) -> dict:
        docs.append({"id": f"d{len(docs)}", "contents": f"Time {t} {s} {r} {o}.", "subject": s, "relation": r, "object": o, "time": t})
        return docs[-1]

    for i, e in enumerate(NAMES):
        others = [n for n in NAMES if n != e]
        target = rng.choice(others)
        pos = add(e, "Make a visit", target, f"2014-03-{rng.randint(1, 28):02d}")
        for o in rng.sample([x for x in others if x != target], 3):
            add(e, rng.choice(["Criticize", "Sign agreement", "Threaten"]), o, f"2014-0{rng.randint(1, 5)}-{rng.randint(1, 28):02d}")
        add(rng.choice([x for x in others if x != target]), "Make a visit", e, f"2014-04-{rng.randint(1, 28):02d}")
        pairs.append({"id": f"q{i}-r1", "question": f"{e} consult whom on 2014-06-01?", "rule": RULE,
                      "positive_ids": [pos["id"]], "positive_texts": [pos["contents"]], "answer": target})
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (out / "finetune_retriever.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return out


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return build_synthetic_bench(tmp_path_factory.mktemp("bench") / "ruleqa-toy")


@pytest.fixture(scope="module")
def finetuned(tiny_encoder, bench, tmp_path_factory):
    """One epoch of RuleRAG-FT on the synthetic split: (result, recall before, recall after)."""
    import torch

    from rulerag.finetune.retriever import RetrieverConfig, evaluate_encoder, train_retriever

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pairs, docs = read_retriever_pairs(bench / "finetune_retriever.jsonl"), read_corpus(bench / "corpus.jsonl")
        before = evaluate_encoder(tiny_encoder, pairs, docs)
        out = tmp_path_factory.mktemp("models") / "toy-ft"
        result = train_retriever(RetrieverConfig(bench=bench, out=out, base=str(tiny_encoder), epochs=1, batch_size=8, lr=1e-3,
                                                 eval_share=0.2, eval_pool=100, progress=False, threads=1))
        after = evaluate_encoder(out, pairs, docs)
    finally:
        torch.set_num_threads(threads)
    return result, before, after


# ---------------------------------------------------------------------------- data


def test_pairs_are_read_and_checked(bench, tmp_path):
    pairs = read_retriever_pairs(bench / "finetune_retriever.jsonl")
    assert len(pairs) == len(NAMES) and pairs[0].anchor().endswith(RULE) and pairs[0].anchor(with_rules=False).endswith("?")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "q?", "rule": "r", "positive_ids": ["a", "b"], "positive_texts": ["t"], "answer": "A"}\n')
    with pytest.raises(InputFormatError, match=r"bad.jsonl:1: 'positive_ids' must list one id per positive text"):
        read_retriever_pairs(bad)


def test_examples_without_rules_drop_duplicate_questions():
    from rulerag.finetune.data import RetrieverPair

    pairs = [RetrieverPair("a", "Q?", "rule one", ("d1",), ("t1",), "A"), RetrieverPair("b", "Q?", "rule two", ("d1",), ("t1",), "A"),
             RetrieverPair("c", "Q?", "rule three", ("d2",), ("t2",), "A")]
    assert len(examples_from_pairs(pairs, with_rules=True)) == 3
    no_rules = examples_from_pairs(pairs, with_rules=False)
    assert [(e.anchor, e.positive_id) for e in no_rules] == [("Q?", "d1"), ("Q?", "d2")]


def test_held_out_split_keeps_questions_whole():
    groups = [f"q{i // 3}" for i in range(30)]
    train, held = split_groups(groups, 0.2, seed=1)
    assert sorted(train + held) == list(range(30)) and held
    assert not {groups[i] for i in train} & {groups[i] for i in held}


def test_batches_never_repeat_an_anchor_or_document():
    rng = np.random.default_rng(0)
    examples = [TrainExample(f"q{rng.integers(8)}", f"d{i}", f"doc {rng.integers(12)}", f"ans{rng.integers(6)}", "g") for i in range(60)]
    batches = make_batches(examples, 5, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(60))
    for batch in batches:
        keys = [k for i in batch for k in examples[i].keys()]
        assert len(keys) == len(set(keys))


def test_hard_negatives_are_bm25_hits_without_the_answer(bench):
    from rulerag.retrieval.bm25 import BM25Index

    docs = read_corpus(bench / "corpus.jsonl")
    ids, texts = [d.id for d in docs], [d.contents for d in docs]
    examples = examples_from_pairs(read_retriever_pairs(bench / "finetune_retriever.jsonl"), with_rules=True)
    counts = mine_hard_negatives(examples, BM25Index.build(texts).search, ids, texts, 3)
    assert counts["bm25"] > 0.8 * 3 * len(examples)
    for ex in examples:
        assert len(ex.negatives) == 3 and ex.positive not in ex.negatives
        assert not any(contains_answer(n, ex.answer) for n in ex.negatives)
        subject = ex.anchor.split()[0]
        assert any(subject in n for n in ex.negatives)  # BM25 found the question's entity: hard, not random


# ---------------------------------------------------------------------------- training


def test_one_epoch_improves_recall_on_the_split(finetuned):
    result, before, after = finetuned
    assert after["recall@10"] >= before["recall@10"] + 0.15, (before, after)
    assert after["mrr@10"] > before["mrr@10"]
    assert [h["epoch"] for h in result.history] == [0, 1] and result.history[1]["train_loss"] > 0
    assert result.data["eval_questions"] >= 1 and result.data["train_examples"] + result.data["eval_examples"] == len(NAMES)


def test_checkpoint_has_card_marker_and_loads_in_the_encoder(finetuned, tiny_encoder):
    from rulerag.embedding import Encoder
    from rulerag.checkpoint import CARD_TAG, verify_model_dir

    result, _, _ = finetuned
    out = result.config.out
    card = (out / "README.md").read_text()
    assert CARD_TAG in card and "Held-out scores per epoch" in card and "Training time" in card and str(tiny_encoder) in card
    marker = read_marker(out)
    assert marker["kind"] == "retriever" and marker["base_model"] == str(tiny_encoder)
    assert marker["training"]["history"][0]["epoch"] == 0 and "model.safetensors" in marker["files"]
    verify_model_dir(out)  # every file matches its recorded checksum
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temporary directory left behind
    vecs = Encoder(str(out)).encode(["Norland consult whom?"])
    assert vecs.shape == (1, 32) and abs(float(np.linalg.norm(vecs[0])) - 1.0) < 1e-5


def test_benchmark_script_reuses_a_model_only_when_trained_on_the_same_split(finetuned, bench, tmp_path, monkeypatch):
    """benchmarks/finetune_retriever.py resumes with a complete model in --work, but retrains one
    whose fine-tuning file has changed since (e.g. a rebuilt benchmark)."""
    import argparse
    import importlib.util
    from types import SimpleNamespace

    import rulerag.finetune.retriever as ft

    spec = importlib.util.spec_from_file_location("finetune_script", Path(__file__).resolve().parent.parent / "benchmarks" / "finetune_retriever.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result, _, _ = finetuned
    models = tmp_path / "models"
    shutil.copytree(result.config.out, models / "toy-rgft")
    settings = read_marker(result.config.out)["training"]["settings"]
    args = argparse.Namespace(bench=bench, threads=1, quiet=True,
                              **{k: settings[k] for k in ("base", "epochs", "batch_size", "lr", "hard_negatives", "limit", "seed", "eval_pool", "patience")})
    calls = []
    monkeypatch.setattr(ft, "train_retriever", lambda cfg: calls.append(cfg) or SimpleNamespace(summary=lambda: {"retrained": True}))
    path, summary = script.train(args, "toy-rgft", True, models)
    assert calls == [] and path == models / "toy-rgft" and summary["best_epoch"] == result.best_epoch
    changed = tmp_path / "bench2"
    shutil.copytree(bench, changed)
    lines = (changed / "finetune_retriever.jsonl").read_text().splitlines(keepends=True)
    (changed / "finetune_retriever.jsonl").write_text("".join(lines[1:]))
    path, summary = script.train(argparse.Namespace(**{**vars(args), "bench": changed}), "toy-rgft", True, models)
    assert len(calls) == 1 and calls[0].bench == changed and summary == {"retrained": True}


def test_index_built_with_finetuned_encoder_records_and_uses_it(finetuned, bench, tmp_path, monkeypatch):
    from rulerag.config import load_settings
    from rulerag.checkpoint import fingerprint
    from rulerag.retrieval.index import build_index, load_index, read_manifest

    out = finetuned[0].config.out
    settings = load_settings(overrides={"embedding": {"model": str(out)}})
    build_index(bench / "corpus.jsonl", tmp_path / "idx", settings, progress=False)
    manifest = read_manifest(tmp_path / "idx")
    assert manifest.encoder["path"] == str(out.resolve()) and manifest.encoder["fingerprint"] == fingerprint(out)
    assert manifest.encoder["finetuned"] is True and manifest.encoder["base_model"] == finetuned[0].config.base
    index = load_index(tmp_path / "idx")
    assert Path(index.encoder().model_name).resolve() == out.resolve()
    # a relative model path still works from another working directory (the recorded absolute path)
    monkeypatch.chdir(out.parent)
    build_index(bench / "corpus.jsonl", tmp_path / "rel", load_settings(overrides={"embedding": {"model": out.name}}), progress=False)
    monkeypatch.chdir(tmp_path)
    rel = load_index(tmp_path / "rel")
    assert rel.manifest.embedding_model == out.name and Path(rel.encoder().model_name) == out.resolve()


def test_index_refuses_a_changed_encoder(tiny_encoder, bench, tmp_path):
    from rulerag.config import load_settings
    from rulerag.retrieval.index import build_index, load_index

    model = tmp_path / "plain-model"
    shutil.copytree(tiny_encoder, model)
    build_index(bench / "corpus.jsonl", tmp_path / "idx", load_settings(overrides={"embedding": {"model": str(model)}}), progress=False)
    load_index(tmp_path / "idx")
    modules = model / "modules.json"
    modules.write_text(modules.read_text() + "\n")  # any change to the model's files changes its fingerprint
    with pytest.raises(IndexLoadError, match=r"now has fingerprint .* Fix: restore the model the index was built with, or rebuild"):
        load_index(tmp_path / "idx")
    load_index(tmp_path / "idx", verify=False)  # the fingerprint is checked with the file checksums


def test_existing_output_and_bad_settings_are_refused_before_work(bench, tmp_path):
    from rulerag.finetune.retriever import RetrieverConfig, train_retriever

    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_retriever(RetrieverConfig(bench=bench, out=tmp_path / "taken"))
    with pytest.raises(ConfigError, match="batch_size must be >= 2"):
        RetrieverConfig(bench=bench, out=tmp_path / "x", batch_size=1)
    with pytest.raises(ConfigError, match="finetune_retriever.jsonl does not exist"):
        train_retriever(RetrieverConfig(bench=tmp_path, out=tmp_path / "y"))


def test_cli_trains_an_ssft_model_without_rules(tiny_encoder, bench, tmp_path):
    from typer.testing import CliRunner

    from rulerag.cli import app

    out = tmp_path / "ssft"
    res = CliRunner().invoke(app, ["finetune", "retriever", "--bench", str(bench), "--base", str(tiny_encoder), "--out", str(out),
                                   "--no-rules", "--batch-size", "8", "--limit", "12", "--lr", "1e-3", "--eval-pool", "50",
                                   "--hard-negatives", "0", "--threads", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "held-out recall@10" in res.output and "mrr@10" in res.output  # the tie-break is reported with the metric
    marker = json.loads((out / MARKER).read_text())
    settings = marker["training"]["settings"]
    assert settings["with_rules"] is False and settings["limit"] == 12 and marker["training"]["data"]["pairs_used"] == 12
    assert "question only, SSFT" in (out / "README.md").read_text()
    res = CliRunner().invoke(app, ["finetune", "check", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["kind"] == "retriever"


@pytest.mark.integration
@pytest.mark.slow
def test_real_minilm_finetunes_on_ruleqa_i(tmp_path):
    """A short RuleRAG-FT run of the packaged all-MiniLM-L6-v2 on RuleQA-I's real pairs."""
    bench = Path("/tmp/ruleqa/ruleqa-i")
    if not (bench / "finetune_retriever.jsonl").is_file():
        pytest.skip("RuleQA-I is not built at /tmp/ruleqa/ruleqa-i (rulerag bench build ruleqa-i --out /tmp/ruleqa/ruleqa-i)")
    from rulerag.finetune.retriever import RetrieverConfig, train_retriever

    result = train_retriever(RetrieverConfig(bench=bench, out=tmp_path / "ft", limit=40, batch_size=8, eval_share=0.25, eval_pool=200,
                                             progress=False, threads=1))
    assert result.best["recall@10"] >= result.baseline["recall@10"] and (tmp_path / "ft" / MARKER).is_file()


@pytest.mark.parametrize("command, config", [("retriever", "rulerag.finetune.retriever:RetrieverConfig"),
                                             ("generator", "rulerag.finetune.generator:GeneratorConfig")])
def test_cli_defaults_are_the_config_defaults(command, config):
    """`rulerag finetune retriever|generator` and the Python API must train the same model by default."""
    import dataclasses
    import importlib

    import typer

    from rulerag.cli import app

    module, name = config.split(":")
    defaults = {f.name: f.default for f in dataclasses.fields(getattr(importlib.import_module(module), name))
                if f.default is not dataclasses.MISSING}
    cmd = typer.main.get_command(app).commands["finetune"].commands[command]
    shared = {p.name: p.default for p in cmd.params if p.name in defaults}
    assert len(shared) >= 8, sorted(shared)
    assert {k: v for k, v in shared.items() if v != defaults[k]} == {}
