"""Model cards (README.md) for fine-tuned retrievers and generator adapters.

A card says what the model was trained on (benchmark, file and its SHA-256, how many examples, the
held-out slice), with which settings, how it scored on the held-out slice per epoch, how long it
took on what hardware, and how to use it. Its YAML header carries the tag
:data:`~rulerag.checkpoint.CARD_TAG`, by which a directory without its completion
marker is recognised as an unfinished rulerag output.

Example:
    >>> print(markdown_table([{"epoch": 0, "recall@10": 0.5}], ["epoch", "recall@10"]))
    | epoch | recall@10 |
    |---|---|
    | 0 | 0.500 |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rulerag.checkpoint import CARD_TAG


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (floats with 3 decimals, missing values as ``-``)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f"{row[c]:.0f}" if c == "seconds" and isinstance(row.get(c), float) else _fmt(row.get(c))
                                for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _settings_table(settings: dict[str, Any]) -> str:
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {k} | {_fmt(v)} |" for k, v in settings.items())])


def _header(kind: str, base: str, library: str, extra_tags: Sequence[str]) -> str:
    tags = "\n".join(f"  - {t}" for t in (CARD_TAG, *extra_tags))
    return f"---\nlibrary_name: {library}\nbase_model: {base}\ntags:\n{tags}\n---\n"


def retriever_card(summary: dict[str, Any]) -> str:
    """The README.md of a fine-tuned retriever from :meth:`RetrieverResult.summary`."""
    data, settings, env = summary["data"], summary["settings"], summary["environment"]
    with_rules = settings["with_rules"]
    ks = [k for k in summary["history"][0] if k.startswith("recall@")] if summary["history"] else []
    best = summary["best"]
    lines = [
        _header("retriever", settings["base"], "sentence-transformers", ["sentence-transformers", "retriever", "rulerag"]),
        f"# {summary['name']}: RuleRAG-FT retriever ({'question + rule' if with_rules else 'question only, SSFT'})",
        "",
        f"Fine-tuned from `{settings['base']}` by `rulerag finetune retriever` on the rule-guided pairs of "
        f"`{data['bench']}`: the input is {'the question followed by a rule text' if with_rules else 'the question alone (the SSFT ablation: no rules)'}, "
        "the target a corpus document that grounds the rule's body for the question's answer. "
        "Loss: MultipleNegativesRankingLoss (in-batch negatives) plus BM25 hard negatives that do not contain the answer.",
        "",
        "## Use",
        "",
        "```bash",
        f"rulerag index build --corpus {data['bench']}/corpus.jsonl --embedding-model {summary['out']} --out indexes/{summary['name']}",
        f"rulerag bench run --bench {data['bench']} --index indexes/{summary['name']} --retrievers dense --out benchmarks/results/{summary['name']}",
        "```",
        "",
        "The index manifest records this directory's path and fingerprint; the index then queries with this model.",
        "",
        "## Data",
        "",
        f"- file: `{data['file']}` (SHA-256 `{data['sha256']}`), {data['pairs_in_file']} pairs"
        + (f"; a seeded sample of {data['pairs_used']} pairs (`--limit {settings['limit']}`)" if settings.get("limit") else ""),
        f"- training examples (anchor, positive document): {data['train_examples']} from {data['train_questions']} questions; "
        f"held out: {data['eval_examples']} examples from {data['eval_questions']} questions (whole questions, seeded)",
        f"- hard negatives per example: {settings['hard_negatives']} ({data['hard_negatives']['bm25']} from BM25 over "
        f"`{data['corpus']}`, {data['hard_negatives']['random']} random fill-ins)",
        f"- held-out evaluation: Recall@k and MRR@10 of the positive documents among a pool of {data['eval_pool']} candidates "
        "(held-out positives, their BM25 hard negatives, random corpus documents)",
        "",
        "## Held-out scores per epoch",
        "",
        "Epoch 0 is the base model before training. The saved weights are those of the best epoch.",
        "",
        markdown_table(summary["history"], ["epoch", "train_loss", *ks, "mrr@10", "seconds"]),
        "",
        (f"Best epoch: {summary['best_epoch']} ({settings['metric']} {_fmt(best.get(settings['metric']))}, base "
         f"{_fmt(summary['baseline'].get(settings['metric']))})" if summary["best_epoch"] else
         "No epoch beat the base model on the held-out slice: the saved weights are the base model's.")
        + (" Stopped early." if summary["stopped_early"] else ""),
        "",
        "## Settings",
        "",
        _settings_table(settings),
        "",
        "## Training time",
        "",
        f"- training {summary['train_seconds']:.0f} s, held-out evaluation {summary['eval_seconds']:.0f} s, "
        f"total {summary['total_seconds']:.0f} s",
        f"- {env['device']}, torch threads: {env['threads']}; torch {env['torch']}, sentence-transformers "
        f"{env['sentence_transformers']}, transformers {env['transformers']}",
        *_finished_and_reproduce(summary),
    ]
    return "\n".join(lines)


def generator_card(summary: dict[str, Any]) -> str:
    """The README.md of a LoRA generator adapter from :meth:`GeneratorResult.summary`."""
    data, settings, env = summary["data"], summary["settings"], summary["environment"]
    lines = [
        _header("generator", settings["base"], "peft", ["peft", "lora", "rulerag"]),
        f"# {summary['name']}: RuleRAG-FT generator adapter (LoRA)",
        "",
        f"A LoRA adapter for `{settings['base']}`, trained by `rulerag finetune generator` on the rule-guided prompts "
        f"of `{data['bench']}` (documents, rules, question -> answer). The loss covers the answer tokens only.",
        "",
        "## Use",
        "",
        "```bash",
        f"rulerag ask \"QUESTION\" --index INDEX --rules RULES --model {summary['out']}",
        "```",
        "",
        "`--model` (or `generation.model`) accepts the adapter directory: the transformers backend loads the base "
        "model recorded here, applies the adapter and merges it. In Python: "
        f"`TransformersBackend(\"{settings['base']}\", adapter=\"{summary['out']}\")`.",
        "",
        "## Data",
        "",
        f"- file: `{data['file']}` (SHA-256 `{data['sha256']}`), {data['examples_in_file']} examples"
        + (f"; a seeded sample of {data['examples_used']} (`--limit {settings['limit']}`)" if settings.get("limit") else ""),
        f"- training: {data['train_examples']} examples; held out: {data['eval_examples']} (seeded)",
        f"- prompt rendering: {data['rendering']}; {data['truncated']} examples truncated from the left to "
        f"{settings['max_length']} tokens",
        "",
        "## Held-out scores per epoch",
        "",
        "Epoch 0 is the base model. loss: mean cross-entropy over answer tokens; token_accuracy: share of answer tokens "
        "predicted right (teacher forcing); answer_accuracy: share of answers with every token right.",
        "",
        markdown_table(summary["history"], ["epoch", "steps", "train_loss", "eval_loss", "token_accuracy", "answer_accuracy", "seconds"]),
        "",
        f"Best epoch: {summary['best_epoch']}" + ("; stopped early." if summary["stopped_early"] else "."),
        "",
        "## Settings",
        "",
        _settings_table(settings),
        "",
        "## Training time",
        "",
        f"- training {summary['train_seconds']:.0f} s, evaluation {summary['eval_seconds']:.0f} s, total {summary['total_seconds']:.0f} s",
        f"- {env['device']}, torch threads: {env['threads']}; torch {env['torch']}, transformers {env['transformers']}, peft {env['peft']}",
        f"- trainable parameters: {summary['trainable_parameters']:,} of {summary['total_parameters']:,}",
        *_finished_and_reproduce(summary),
    ]
    return "\n".join(lines)


def _finished_and_reproduce(summary: dict[str, Any]) -> list[str]:
    """The card's closing lines: when the run finished and the command that reproduces it."""
    return [f"- finished {summary['finished_at']}", "", "## Reproduce", "", "```bash", summary["command"], "```", ""]
