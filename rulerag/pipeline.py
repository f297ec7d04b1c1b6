"""The RuleRAG pipeline: rule matching -> (rule-guided) retrieval -> prompt -> generator.

Example:
    >>> rag = RuleRAG.from_index("indexes/demo", rules="rules/demo.jsonl")   # doctest: +SKIP
    >>> result = rag.ask("Which country is Alice Marlow a citizen of?")        # doctest: +SKIP
    >>> result.answer, result.rules[0].rule.text                               # doctest: +SKIP
    ('Norland', '[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]')

Heavy parts (the embedding model, the generator) load on first use and once.
"""

from __future__ import annotations

import threading
from time import perf_counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rulerag.checking.injection import answer_warnings, sanitize_documents
from rulerag.config import Mode, Settings, load_settings
from rulerag.embedding import TextEncoder
from rulerag.generation import Generator, Prompt, make_backend, postprocess_answer, rulerag_prompt, standard_prompt
from rulerag.refine import Constraint, verify_and_refine
from rulerag.retrieval.guided import RetrievalResult, RuleGuidedRetriever
from rulerag.retrieval.index import Index, load_index
from rulerag.retrieval.search import Searcher
from rulerag.rules import RuleMatch, RuleStore
from rulerag.rules.paths import Support, answer_support


