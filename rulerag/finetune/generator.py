"""RuleRAG-FT for the generator: LoRA supervised fine-tuning on rule-guided prompts.

Training data: a benchmark's ``finetune_generator.jsonl`` (``system``, ``prompt``, ``answer``).
Each example is rendered exactly as the transformers backend renders prompts at answer time
(:func:`rulerag.generation.backends.render_prompt`: the tokenizer's chat template when it has one,
else the plain text form), followed by the answer and the end-of-sequence token. The loss covers
the answer tokens only (prompt positions are masked with -100). Over-long prompts are cut from the
left, so the question and the answer are always kept.

Only LoRA adapter weights train (peft); the base model stays frozen. A seeded slice is held out:
before training and after every epoch its answer-token loss and accuracies are measured; training
stops early when the loss has not improved for ``patience`` epochs and the best epoch's adapter is
saved. The adapter directory (``adapter_config.json``, ``adapter_model.safetensors``, the tokenizer,
a model card, and last the completion marker recording the base model) is written atomically.

Load it for generation with ``TransformersBackend(base, adapter=DIR)`` or simply pass the adapter
directory as the model (``--model DIR``): the backend reads the base model from the marker.

Example:
    >>> cfg = GeneratorConfig(bench="/tmp/ruleqa/ruleqa-i", base="smollm2-135m-instruct", out="models/gen-ft",
    ...                       limit=64, epochs=1)                                              # doctest: +SKIP
    >>> train_generator(cfg).best["eval_loss"]                                                 # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rulerag.corpus import file_sha256
from rulerag.errors import ConfigError, GenerationError
from rulerag.finetune.card import generator_card
from rulerag.checkpoint import ADAPTER, write_marker
from rulerag.finetune.data import GENERATOR_FILE, GeneratorExample, limit_groups, read_generator_examples, split_groups
from rulerag.finetune.retriever import EpochHistory, command_line, environment
from rulerag.io import atomic_dir

log = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

IGNORE = -100  #: label of positions without loss (prompt and padding)


@dataclass
class GeneratorConfig:
    """What ``rulerag finetune generator`` does; every field has the CLI flag of the same name.

    ``base``: an embedded model name (:data:`rulerag.generation.models.MODELS`) or a transformers
    model directory. ``batch_size`` examples per forward pass, ``grad_accum`` passes per optimiser
    step. ``max_steps`` stops after that many optimiser steps in all (a smoke run).
    ``target_modules``: LoRA targets (default ``all-linear``).
    """

    bench: Path
    out: Path
    base: str = "qwen2.5-coder-0.5b-instruct"
    epochs: int = 1
    batch_size: int = 2
    grad_accum: int = 4
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_share: float = 0.05
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: Sequence[str] | str | None = None
    max_length: int = 1024
    limit: int | None = None
    max_steps: int | None = None
    eval_share: float = 0.1
    eval_limit: int = 200  #: held-out examples scored per evaluation (at most)
    patience: int = 1
    seed: int = 0
    device: str | None = None
    threads: int | None = None
    overwrite: bool = False
    progress: bool = True
    examples: Path | None = None  #: default: BENCH/finetune_generator.jsonl

    def __post_init__(self) -> None:
        self.bench, self.out = Path(self.bench), Path(self.out)
        self.examples = Path(self.examples) if self.examples else self.bench / GENERATOR_FILE
        problems = []
        for name in ("epochs", "batch_size", "grad_accum", "lora_r", "lora_alpha", "max_length", "eval_limit"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.max_length < 16:
            problems.append("max_length must be >= 16")
        for name in ("limit", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if not 0 <= self.eval_share < 1:
            problems.append("eval_share must be in [0, 1)")
        if self.lr <= 0:
            problems.append("lr must be > 0")
        if not 0 <= self.lora_dropout < 1:
            problems.append("lora_dropout must be in [0, 1)")
        if problems:
            raise ConfigError("invalid fine-tuning settings: " + "; ".join(problems))

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("bench", "out", "examples"):
            d[key] = str(d[key])
        if isinstance(d["target_modules"], (list, tuple)):
            d["target_modules"] = list(d["target_modules"])
        d.pop("progress")
        d.pop("overwrite")
        return d


@dataclass
class Encoded:
    """One tokenised example: ids, and labels with the prompt masked."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool


