"""RuleRAG-FT: fine-tune the retriever and the generator on a RuleQA benchmark's fine-tuning splits.

- :func:`rulerag.finetune.retriever.train_retriever`: sentence-transformers contrastive training on
  ``finetune_retriever.jsonl`` (question + rule -> supporting document; in-batch negatives plus BM25
  hard negatives), held-out Recall@k every epoch, early stopping, atomic save with a model card;
- :func:`rulerag.finetune.generator.train_generator`: LoRA (peft) supervised fine-tuning on
  ``finetune_generator.jsonl`` with the loss on the answer tokens only; saves the adapter;
- :mod:`rulerag.checkpoint` (below this package, shared with the model loaders): the completion
  marker, validation of model directories (partial or corrupt checkpoints are refused) and
  fingerprints recorded in index manifests; re-exported here.

Heavy libraries (torch, sentence-transformers, peft) load only when training starts, so importing
this package is cheap.

Example:
    >>> from rulerag.finetune.retriever import RetrieverConfig, train_retriever
    >>> cfg = RetrieverConfig(bench="/tmp/ruleqa/ruleqa-i", out="models/ruleqa-i-ft", epochs=1)  # doctest: +SKIP
    >>> result = train_retriever(cfg)                                                          # doctest: +SKIP
    >>> result.best["recall@10"]                                                               # doctest: +SKIP
"""

from rulerag.checkpoint import (
    ADAPTER,
    MARKER,
    RETRIEVER,
    CheckpointError,
    fingerprint,
    validate_model_dir,
    verify_model_dir,
)
from rulerag.embedding import describe_encoder

__all__ = [
    "ADAPTER",
    "MARKER",
    "RETRIEVER",
    "CheckpointError",
    "describe_encoder",
    "fingerprint",
    "validate_model_dir",
    "verify_model_dir",
]
