"""RuleRAG-FT for the retriever: contrastive fine-tuning of a sentence-transformers encoder.

Training data: a benchmark's ``finetune_retriever.jsonl``. Each pair gives one example per
supporting document: anchor = question + rule text (``with_rules=False``: the question alone, the
paper's SSFT ablation), positive = the document. The loss is sentence-transformers'
``MultipleNegativesRankingLoss``: every other document in the batch is a negative (batches never
hold the same anchor, document or answer twice), plus ``hard_negatives`` BM25 negatives per
example, mined from the benchmark corpus with :class:`rulerag.retrieval.bm25.BM25Index` and never
containing the answer.

A seeded slice of whole questions is held out. Before training and after every epoch the
:class:`HeldOutRecall` evaluator scores Recall@k of the positives among a candidate pool; training
stops early when the score has not improved for ``patience`` epochs, and the best epoch's weights
are saved. The model directory is written to a temporary sibling and renamed
(:func:`rulerag.io.atomic_dir`), with a model card (README.md) and, last, the completion marker.

Example:
    >>> cfg = RetrieverConfig(bench="/tmp/ruleqa/ruleqa-i", out="models/ruleqa-i-ft", epochs=1, limit=500)  # doctest: +SKIP
    >>> result = train_retriever(cfg)                                                                   # doctest: +SKIP
    >>> result.baseline["recall@10"], result.best["recall@10"]                                         # doctest: +SKIP
    (0.61, 0.74)
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rulerag.config import DEFAULT_EMBEDDING_MODEL
from rulerag.corpus import file_sha256, read_corpus
from rulerag.errors import ConfigError
from rulerag.finetune.card import retriever_card
from rulerag.checkpoint import RETRIEVER, write_marker
from rulerag.finetune.data import (
    RETRIEVER_FILE,
    TrainExample,
    examples_from_pairs,
    limit_groups,
    make_batches,
    mine_hard_negatives,
    read_retriever_pairs,
    split_groups,
)
from rulerag.io import atomic_dir

log = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass
class RetrieverConfig:
    """What ``rulerag finetune retriever`` does; every field has the CLI flag of the same name.

    ``limit``: a seeded sample of about that many pairs (whole questions). ``patience``: stop after
    that many epochs without improvement of ``metric`` on the held-out slice (0: never stop early).
    ``eval_pool``: candidates per held-out evaluation (positives, their hard negatives, then random
    corpus documents up to this size).
    """

    bench: Path
    out: Path
    base: str = DEFAULT_EMBEDDING_MODEL
    with_rules: bool = True
    epochs: int = 1
    batch_size: int = 32
    hard_negatives: int = 1
    limit: int | None = None
    seed: int = 0
    lr: float = 5e-5
    warmup_share: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0
    max_seq_length: int = 128
    eval_share: float = 0.1
    eval_pool: int = 2000
    eval_ks: Sequence[int] = (1, 5, 10)
    metric: str = "recall@10"
    patience: int = 1
    device: str | None = None
    threads: int | None = None  #: torch CPU threads while training (None: torch's default)
    overwrite: bool = False
    progress: bool = True
    corpus: Path | None = None  #: default: BENCH/corpus.jsonl
    pairs: Path | None = None  #: default: BENCH/finetune_retriever.jsonl

    def __post_init__(self) -> None:
        self.bench, self.out = Path(self.bench), Path(self.out)
        self.corpus = Path(self.corpus) if self.corpus else self.bench / "corpus.jsonl"
        self.pairs = Path(self.pairs) if self.pairs else self.bench / RETRIEVER_FILE
        self.eval_ks = tuple(sorted(set(int(k) for k in self.eval_ks)))
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be >= 1")
        if self.batch_size < 2:
            problems.append("batch_size must be >= 2 (in-batch negatives need two rows)")
        if self.hard_negatives < 0:
            problems.append("hard_negatives must be >= 0")
        if self.limit is not None and self.limit < 1:
            problems.append("limit must be >= 1")
        if not 0 <= self.eval_share < 1:
            problems.append("eval_share must be in [0, 1)")
        if self.lr <= 0:
            problems.append("lr must be > 0")
        if self.patience < 0:
            problems.append("patience must be >= 0")
        if self.metric not in [f"recall@{k}" for k in self.eval_ks] + ["mrr@10"]:
            problems.append(f"metric must be one of {', '.join([f'recall@{k}' for k in self.eval_ks] + ['mrr@10'])}")
        if problems:
            raise ConfigError("invalid fine-tuning settings: " + "; ".join(problems))

    def settings(self) -> dict[str, Any]:
        """The settings recorded in the model card and marker (JSON-ready)."""
        d = asdict(self)
        for key in ("bench", "out", "corpus", "pairs"):
            d[key] = str(d[key])
        d["eval_ks"] = list(self.eval_ks)
        d.pop("progress")
        d.pop("overwrite")
        return d


class HeldOutRecall:
    """Recall@k and MRR@10 of the positives among a fixed candidate pool (a callable evaluator).

    ``anchors[i]`` is relevant to the pool documents whose ids are in ``relevant[i]``. Calling it
    with a sentence-transformers model returns ``{"recall@1": .., ..., "mrr@10": ..}``.

    Example:
        >>> ev = HeldOutRecall(["q"], [{"d1"}], ["d0", "d1"], ["x", "y"], ks=(1,))
        >>> ev.score(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0], [1.0, 0.0]]))  # d0 ranks first, d1 second
        {'recall@1': 0.0, 'mrr@10': 0.5}
    """

    def __init__(self, anchors: list[str], relevant: list[set[str]], pool_ids: list[str], pool_texts: list[str],
                 ks: Sequence[int] = (1, 5, 10), batch_size: int = 64, progress: bool = False) -> None:
        self.anchors, self.relevant = anchors, relevant
        self.pool_ids, self.pool_texts = pool_ids, pool_texts
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self.progress = progress

    def __len__(self) -> int:
        return len(self.anchors)

    def score(self, anchor_vecs: np.ndarray, pool_vecs: np.ndarray) -> dict[str, float]:
        """Metrics from unit vectors (rows of ``anchor_vecs`` against rows of ``pool_vecs``)."""
        sims = anchor_vecs @ pool_vecs.T
        depth = min(max(max(self.ks), 10), sims.shape[1])
        top = np.argsort(-sims, axis=1, kind="stable")[:, :depth]
        hits = np.array([[self.pool_ids[j] in rel for j in row] for row, rel in zip(top, self.relevant)], dtype=bool)
        out = {f"recall@{k}": float(hits[:, :k].any(axis=1).mean()) for k in self.ks}
        first = np.where(hits[:, :10].any(axis=1), hits[:, :10].argmax(axis=1) + 1, 0)
        out["mrr@10"] = float(np.mean([1.0 / r if r else 0.0 for r in first]))
        return out

    def __call__(self, model) -> dict[str, float]:
        if not self.anchors:
            return {}
        was_training = model.training
        model.eval()
        try:
            enc = dict(batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
            a = model.encode(self.anchors, show_progress_bar=False, **enc)
            p = model.encode(self.pool_texts, show_progress_bar=self.progress, **enc)
        finally:
            model.train(was_training)
        return self.score(a, p)


class EpochHistory:
    """The held-out scores of a fine-tuning run by epoch (``history[0]``: before training);
    shared by the retriever's and the generator's results."""

    history: list[dict[str, Any]]
    best_epoch: int

    @property
    def baseline(self) -> dict[str, Any]:
        return self.history[0] if self.history else {}

    @property
    def best(self) -> dict[str, Any]:
        return next((h for h in self.history if h["epoch"] == self.best_epoch), {})


@dataclass
class RetrieverResult(EpochHistory):
    """What a fine-tuning run did; :meth:`summary` is what the card and the marker record."""

    config: RetrieverConfig
    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    data: dict[str, Any]
    train_seconds: float
    eval_seconds: float
    total_seconds: float
    environment: dict[str, Any]
    command: str
    finished_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.config.out.name,
            "out": str(self.config.out),
            "settings": self.config.settings(),
            "data": self.data,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best": self.best,
            "baseline": self.baseline,
            "stopped_early": self.stopped_early,
            "train_seconds": round(self.train_seconds, 1),
            "eval_seconds": round(self.eval_seconds, 1),
            "total_seconds": round(self.total_seconds, 1),
            "environment": self.environment,
            "command": self.command,
            "finished_at": self.finished_at,
        }


def environment(device: str) -> dict[str, Any]:
    """Library versions and hardware, for model cards."""
    import importlib.metadata as md

    import torch

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(0)})"
    elif device == "cpu":
        dev = f"CPU ({os.cpu_count()} cores)"
    return {"device": dev, "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": version("transformers"),
            "sentence_transformers": version("sentence-transformers"), "peft": version("peft"), "python": sys.version.split()[0]}


def command_line() -> str:
    """The command that started this process (for the card's reproduce section)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("rulerag", "cli.py")):
        argv[0] = "rulerag"
    elif argv and argv[0].endswith(".py"):
        argv.insert(0, "python")
    return " ".join(shlex.quote(a) for a in argv)


def _improved(new: dict[str, float], old: dict[str, float] | None, metric: str) -> bool:
    if old is None:
        return True
    return (new.get(metric, 0.0), new.get("mrr@10", 0.0)) > (old.get(metric, 0.0), old.get("mrr@10", 0.0))


def _check_inputs(cfg: RetrieverConfig) -> None:
    if cfg.out.exists() and not cfg.overwrite:
        raise FileExistsError(f"{cfg.out} already exists. Fix: choose another --out or pass --overwrite")
    for path, what in ((cfg.pairs, "fine-tuning pairs"), (cfg.corpus, "corpus")):
        if not path.is_file():
            raise ConfigError(f"{path} does not exist ({what}). Fix: pass a benchmark directory built by `rulerag bench build`")


def _build_evaluator(held: list[TrainExample], doc_ids: list[str], doc_texts: list[str], cfg: RetrieverConfig) -> HeldOutRecall:
    relevant: dict[str, set[str]] = {}
    for ex in held:
        relevant.setdefault(ex.anchor, set()).add(ex.positive_id)
    by_text = {t: i for i, t in enumerate(doc_texts)}
    pool: dict[str, str] = {}
    for ex in held:
        pool[ex.positive_id] = ex.positive
    for ex in held:
        for neg in ex.negatives:
            j = by_text.get(neg)
            if j is not None:
                pool.setdefault(doc_ids[j], neg)
    rng = np.random.default_rng(cfg.seed + 1)
    for j in rng.permutation(len(doc_ids)).tolist():
        if len(pool) >= cfg.eval_pool:
            break
        pool.setdefault(doc_ids[j], doc_texts[j])
    anchors = list(relevant)
    return HeldOutRecall(anchors, [relevant[a] for a in anchors], list(pool), list(pool.values()), cfg.eval_ks,
                         progress=cfg.progress)


def train_retriever(cfg: RetrieverConfig) -> RetrieverResult:
    """Fine-tune ``cfg.base`` on ``cfg.bench``'s retriever pairs and save it to ``cfg.out`` (atomically).

    Raises :class:`FileExistsError` for an existing ``out`` without ``overwrite`` (before any
    work), :class:`~rulerag.errors.ConfigError` for bad settings or a missing benchmark file, and
    :class:`~rulerag.errors.InputFormatError` for a malformed pairs file.
    """
    t_start = time.perf_counter()
    _check_inputs(cfg)
    from rulerag.embedding import resolve_model_path
    from rulerag.retrieval.bm25 import BM25Index

    base_path = resolve_model_path(cfg.base)  # validates a local directory before any work

    # ---- data
    pairs = read_retriever_pairs(cfg.pairs)
    keep = limit_groups([p.question for p in pairs], cfg.limit, cfg.seed)
    used = [pairs[i] for i in keep]
    examples = examples_from_pairs(used, cfg.with_rules)
    train_idx, held_idx = split_groups([ex.group for ex in examples], cfg.eval_share, cfg.seed)
    train, held = [examples[i] for i in train_idx], [examples[i] for i in held_idx]
    if not train:
        raise ConfigError(f"no training examples left after holding out {cfg.eval_share:.0%}. Fix: lower --eval-share or raise --limit")
    docs = read_corpus(cfg.corpus)
    doc_ids, doc_texts = [d.id for d in docs], [d.contents for d in docs]
    t = time.perf_counter()
    bm25 = BM25Index.build(doc_texts)
    counts = mine_hard_negatives(train, bm25.search, doc_ids, doc_texts, cfg.hard_negatives, seed=cfg.seed)
    held_counts = mine_hard_negatives(held, bm25.search, doc_ids, doc_texts, max(cfg.hard_negatives, 3), seed=cfg.seed + 7)
    log.info("hard negatives mined in %.1f s: %s (held-out %s)", time.perf_counter() - t, counts, held_counts)
    del bm25
    evaluator = _build_evaluator(held, doc_ids, doc_texts, cfg)
    data = {
        "bench": str(cfg.bench), "file": str(cfg.pairs), "sha256": file_sha256(cfg.pairs), "corpus": str(cfg.corpus),
        "pairs_in_file": len(pairs), "pairs_used": len(used),
        "train_examples": len(train), "train_questions": len({ex.group for ex in train}),
        "eval_examples": len(held), "eval_questions": len({ex.group for ex in held}), "eval_anchors": len(evaluator),
        "eval_pool": len(evaluator.pool_ids), "hard_negatives": counts,
    }

    # ---- model
    import torch

    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, base_path, train, evaluator, data, t_start)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: RetrieverConfig, base_path: Path, train: list[TrainExample], evaluator: HeldOutRecall, data: dict[str, Any],
           t_start: float) -> RetrieverResult:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import batch_to_device
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = SentenceTransformer(str(base_path), device=cfg.device)
    model.max_seq_length = min(int(model.max_seq_length or cfg.max_seq_length), cfg.max_seq_length)
    device = str(model.device)
    loss_fn = MultipleNegativesRankingLoss(model, scale=cfg.scale)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(make_batches(train, cfg.batch_size, np.random.default_rng(cfg.seed)))
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_share * total_steps), total_steps)

    eval_seconds = 0.0
    t = time.perf_counter()
    history: list[dict[str, Any]] = [{"epoch": 0, "train_loss": None, **evaluator(model), "seconds": 0.0}]
    eval_seconds += time.perf_counter() - t
    best_scores: dict[str, float] | None = history[0] if len(evaluator) else None
    best_epoch, best_state, stale, stopped_early = 0, None, 0, False
    train_seconds = 0.0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        batches = make_batches(train, cfg.batch_size, rng)
        losses = []
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not cfg.progress)
        for batch in bar:
            rows = [train[i] for i in batch]
            n_neg = min(len(r.negatives) for r in rows)
            if len(rows) < 2 and n_neg == 0:
                continue  # one row and nothing to rank it against
            columns = [[r.anchor for r in rows], [r.positive for r in rows]] + [[r.negatives[j] for r in rows] for j in range(n_neg)]
            embeddings = [model(batch_to_device(model.preprocess(col), model.device))["sentence_embedding"] for col in columns]
            loss = loss_fn.compute_loss_from_embeddings(embeddings, torch.arange(len(rows), device=model.device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.close()
        train_seconds += time.perf_counter() - t_epoch
        t = time.perf_counter()
        scores = evaluator(model)
        eval_seconds += time.perf_counter() - t
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None, **scores,
               "seconds": round(time.perf_counter() - t_epoch, 1)}
        history.append(row)
        if cfg.progress:
            tqdm.write(f"epoch {epoch}: loss {row['train_loss'] or 0:.4f}, held-out " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        if not scores or _improved(scores, best_scores, cfg.metric):
            best_scores, best_epoch, stale = scores or None, epoch, 0
            if epoch < cfg.epochs:  # more training follows: keep these weights in case it does not help
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience and epoch < cfg.epochs:
                stopped_early = True
                break
    if best_epoch != history[-1]["epoch"]:  # a later epoch was worse: go back to the best weights
        if best_epoch == 0:
            log.warning("no epoch beat the base model on the held-out slice: saving the base weights")
            model = SentenceTransformer(str(base_path), device=cfg.device)
            model.max_seq_length = min(int(model.max_seq_length or cfg.max_seq_length), cfg.max_seq_length)
        else:
            model.load_state_dict(best_state)
    model.eval()

    result = RetrieverResult(cfg, history, best_epoch, stopped_early, data, train_seconds, eval_seconds,
                             time.perf_counter() - t_start, environment(device), command_line())
    with atomic_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        model.save(str(tmp), create_model_card=False)
        result.total_seconds = time.perf_counter() - t_start
        summary = result.summary()
        (tmp / "README.md").write_text(retriever_card(summary), encoding="utf-8")
        write_marker(tmp, RETRIEVER, cfg.base, {"training": summary})
    return result


def evaluate_encoder(
    model: str | Path,
    pairs: Sequence[Any],
    docs: Sequence[Any],
    *,
    with_rules: bool = True,
    ks: Sequence[int] = (1, 5, 10),
    device: str | None = None,
) -> dict[str, float]:
    """Recall@k and MRR@10 of an encoder on retriever pairs, ranking the positives among all ``docs``.

    ``model``: a model name or directory (resolved like any embedding model); ``pairs``:
    :class:`~rulerag.finetune.data.RetrieverPair` objects; ``docs``: corpus
    :class:`~rulerag.corpus.Document` objects (the pool). Useful to compare a base and a fine-tuned
    encoder on the same split.

    Example:
        >>> evaluate_encoder("models/ruleqa-i-ft", read_retriever_pairs("bench/finetune_retriever.jsonl")[:100],
        ...                  read_corpus("bench/corpus.jsonl"))                                     # doctest: +SKIP
        {'recall@1': 0.41, 'recall@5': 0.73, 'recall@10': 0.82, 'mrr@10': 0.55}
    """
    from sentence_transformers import SentenceTransformer

    from rulerag.embedding import resolve_model_path

    examples = examples_from_pairs(pairs, with_rules)
    relevant: dict[str, set[str]] = {}
    for ex in examples:
        relevant.setdefault(ex.anchor, set()).add(ex.positive_id)
    anchors = list(relevant)
    evaluator = HeldOutRecall(anchors, [relevant[a] for a in anchors], [d.id for d in docs], [d.contents for d in docs], ks)
    return evaluator(SentenceTransformer(str(resolve_model_path(str(model))), device=device))