def encode_example(tokenizer, example: GeneratorExample, max_length: int) -> Encoded:
    """Tokenise ``example`` as the backend renders prompts; labels only on the answer (+ end token).

    Example:
        >>> from transformers import AutoTokenizer                                    # doctest: +SKIP
        >>> enc = encode_example(tok, GeneratorExample("1", "", "Question: X? Answer:", "Norland"), 64)  # doctest: +SKIP
        >>> tok.decode([t for t in enc.labels if t != -100])                          # doctest: +SKIP
        'norland'
    """
    from rulerag.generation.backends import render_prompt
    from rulerag.generation.prompts import Prompt

    text, chat = render_prompt(tokenizer, Prompt(example.system, example.prompt, "finetune"))
    prompt_ids = tokenizer(text, add_special_tokens=not chat)["input_ids"]
    answer = example.answer.strip()
    if not chat and not text.endswith((" ", "\n")):
        answer = " " + answer
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [int(tokenizer.eos_token_id)]
    answer_ids = answer_ids[: max_length // 2]  # an absurdly long answer must not push out the whole prompt
    room = max_length - len(answer_ids)
    truncated = len(prompt_ids) > room
    if truncated:
        prompt_ids = prompt_ids[len(prompt_ids) - room :]
    return Encoded(prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids, truncated)


def collate(batch: Sequence[Encoded], pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def answer_metrics(model, examples: Sequence[Encoded], pad_id: int, batch_size: int) -> dict[str, float]:
    """Held-out ``eval_loss`` (mean over answer tokens), ``token_accuracy`` and ``answer_accuracy``
    (every answer token right), with teacher forcing."""
    import torch

    if not examples:
        return {}
    was_training = model.training
    model.eval()
    total_loss, tokens, right, answers_right = 0.0, 0, 0, 0
    try:
        with torch.inference_mode():
            for start in range(0, len(examples), batch_size):
                batch = collate(examples[start : start + batch_size], pad_id)
                batch = {k: v.to(model.device) for k, v in batch.items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
                labels = batch["labels"][:, 1:]
                mask = labels != IGNORE
                loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
                total_loss += float((loss * mask).sum())
                tokens += int(mask.sum())
                correct = (logits.argmax(-1) == labels) & mask
                right += int(correct.sum())
                answers_right += int(((correct | ~mask).all(dim=1)).sum())
    finally:
        model.train(was_training)
    return {"eval_loss": total_loss / max(tokens, 1), "token_accuracy": right / max(tokens, 1), "answer_accuracy": answers_right / len(examples)}


@dataclass
class GeneratorResult(EpochHistory):
    """What a generator fine-tuning run did; :meth:`summary` feeds the card and the marker."""

    config: GeneratorConfig
    base_ref: str
    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    data: dict[str, Any]
    train_seconds: float
    eval_seconds: float
    total_seconds: float
    trainable_parameters: int
    total_parameters: int
    environment: dict[str, Any]
    command: str
    finished_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def summary(self) -> dict[str, Any]:
        settings = self.config.settings()
        settings["base"] = self.base_ref
        return {
            "name": self.config.out.name, "out": str(self.config.out), "settings": settings, "data": self.data,
            "history": self.history, "best_epoch": self.best_epoch, "best": self.best, "baseline": self.baseline,
            "stopped_early": self.stopped_early, "train_seconds": round(self.train_seconds, 1),
            "eval_seconds": round(self.eval_seconds, 1), "total_seconds": round(self.total_seconds, 1),
            "trainable_parameters": self.trainable_parameters, "total_parameters": self.total_parameters,
            "environment": self.environment, "command": self.command, "finished_at": self.finished_at,
        }


def base_reference(base: str) -> tuple[str, Path]:
    """(what to record as the base model, its directory): an embedded name stays a name (it
    resolves on any machine); a directory is recorded as an absolute path. GGUF files are refused."""
    from rulerag.generation.models import MODELS, resolve_generator

    if base in MODELS:
        return base, resolve_generator(base)
    path = Path(base).expanduser()
    if base.lower().endswith(".gguf"):
        raise GenerationError(
            f"{base} is a GGUF file, which cannot be fine-tuned directly. Fix: use an embedded model name "
            f"({', '.join(sorted(MODELS))}; rulerag caches a dequantised copy) or a transformers model directory"
        )
    if not (path / "config.json").is_file():
        raise GenerationError(
            f"base model {base!r} is neither an embedded model name ({', '.join(sorted(MODELS))}) nor a transformers "
            "model directory (with config.json). Fix: pass one of those as --base"
        )
    return str(path.resolve()), path


def train_generator(cfg: GeneratorConfig) -> GeneratorResult:
    """LoRA-fine-tune ``cfg.base`` on the benchmark's generator examples; save the adapter to ``cfg.out``."""
    t_start = time.perf_counter()
    if cfg.out.exists() and not cfg.overwrite:
        raise FileExistsError(f"{cfg.out} already exists. Fix: choose another --out or pass --overwrite")
    if not cfg.examples.is_file():
        raise ConfigError(f"{cfg.examples} does not exist. Fix: pass a benchmark directory built by `rulerag bench build`")
    try:
        import peft  # noqa: F401
    except ImportError as exc:
        raise ConfigError("generator fine-tuning needs peft. Fix: pip install 'rulerag[finetune]' (or pip install --no-deps peft)") from exc
    examples = read_generator_examples(cfg.examples)
    keep = limit_groups([e.id for e in examples], cfg.limit, cfg.seed)
    used = [examples[i] for i in keep]
    base_ref, base_dir = base_reference(cfg.base)

    import torch

    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, used, len(examples), base_ref, base_dir, t_start)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: GeneratorConfig, used: list[GeneratorExample], n_file: int, base_ref: str, base_dir: Path,
           t_start: float) -> GeneratorResult:
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    from rulerag.generation.backends import quiet_peft

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    encoded = [encode_example(tokenizer, ex, cfg.max_length) for ex in used]
    train_idx, held_idx = split_groups([ex.id for ex in used], cfg.eval_share, cfg.seed)
    train = [encoded[i] for i in train_idx]
    held = [encoded[i] for i in held_idx][: cfg.eval_limit]
    data = {
        "bench": str(cfg.bench), "file": str(cfg.examples), "sha256": file_sha256(cfg.examples),
        "examples_in_file": n_file, "examples_used": len(used), "train_examples": len(train), "eval_examples": len(held),
        "truncated": sum(e.truncated for e in encoded),
        "rendering": "chat template" if getattr(tokenizer, "chat_template", None) else "plain text (no chat template)",
        "prompt_versions": sorted({str(v) for v in _prompt_versions(cfg.examples)}),
    }

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=list(cfg.target_modules) if isinstance(cfg.target_modules, (list, tuple)) else (cfg.target_modules or "all-linear"))
    with quiet_peft():
        model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = -(-len(train) // (cfg.batch_size * cfg.grad_accum))
    total_steps = min(per_epoch * cfg.epochs, cfg.max_steps or per_epoch * cfg.epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_share * total_steps), max(total_steps, 1))

    eval_seconds = 0.0
    t = time.perf_counter()
    history: list[dict[str, Any]] = [{"epoch": 0, "steps": 0, "train_loss": None, **answer_metrics(model, held, pad_id, cfg.batch_size), "seconds": 0.0}]
    eval_seconds += time.perf_counter() - t
    best_loss = history[0].get("eval_loss")
    best_state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}  # epoch 0: a no-op adapter
    best_epoch, stale, stopped_early, steps = 0, 0, False, 0
    train_seconds = 0.0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        order = rng.permutation(len(train)).tolist()
        micro = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        losses: list[float] = []
        bar = tqdm(total=min(per_epoch, (cfg.max_steps or per_epoch * cfg.epochs) - steps), desc=f"epoch {epoch}/{cfg.epochs}",
                   unit="step", disable=not cfg.progress)
        window: list[float] = []
        for j, idx in enumerate(micro):
            batch = {k: v.to(device) for k, v in collate([train[i] for i in idx], pad_id).items()}
            loss = model(**batch).loss / cfg.grad_accum
            loss.backward()
            window.append(float(loss.detach()) * cfg.grad_accum)
            if (j + 1) % cfg.grad_accum == 0 or j == len(micro) - 1:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                losses.append(float(np.mean(window)))
                window = []
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
                if cfg.max_steps and steps >= cfg.max_steps:
                    break
        bar.close()
        train_seconds += time.perf_counter() - t_epoch
        t = time.perf_counter()
        scores = answer_metrics(model, held, pad_id, cfg.batch_size)
        eval_seconds += time.perf_counter() - t
        history.append({"epoch": epoch, "steps": steps, "train_loss": float(np.mean(losses)) if losses else None, **scores,
                        "seconds": round(time.perf_counter() - t_epoch, 1)})
        if cfg.progress:
            tqdm.write(f"epoch {epoch}: {steps} steps, train loss {history[-1]['train_loss'] or 0:.4f}, held-out "
                       + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        last = epoch == cfg.epochs or bool(cfg.max_steps and steps >= cfg.max_steps)
        if not scores or best_loss is None or scores["eval_loss"] < best_loss:
            best_loss, best_epoch, stale = scores.get("eval_loss"), epoch, 0
            if not last:
                best_state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience and not last:
                stopped_early = True
                break
        if last:
            break
    if best_epoch != history[-1]["epoch"]:  # a later epoch was worse: go back to the best adapter
        if best_epoch == 0:
            log.warning("no epoch lowered the held-out loss below the base model's: the saved adapter is the untrained (no-op) one")
        set_peft_model_state_dict(model, best_state)
    model.eval()

    result = GeneratorResult(cfg, base_ref, history, best_epoch, stopped_early, data, train_seconds, eval_seconds,
                             time.perf_counter() - t_start, trainable, total, environment(device), command_line())
    config = model.config
    base_config = {k: getattr(config, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")}
    with atomic_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        _pin_base(tmp, base_ref)
        result.total_seconds = time.perf_counter() - t_start
        summary = result.summary()
        (tmp / "README.md").write_text(generator_card(summary), encoding="utf-8")
        write_marker(tmp, ADAPTER, base_ref, {"base_config": base_config, "training": summary})
    return result


def _pin_base(directory: Path, base_ref: str) -> None:
    """Record the base model as rulerag resolves it (an embedded name or an absolute path) in
    ``adapter_config.json`` too, so peft tools see the same base."""
    path = directory / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_ref
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _prompt_versions(path: Path) -> set[str]:
    import orjson

    out = set()
    for line in path.read_bytes().splitlines():
        if line.strip():
            out.add(str(orjson.loads(line).get("prompt_version", "?")))
    return out