@dataclass
class Answer:
    """The answer to one question and everything that led to it."""

    question: str
    answer: str
    mode: Mode
    rules: list[RuleMatch]
    documents: list  # list[ScoredDocument]
    prompt: Prompt
    raw_output: str
    generator: str
    timings: dict[str, float] = field(default_factory=dict)
    instructions: list[str] = field(default_factory=list)
    check: Any = None  # rulerag.checking.CheckReport of the kept answer, when constraints were given
    rounds: list[dict[str, Any]] = field(default_factory=list)  # every attempt: answer, followed, kept
    support: Support | None = None  # why this answer: documents that state it, rule paths that lead to it
    warnings: list[str] = field(default_factory=list)  # instruction-like document text found, answers that echo it

    def to_dict(self) -> dict[str, Any]:
        return {
            "warnings": self.warnings,
            "instructions": self.instructions,
            "check": self.check.to_dict() if self.check is not None else None,
            "rounds": self.rounds,
            "support": self.support.to_dict() if self.support is not None else None,
            "question": self.question,
            "answer": self.answer,
            "mode": self.mode.value,
            "rules": [m.to_dict() for m in self.rules],
            "documents": [d.to_dict() for d in self.documents],
            "generator": self.generator,
            "raw_output": self.raw_output,
            "prompt": {"system": self.prompt.system, "user": self.prompt.user, "template": self.prompt.template},
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


class RuleRAG:
    """Rule-guided RAG over one index directory and one rule set."""

    def __init__(
        self,
        index: Index,
        rules: RuleStore | None = None,
        settings: Settings | None = None,
        generator: Generator | None = None,
        encoder: TextEncoder | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.index = index
        self.rules = rules
        self.encoder = encoder or index.encoder(self.settings)
        self.searcher = Searcher(index.bm25, index.dense, self.encoder, self.settings.retrieval)
        self.retriever = RuleGuidedRetriever(self.searcher, index.docs, rules, self.settings.retrieval, self.settings.rules,
                                             reasoner=self.settings.reasoner)
        self._generator = generator
        self._lock = threading.Lock()

    @classmethod
    def from_index(
        cls,
        path: str | Path,
        rules: str | Path | RuleStore | None = None,
        *,
        settings: Settings | None = None,
        config_file: str | Path | None = None,
        generator: Generator | None = None,
        encoder: TextEncoder | None = None,
        verify: bool = True,
        **overrides: Any,
    ) -> RuleRAG:
        """Load an index (and a rule file) with settings from ``settings`` or defaults < ``config_file``
        < environment < ``overrides`` (nested dicts, e.g. ``retrieval={"k": 3}``)."""
        settings = settings or load_settings(config_file, overrides)
        explicit_model = settings.embedding.model if "embedding.model" in _set_fields(settings) else None
        index = load_index(path, embedding_model=explicit_model, index_settings=settings.index, verify=verify)
        if rules is None and settings.rules.path is not None:
            rules = settings.rules.path
        store = rules if isinstance(rules, RuleStore) or rules is None else RuleStore.from_file(rules)
        return cls(index, store, settings, generator, encoder)

    @property
    def generator(self) -> Generator:
        """The generator backend (built from settings on first use)."""
        with self._lock:
            if self._generator is None:
                self._generator = make_backend(self.settings.generation)
            return self._generator

    def retrieve(
        self, question: str, *, k: int | None = None, mode: Mode | str | None = None, relation: str | None = None, time: str | None = None
    ) -> RetrievalResult:
        """Documents and matched rules for one question, no generation."""
        return self.retriever.retrieve(question, k=k, mode=mode, relation=relation, time=time)

    def retrieve_many(
        self,
        questions: list[str],
        *,
        k: int | None = None,
        mode: Mode | str | None = None,
        relations: Sequence[str | None] | None = None,
        times: Sequence[str | None] | None = None,
    ) -> list[RetrievalResult]:
        """Batch retrieval: all queries encoded and searched together."""
        return self.retriever.retrieve_many(questions, k=k, mode=mode, relations=relations, times=times)

    def prompt_documents(self, result: RetrievalResult) -> tuple[list[str], list[str]]:
        """The documents' texts as a prompt shows them, and one warning per instruction-like sentence.

        Retrieved documents are untrusted: sentences addressed to the generator ("Ignore all previous
        instructions ...") are removed, fenced as ``«untrusted: ...»`` or kept, per
        ``retrieval.injection`` (:func:`rulerag.checking.injection.sanitize_documents`). Each warning
        names the document by its number in the prompt and its id."""
        docs, found = sanitize_documents([d.contents for d in result.documents], self.settings.retrieval.injection)
        return docs, [w.message(result.documents[w.index].id) for w in found]

    def build_prompt(self, result: RetrievalResult, instructions: Sequence[str] = (),
                     documents: Sequence[str] | None = None) -> Prompt:
        """The standard-RAG or RuleRAG-ICL prompt for a retrieval result (with output instructions).

        ``documents``: the texts to show (default :meth:`prompt_documents`: instruction-like
        sentences removed or fenced)."""
        docs = list(documents) if documents is not None else self.prompt_documents(result)[0]
        if result.mode == Mode.rulerag and result.rules:
            return rulerag_prompt(result.question, docs, [m.rule.text for m in result.rules], instructions=instructions)
        return standard_prompt(result.question, docs, instructions=instructions)

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        mode: Mode | str | None = None,
        relation: str | None = None,
        time: str | None = None,
        instructions: Sequence[str] = (),
        constraints: Sequence[Constraint] = (),
        refine_rounds: int | None = None,
    ) -> Answer:
        """Retrieve, prompt and generate an answer for one question.

        ``instructions``: output instructions in words ("Answer in JSON."), shown to the generator
        in their own section. ``constraints``: verifiable forms of them (IFEval / FollowRAG ids);
        when given, the answer is checked and, while some fail, regenerated with the failed ones
        named, up to ``refine_rounds`` extra times (default ``generation.refine_rounds``); the
        answer that follows the most constraints is kept (the earliest on ties). Constraints with
        no instruction text are described to the generator from their id and kwargs.
        """
        t0 = perf_counter()
        result = self.retrieve(question, k=k, mode=mode, relation=relation, time=time)
        t1 = perf_counter()
        shown = list(instructions) or [c.describe() for c in constraints]
        docs, warnings = self.prompt_documents(result)
        prompt = self.build_prompt(result, shown, docs)
        gen = self.generator
        g = self.settings.generation
        raw = gen.generate(prompt, max_new_tokens=g.max_new_tokens, temperature=g.temperature)
        report, rounds = None, []
        if constraints:
            refined = verify_and_refine(
                gen, prompt, list(constraints), rounds=g.refine_rounds if refine_rounds is None else refine_rounds,
                max_new_tokens=g.max_new_tokens, temperature=g.temperature, question=question,
                documents=[d.contents for d in result.documents], first_answer=raw,
            )
            raw, report, rounds = refined.answer, refined.report, refined.rounds
        t2 = perf_counter()
        answer = raw.strip() if shown else postprocess_answer(raw)
        support, notes = self.explain(answer, result, docs, shown)
        return Answer(
            question=question,
            answer=answer,
            mode=result.mode,
            rules=result.rules,
            documents=result.documents,
            prompt=prompt,
            raw_output=raw,
            generator=gen.name,
            timings={"retrieval_s": t1 - t0, "generation_s": t2 - t1, "total_s": t2 - t0},
            instructions=shown,
            check=report,
            rounds=rounds,
            warnings=warnings + notes,
            support=support,
        )

    def explain(self, answer: str, result: RetrievalResult, documents: Sequence[str],
                instructions: Sequence[str] = ()) -> tuple[Support | None, list[str]]:
        """Why this answer, and what the user must be warned of: the :class:`~rulerag.rules.paths.Support`
        of a short answer among the prompt's ``documents`` (passages that state it, rule paths that
        lead to it; ``None`` for a formatted answer under output ``instructions``), and warnings for
        an answer no document states or one taken from instruction-like document text."""
        originals = [d.contents for d in result.documents]
        notes = answer_warnings(answer, originals, [d.id for d in result.documents])
        if instructions:
            return None, notes
        support = answer_support(answer, documents, [m.rule for m in result.rules])
        if answer and not support.supported:
            notes.append(f"unsupported answer: no retrieved document states {answer!r}; treat it as a guess")
        return support, notes


def _set_fields(settings: Settings) -> set[str]:
    """Dotted names of fields that were set explicitly (YAML, environment or overrides)."""
    out = set()
    for section in settings.model_fields_set:
        sub = getattr(settings, section)
        for name in getattr(sub, "model_fields_set", set()):
            out.add(f"{section}.{name}")
    return out
