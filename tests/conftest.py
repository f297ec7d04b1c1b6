"""Shared test setup: offline model loading, and a small temporal KG fixture."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX exports of the many throw-away test models go to a per-run directory, not the user's cache
os.environ.setdefault("RULERAG_ONNX_CACHE_DIR", tempfile.mkdtemp(prefix="rulerag-test-onnx-"))

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rulerag.kg import FactTable, KGDataset  # noqa: E402


def _split(facts, n_train, n_valid):
    table = FactTable.from_triples(facts, time_unit="day")
    idx = list(range(len(facts)))

    def pick(lo, hi):
        mask = np.zeros(len(facts), dtype=bool)
        mask[idx[lo:hi]] = True
        return table.select(mask)

    return KGDataset("toy", pick(0, n_train), pick(n_train, n_train + n_valid), pick(n_train + n_valid, len(facts)))


@pytest.fixture(scope="session")
def toy_kg() -> KGDataset:
    """A temporal KG where visits lead to consultations a few days later."""
    rng = random.Random(3)
    countries = [f"Country{i}" for i in range(12)]
    hub = "Country0"  # a popular entity
    facts = []
    for day in range(1, 200):
        a, b = rng.sample(countries, 2)
        if rng.random() < 0.3:
            a = hub
        date = f"2014-{1 + day // 31:02d}-{1 + day % 28:02d}"
        facts.append((a, "Make a visit", b, date))
        later = f"2014-{1 + (day + 20) // 31:02d}-{1 + (day + 20) % 28:02d}"
        facts.append((a, "Consult", b, later))
    facts.sort(key=lambda f: f[3])
    n = len(facts)
    return _split(facts, int(n * 0.7), int(n * 0.1))


