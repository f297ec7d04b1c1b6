"""Checker (FollowRAG-style): verifiable instructions, faithfulness, correctness.

- :mod:`~rulerag.checking.instructions`: the 25 IFEval instruction verifiers under IFEval and
  FollowRAG ids, strict and loose, kwargs validation, contradiction (unsatisfiable) detection;
- :mod:`~rulerag.checking.faithfulness`: K-Precision / K-Precision++ / K-Recall / K-F1,
  grounding of entities and numbers, EM / F1 / recall, the pluggable :class:`Judge`;
- :mod:`~rulerag.checking.report`: :func:`check` one response, :func:`check_file` a JSONL file,
  :func:`summarise` reports;
- :mod:`~rulerag.checking.followrag`: :func:`load_followrag` items and split them for a generator;
- :mod:`~rulerag.checking.injection`: instruction-like text in documents (prompt injection):
  :func:`sanitize_documents` removes or fences it, :func:`answer_warnings` checks an answer.

Example:
    >>> r = check("the answer is gravity", ["cases_lowercase", "format_no_commas"], [{}, {}],
    ...           documents=["Gravity is a force."], golden_answers=["Gravity"])
    >>> r.strict.follow_instruction_list, r.correctness.recall, round(r.faithfulness.k_precision, 3)
    ([True, True], 1.0, 0.667)
"""

from rulerag.checking.faithfulness import (
    CorrectnessScores,
    FaithfulnessScores,
    GroundingResult,
    Judge,
    JudgeVerdict,
    NoJudge,
    answer_content,
    cited_documents,
    correctness,
    entity_spans,
    exact_match,
    faithfulness,
    grounding,
    k_f1,
    k_precision,
    k_precision_pp,
    k_recall,
    numbers_in,
    token_f1,
    token_recall,
)
from rulerag.checking.followrag import (
    FOLLOWRAG_FILES,
    FollowRAGItem,
    Passage,
    default_followrag_dir,
    followrag_prompt_parts,
    followrag_record,
    load_followrag,
)
from rulerag.checking.injection import (
    InjectionWarning,
    answer_warnings,
    echoed_injections,
    injected_instructions,
    sanitize_documents,
)
from rulerag.checking.instructions import (
    FOLLOWRAG_ALIASES,
    INSTRUCTIONS,
    UNSATISFIABLE_RULES,
    InstructionError,
    InstructionSpec,
    canonical_id,
    check_instruction,
    count_sentences,
    count_words,
    detect_language,
    follow_instructions,
    instruction_ids,
    loose_variants,
    unsatisfiable_reasons,
    validate_kwargs,
)
from rulerag.checking.report import CheckReport, FollowResult, check, check_file, summarise

__all__ = [
    "FOLLOWRAG_ALIASES",
    "FOLLOWRAG_FILES",
    "INSTRUCTIONS",
    "UNSATISFIABLE_RULES",
    "CheckReport",
    "CorrectnessScores",
    "FaithfulnessScores",
    "FollowRAGItem",
    "FollowResult",
    "GroundingResult",
    "InjectionWarning",
    "InstructionError",
    "InstructionSpec",
    "Judge",
    "JudgeVerdict",
    "NoJudge",
    "Passage",
    "answer_content",
    "answer_warnings",
    "canonical_id",
    "check",
    "check_file",
    "check_instruction",
    "cited_documents",
    "correctness",
    "count_sentences",
    "count_words",
    "default_followrag_dir",
    "detect_language",
    "echoed_injections",
    "entity_spans",
    "exact_match",
    "faithfulness",
    "follow_instructions",
    "followrag_prompt_parts",
    "followrag_record",
    "grounding",
    "injected_instructions",
    "instruction_ids",
    "k_f1",
    "k_precision",
    "k_precision_pp",
    "k_recall",
    "load_followrag",
    "loose_variants",
    "numbers_in",
    "sanitize_documents",
    "summarise",
    "token_f1",
    "token_recall",
    "unsatisfiable_reasons",
    "validate_kwargs",
]
