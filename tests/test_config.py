"""Settings precedence: defaults < YAML < environment < overrides; clear errors."""

from __future__ import annotations

import pytest

from rulerag.config import MergePolicy, Mode, load_settings
from rulerag.errors import ConfigError


def test_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "rulerag.yaml"
    cfg.write_text("retrieval:\n  k: 7\n  rrf_k: 10\n  merge: rrf\nrules:\n  min_score: 0.5\n")
    monkeypatch.delenv("RULERAG_CONFIG", raising=False)
    assert load_settings().retrieval.k == 5  # default
    s = load_settings(cfg)
    assert (s.retrieval.k, s.retrieval.rrf_k, s.retrieval.merge, s.rules.min_score) == (7, 10, MergePolicy.rrf, 0.5)
    monkeypatch.setenv("RULERAG_RETRIEVAL__K", "9")
    s = load_settings(cfg)
    assert (s.retrieval.k, s.retrieval.rrf_k) == (9, 10)  # env beats YAML, YAML keeps the rest
    s = load_settings(cfg, {"retrieval": {"k": 2, "mode": None}})
    assert s.retrieval.k == 2 and s.retrieval.mode == Mode.rulerag  # overrides beat env; None ignored
    monkeypatch.setenv("RULERAG_CONFIG", str(cfg))
    assert load_settings().retrieval.rrf_k == 10


def test_bad_values_name_the_field_and_options(tmp_path, monkeypatch):
    monkeypatch.delenv("RULERAG_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"retrieval.merge: .*'rrf' or 'round_robin'"):
        load_settings(overrides={"retrieval": {"merge": "zipper"}})
    with pytest.raises(ConfigError, match="retrieval.k"):
        load_settings(overrides={"retrieval": {"k": 0}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: [k: 1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(bad)
    bad.write_text("retrieval:\n  kk: 3\n")
    with pytest.raises(ConfigError, match="retrieval.kk"):
        load_settings(bad)
