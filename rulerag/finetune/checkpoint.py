"""Moved: model-directory validation, the completion marker and fingerprints live in
:mod:`rulerag.checkpoint` (below the embedding and generation modules that load models), and
``describe_encoder`` in :mod:`rulerag.embedding`. This module keeps the old import path working."""

from rulerag.checkpoint import (  # noqa: F401
    ADAPTER,
    CARD_TAG,
    MARKER,
    MARKER_FORMAT,
    RETRIEVER,
    CheckpointError,
    ModelDirInfo,
    check_safetensors,
    file_table,
    fingerprint,
    read_marker,
    validate_model_dir,
    verify_model_dir,
    write_marker,
)
from rulerag.embedding import describe_encoder  # noqa: F401
