"""FollowRAG benchmark: three prompt settings in one resumable runner.

Settings (:data:`SETTINGS`), each answering every item of a FollowRAG-format file with its passages:

- ``plain``: the standard RAG prompt with FollowRAG's ``question_with_instrs`` as the question,
  so the instructions are part of the question, as in FollowRAG's own prompt (which, like the
  standard prompt's "answer with only the entity name", also asks for a short answer);
- ``constraint``: the constraint-aware prompt: the question, and the instructions in their own
  ``<instructions>`` section (:func:`~rulerag.checking.followrag_prompt_parts`);
- ``refine``: the ``constraint`` answer (read from its answer file, never generated twice),
  repaired by code for the mechanical instructions it fails (:mod:`rulerag.checking.repair`),
  then the model re-asked for what still fails, at most ``refine_rounds`` times (each re-asked
  answer is repaired too); the answer that follows the most instructions is kept
  (:func:`rulerag.refine.verify_and_refine` with ``repair=True``).

Answers are appended, one JSON line per finished item, to
``OUT/answers/SET.SETTING.BACKEND-MODEL.pVERSION.tMAXTOKENS[.rROUNDS].jsonl`` (SET is the data
file's stem): an interrupted run resumes where it stopped and a rerun generates nothing it has.
Each line keeps the item ``key``, the ``answer``, the model ``rounds``, the ``repairs`` kept,
``prompt_tokens`` / ``completion_tokens`` (measured by the backend, or estimated when it cannot
tell: ``tokens_estimated``) and ``seconds``; ``refine`` lines also keep every ``attempt``.
The tables come from these files only (:func:`rulerag.bench.followrag_report.report_followrag`;
:func:`rulerag.bench.followrag_report.run_followrag` answers and reports in one call).

Malformed items are skipped with their index, field and fix (:func:`~rulerag.checking.followrag.read_followrag`);
an item whose generation fails is logged and left for the next run.

Example:
    >>> run = FollowRAGRun(Path("../shared/data/followrag/followRAG_ifnq.json"), Path("benchmarks/results/followrag-ifnq"), limit=20)
    >>> generate_answers(run)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rulerag.bench.runner import _append_jsonl, _read_cache
from rulerag.checking.followrag import FollowRAGItem, SkippedItem, followrag_prompt_parts, read_followrag
from rulerag.config import GenerationSettings
from rulerag.errors import ConfigError, GenerationError
from rulerag.generation import PROMPT_VERSION, Generator, Prompt, make_backend, standard_prompt
from rulerag.generation.usage import MeteredGenerator
from rulerag.refine import Constraint, verify_and_refine

log = logging.getLogger(__name__)

#: The three settings, in the order they run for each item.
SETTINGS: tuple[str, ...] = ("plain", "constraint", "refine")

#: One line per setting, for reports and ``--help``.
SETTING_NOTES: dict[str, str] = {
    "plain": "standard RAG prompt, instructions inside the question (FollowRAG's question_with_instrs)",
    "constraint": "constraint-aware prompt: instructions in their own section",
    "refine": "constraint answer, repaired by code, then the model re-asked for what still fails",
}

#: Consecutive generation failures after which the run stops (the engine, not an item, is broken).
MAX_CONSECUTIVE_ERRORS = 5


def parse_settings(text: str | Sequence[str]) -> tuple[str, ...]:
    """Settings from ``"plain,refine"`` or a list, validated and in :data:`SETTINGS` order.

    Example:
        >>> parse_settings("refine, plain")
        ('plain', 'refine')
    """
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown or not names:
        raise ConfigError(f"unknown FollowRAG setting(s) {', '.join(unknown) or '(none given)'}. "
                          f"Fix: use a comma-separated subset of {','.join(SETTINGS)}")
    return tuple(s for s in SETTINGS if s in names)


@dataclass(frozen=True)
class FollowRAGRun:
    """What a FollowRAG run answers and where its answers live.

    Example:
        >>> run = FollowRAGRun(Path("followRAG_ifnq.json"), Path("out"))
        >>> run.answers_path("refine").name
        'followrag-ifnq.refine.llamacpp-qwen2.5-coder-0.5b-instruct.p3.t256.r2.jsonl'
    """

    data: Path
    out: Path
    settings: tuple[str, ...] = SETTINGS
    limit: int | None = None
    refine_rounds: int = 2
    max_new_tokens: int = 256
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    def answers_path(self, setting: str) -> Path:
        """The append-only answer file of ``setting``, named after the data file's slug (lower
        case, ``-`` for other characters), so that it does not read as a copy of the data file."""
        g = self.generation
        engine = f"{g.backend.value}-{g.model.replace('/', '_')}" + (f".T{g.temperature:g}" if g.temperature else "")
        rounds = f".r{self.refine_rounds}" if setting == "refine" else ""
        slug = re.sub(r"[^a-z0-9]+", "-", self.data.stem.lower()).strip("-")
        name = f"{slug}.{setting}.{engine}.p{PROMPT_VERSION}.t{self.max_new_tokens}{rounds}.jsonl"
        return self.out / "answers" / name

    def needed(self) -> tuple[str, ...]:
        """Settings to generate: the chosen ones, plus ``constraint`` when ``refine`` needs its answers."""
        return parse_settings([*self.settings, *(["constraint"] if "refine" in self.settings else [])])

    def items(self) -> tuple[list[FollowRAGItem], list[SkippedItem]]:
        """The well-formed items among the first ``limit`` records, and the skipped ones."""
        return read_followrag(self.data, self.limit)


def prompt_for(item: FollowRAGItem, setting: str) -> Prompt:
    """The generator prompt of ``item`` in ``setting`` (``refine`` starts from ``constraint``'s).

    Example:
        >>> from rulerag.checking.followrag import Passage
        >>> item = FollowRAGItem(0, "", "q", "Who? Answer in lowercase.", ("cases_lowercase",), ({},),
        ...                      (Passage("T", "text"),), ("x",))
        >>> "<instructions>" in prompt_for(item, "plain").user, "<instructions>" in prompt_for(item, "constraint").user
        (False, True)
    """
    if setting == "plain":
        return standard_prompt(item.question_with_instructions, item.documents)
    question, instructions, documents = followrag_prompt_parts(item)
    return standard_prompt(question, documents, [instructions] if instructions else [])


def _constraints(item: FollowRAGItem) -> list[Constraint]:
    return [Constraint(i, dict(kw)) for i, kw in zip(item.instruction_id_list, item.kwargs)]


def answer_item(generator: MeteredGenerator, item: FollowRAGItem, setting: str, run: FollowRAGRun,
                first_answer: str | None = None) -> dict[str, Any]:
    """One answer-file line: ``item`` answered in ``setting`` (``refine`` needs ``first_answer``,
    the ``constraint`` answer)."""
    generator.take()
    t0 = time.perf_counter()
    temperature = run.generation.temperature
    if setting == "refine":
        if first_answer is None:
            raise ValueError("the refine setting starts from the constraint answer. Fix: pass first_answer")
        question, _, documents = followrag_prompt_parts(item)
        result = verify_and_refine(generator, prompt_for(item, "constraint"), _constraints(item), rounds=run.refine_rounds,
                                   max_new_tokens=run.max_new_tokens, temperature=temperature, question=question,
                                   documents=documents, first_answer=first_answer, repair=True)
        kept = next(a for a in result.rounds if a["kept"])
        answer, repairs, extra = result.answer, kept.get("repairs", []), {"attempts": result.rounds}
    else:
        answer = generator.generate(prompt_for(item, setting), max_new_tokens=run.max_new_tokens, temperature=temperature)
        repairs, extra = [], {}
    usage = generator.take()
    return {"id": str(item.key), "key": item.key, "setting": setting, "answer": answer, "rounds": usage.calls,
            "repairs": repairs, "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "tokens_estimated": usage.estimated, "generation_seconds": round(usage.seconds, 3),
            "seconds": round(time.perf_counter() - t0, 3), **extra}


def generate_answers(run: FollowRAGRun, *, generator: Generator | None = None, progress: bool = True) -> dict[str, int]:
    """Answer every item not yet in its answer file, in every needed setting; returns how many
    lines each setting got now. ``generator`` replaces the one ``run.generation`` describes (its
    answers are still filed under that backend and model)."""
    items, _ = run.items()
    needed = run.needed()
    files = {s: run.answers_path(s) for s in needed}
    done = {s: _read_cache(files[s]) for s in needed}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    metered: MeteredGenerator | None = None
    added = dict.fromkeys(needed, 0)
    failures = 0
    for item in tqdm(items, desc=f"followrag {run.data.stem}", unit="item", disable=not progress):
        key = str(item.key)
        for setting in needed:
            if key in done[setting]:
                continue
            metered = metered or MeteredGenerator(generator or make_backend(run.generation))
            first = done["constraint"][key]["answer"] if setting == "refine" else None
            try:
                row = answer_item(metered, item, setting, run, first)
            except GenerationError as exc:
                failures += 1
                log.warning("item %s (%s): generation failed, left for the next run: %s", key, setting, exc)
                if failures >= MAX_CONSECUTIVE_ERRORS:
                    raise
                break  # the item's later settings may depend on this one
            failures = 0
            _append_jsonl(files[setting], [row])
            done[setting][key] = row
            added[setting] += 1
    return added
