"""Partial or corrupt fine-tuned model directories are refused, each with a message naming the
problem and the fix: by the embedding resolver (Encoder, `rulerag index build`), by verification
against the completion marker, and on the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rulerag.embedding import resolve_model_path
from rulerag.checkpoint import (
    CARD_TAG,
    MARKER,
    RETRIEVER,
    CheckpointError,
    check_safetensors,
    fingerprint,
    validate_model_dir,
    verify_model_dir,
    write_marker,
)
from tests.test_finetune_retriever import build_tiny_encoder


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A complete fine-tuned directory: a tiny encoder with our card and, last, the marker."""
    out = build_tiny_encoder(tmp_path_factory.mktemp("ck") / "good")
    (out / "README.md").write_text(f"---\ntags:\n  - {CARD_TAG}\n---\n# toy\n")
    write_marker(out, RETRIEVER, "tiny-base", {"training": {"best_epoch": 1}})
    return out


@pytest.fixture
def copy(good, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(good, target)
    return target


def test_a_complete_directory_is_accepted(good):
    assert resolve_model_path(str(good)) == good
    info = verify_model_dir(good)
    assert info.kind == RETRIEVER and info.base_model == "tiny-base"
    assert json.loads((good / MARKER).read_text())["fingerprint"] == fingerprint(good)


def test_missing_weights_are_refused(copy):
    (copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"has no weights file \(model.safetensors or pytorch_model.bin\): the checkpoint is partial\. Fix: re-run `rulerag finetune retriever"):
        resolve_model_path(str(copy))


def test_truncated_weights_are_refused(copy):
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors is truncated or corrupt: its header accounts for \d+ bytes, the file has \d+"):
        check_safetensors(weights)
    (copy / MARKER).unlink()
    (copy / "README.md").unlink()  # even without our marker, a truncated weights file is refused
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        resolve_model_path(str(copy))


def test_bad_config_is_refused(copy):
    (copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json is not valid JSON .*the model configuration \(config.json\) is corrupt\. Fix:"):
        resolve_model_path(str(copy))
    (copy / "config.json").write_text('{"hidden_size": 32}')
    with pytest.raises(CheckpointError, match="has no 'model_type'"):
        resolve_model_path(str(copy))


def test_a_directory_without_the_completion_marker_is_refused(copy, tmp_path):
    (copy / MARKER).unlink()
    with pytest.raises(CheckpointError, match=rf"lacks the completion marker {MARKER}: the fine-tuning did not finish, or the directory was copied partly\. Fix:"):
        resolve_model_path(str(copy))
    # an unrenamed temporary training directory (a killed run) is refused the same way
    tmp_dir = tmp_path / ".toy-ft.abc123.tmp"
    shutil.copytree(copy, tmp_dir)
    (tmp_dir / "README.md").unlink()
    with pytest.raises(CheckpointError, match="lacks the completion marker"):
        validate_model_dir(tmp_dir)


def test_files_that_differ_from_the_marker_are_refused(copy):
    (copy / "modules.json").write_text((copy / "modules.json").read_text() + "  ")
    with pytest.raises(CheckpointError, match=r"modules.json has \d+ bytes but the completion marker recorded \d+"):
        resolve_model_path(str(copy))


def test_same_size_corruption_is_caught_by_verification(copy):
    vocab = copy / "tokenizer.json"
    data = bytearray(vocab.read_bytes())
    data[-3] = ord("X") if data[-3] != ord("X") else ord("Y")
    vocab.write_bytes(bytes(data))
    validate_model_dir(copy)  # sizes still match: the cheap check passes
    with pytest.raises(CheckpointError, match=rf"tokenizer.json does not match its SHA-256 in {MARKER}"):
        verify_model_dir(copy)


def test_a_missing_module_directory_is_refused(copy):
    shutil.rmtree(copy / "1_Pooling")
    with pytest.raises(CheckpointError, match="missing module directory"):
        resolve_model_path(str(copy))


def test_plain_model_directories_need_no_marker(tmp_path):
    plain = build_tiny_encoder(tmp_path / "plain")
    assert validate_model_dir(plain).kind == "model"
    assert resolve_model_path(str(plain)) == plain


def test_cli_refuses_a_partial_checkpoint_with_the_fix(copy, tmp_path):
    from typer.testing import CliRunner

    from rulerag.cli import app
    from rulerag.errors import RuleRAGError

    (copy / "model.safetensors").unlink()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "1", "contents": "Norland make a visit Tarvik."}\n')
    res = CliRunner().invoke(app, ["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--embedding-model", str(copy), "-q"])
    assert isinstance(res.exception, RuleRAGError) and "the checkpoint is partial" in str(res.exception)
    assert not (tmp_path / "idx").exists()
    res = CliRunner().invoke(app, ["finetune", "check", str(copy)])
    assert isinstance(res.exception, CheckpointError) and "no weights file" in str(res.exception)
