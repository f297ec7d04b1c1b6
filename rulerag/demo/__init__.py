"""The demo: a small invented world (``kg.tsv``), its corpus, its rules, where its index is built,
and the question it answers. The CLI (``rulerag demo``, the default ``--index``) and the web server
both read these; ``python -m rulerag.demo.make_demo`` regenerates the data.

Example:
    >>> from rulerag.demo import DEMO_QUESTION, demo_rules_for
    >>> DEMO_QUESTION
    'Which country is Alice Marlow a citizen of?'
    >>> demo_rules_for("/some/other/index") is None
    True
"""

from __future__ import annotations

from pathlib import Path

#: The repository checkout holding ``rules/`` and ``indexes/`` (the package's parent directory).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEMO_CORPUS = Path(__file__).resolve().parent / "corpus.jsonl"
DEMO_RULES = REPO_ROOT / "rules" / "demo.jsonl"
DEMO_INDEX = REPO_ROOT / "indexes" / "demo"
DEMO_QUESTION = "Which country is Alice Marlow a citizen of?"


def demo_rules_for(index: str | Path) -> Path | None:
    """The demo rule file when ``index`` is the demo index, else ``None`` (no default rules)."""
    return DEMO_RULES if Path(index).resolve() == DEMO_INDEX.resolve() else None


__all__ = ["DEMO_CORPUS", "DEMO_INDEX", "DEMO_QUESTION", "DEMO_RULES", "REPO_ROOT", "demo_rules_for"]
