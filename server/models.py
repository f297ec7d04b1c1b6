"""Request and response models of the web API (they are the OpenAPI schema).

Request models are built per app by :func:`request_models`, so that the limits of
:class:`~server.config.ServerSettings` appear in the schema (``maxLength``, ``maximum``,
``maxItems``) and are enforced by the same validation that checks types.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from rulerag.demo import DEMO_QUESTION
from rulerag.config import Mode
from server.config import ServerSettings

# ------------------------------------------------------------------------------ responses


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="where in the request: ['body', 'question'], ['query', 'limit'], ...")
    msg: str
    type: str


class ErrorInfo(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. question_too_long, invalid_api_key, body_too_large")
    message: str = Field(description="what is wrong and what to change")
    type: str | None = Field(None, description="OpenAI's error class for the status: invalid_request_error, authentication_error, "
                                               "not_found_error, rate_limit_error or server_error")
    details: list[ErrorDetail] | None = Field(None, description="every validation problem, for 422 responses")


class ErrorResponse(BaseModel):
    """Every error, whatever its status."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"code": "k_too_large", "message": "body.k: Input should be less than or equal to 50. Fix: ask for at most 50 documents (server limit max_k)"}}]}
    )

    error: ErrorInfo


class Atom(BaseModel):
    relation: str
    subject: str
    object: str


class RuleOut(BaseModel):
    """A rule: ``text`` is RuleRAG's form, ``head``/``body`` the structure, statistics when known."""

    id: str
    text: str
    head: Atom
    body: list[Atom]
    confidence: float | None = None
    support: int | None = None
    head_coverage: float | None = None
    pca_confidence: float | None = None


class RuleMatchOut(BaseModel):
    """A rule chosen for a question and why (``score`` = mention and embedding similarity mixed)."""

    rule: RuleOut
    score: float
    mention_score: float
    embedding_score: float | None = None
    reason: str


class DocumentOut(BaseModel):
    """A retrieved document with its final score, rank (from 1) and the queries that found it."""

    id: str
    contents: str
    score: float
    rank: int
    found_by: list[str] = Field(description="'question' and/or 'rule:<rule id>'")
    metadata: dict[str, Any] = Field(default_factory=dict)


class FollowOut(BaseModel):
    follow_all_instructions: bool
    follow_instruction_list: list[bool]


class CheckReportOut(BaseModel):
    """The checker's report (``rulerag.checking.CheckReport.to_dict()``)."""

    model_config = ConfigDict(extra="allow")

    question: str | None = None
    response: str
    instruction_id_list: list[str]
    canonical_ids: list[str]
    kwargs: list[dict[str, Any]]
    strict: FollowOut
    loose: FollowOut
    unsatisfiable: bool
    unsatisfiable_reason: str | None = None
    unsatisfiable_reasons: list[str] = Field(default_factory=list)
    faithfulness: dict[str, Any] | None = Field(None, description="K-Precision, K-Precision++, K-Recall, K-F1, grounding (when documents were given)")
    correctness: dict[str, Any] | None = Field(None, description="em, f1, recall (when golden answers were given)")
    judge: dict[str, Any] | None = None
    injection_echoes: list[str] = Field(default_factory=list)


class RoundOut(BaseModel):
    answer: str
    followed: int
    of: int
    kept: bool


class SupportOut(BaseModel):
    """Why an answer: the documents that state it and the rule paths that lead to it."""

    supported: bool = Field(description="some retrieved document states the answer")
    documents: list[int] = Field(description="numbers ([n], from 1) of the documents that state the answer")
    paths: list[str] = Field(description="e.g. '[2] Alice Marlow serves in army of Norland. + rule serves_in_army_of -> "
                                         "citizen_of (0.87) => Norland'")


class AskResponse(BaseModel):
    """The answer and everything that led to it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "question": DEMO_QUESTION,
                    "answer": "Norland",
                    "mode": "rulerag",
                    "generator": "qwen2.5-coder-0.5b-instruct",
                    "rules": [{"rule": {"id": "3f2a9c1b7d20", "text": "[Entity1, serves_in_army_of, Entity2] leads to [Entity1, citizen_of, Entity2]",
                                        "head": {"relation": "citizen_of", "subject": "X", "object": "Y"},
                                        "body": [{"relation": "serves_in_army_of", "subject": "X", "object": "Y"}], "confidence": 0.867, "support": 13},
                               "score": 0.82, "mention_score": 1.0, "embedding_score": 0.74, "reason": "relation 'citizen of' mentioned; similarity 0.74"}],
                    "documents": [{"id": "d17", "contents": "Alice Marlow serves in army of Norland.", "score": 0.5, "rank": 2,
                                   "found_by": ["rule:3f2a9c1b7d20"], "metadata": {}}],
                    "instructions": [],
                    "check": None,
                    "rounds": [],
                    "timings": {"retrieval_s": 0.012, "generation_s": 0.9, "total_s": 0.912},
                }
            ]
        }
    )

    question: str
    answer: str
    mode: Mode
    generator: str
    rules: list[RuleMatchOut]
    documents: list[DocumentOut]
    instructions: list[str] = Field(description="the output instructions shown to the generator")
    check: CheckReportOut | None = Field(None, description="the checker's report of the kept answer (when constraints were given)")
    rounds: list[RoundOut] = Field(default_factory=list, description="every attempt when constraints were given")
    prompt: dict[str, str] | None = Field(None, description="system and user prompt (when include_prompt was set)")
    warnings: list[str] = Field(
        default_factory=list,
        description="instruction-like text found in the documents (removed from or fenced in the prompt, per the "
        "retrieval.injection setting), answers that repeat it, and an answer no document states (unsupported); "
        "each names the document as [n] (id ...)",
    )
    support: SupportOut | None = Field(None, description="why this answer (short answers; null under output instructions)")
    timings: dict[str, float]


class RetrievalOut(BaseModel):
    question: str
    mode: Mode
    rules: list[RuleMatchOut]
    queries: list[str] = Field(description="the queries searched: the question, then one per matched rule")
    documents: list[DocumentOut]


class RetrieveResponse(BaseModel):
    """One result per question, in request order."""

    results: list[RetrievalOut]
    timings: dict[str, float]


class RulesPage(BaseModel):
    """A page of the loaded rules (all, or those concluding ``relation``), by head relation and confidence."""

    items: list[RuleOut]
    total: int = Field(description="rules matching the filter")
    offset: int
    limit: int
    next_offset: int | None = Field(None, description="offset of the next page; null on the last page")
    relation: str | None = None


class ConstraintInfo(BaseModel):
    id: str = Field(description="IFEval id")
    followrag_id: str | None = None
    description: str
    kwargs: dict[str, str] = Field(description="kwarg name -> kind")


class ConstraintList(BaseModel):
    items: list[ConstraintInfo]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    index: str = Field(description="index directory name")
    documents: int
    rules: int
    generator: str
    load_s: float = Field(description="seconds the index and models took to load")


# ------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestModels:
    ConstraintIn: type[BaseModel]
    AskRequest: type[BaseModel]
    RetrieveRequest: type[BaseModel]
    CheckRequest: type[BaseModel]


def request_models(limits: ServerSettings) -> RequestModels:
    """Request models whose schema carries ``limits``."""
    Question = Annotated[
        str,
        StringConstraints(min_length=1, max_length=limits.max_question_chars, pattern=r"\S"),
        Field(description=f"a question in words (at most {limits.max_question_chars} characters)"),
    ]
    Instruction = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_instruction_chars)]
    Short = Annotated[str, StringConstraints(max_length=200)]
    When = Annotated[str, StringConstraints(max_length=32)]
    K = Annotated[int | None, Field(None, ge=1, le=limits.max_k, description=f"documents to return (1-{limits.max_k}; default from the server's settings)")]
    ModeF = Annotated[Mode | None, Field(None, description="standard: question only; rulerag: plus one query per matched rule (default from settings)")]

    class ConstraintIn(BaseModel):
        """A verifiable output constraint: an IFEval or FollowRAG instruction id and its kwargs."""

        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"id": "length_words", "kwargs": {"relation": "less than", "num_words": 20}}]})

        id: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(description="e.g. punctuation:no_comma or format_no_commas (see GET /v1/constraints)")
        kwargs: dict[str, Any] = Field(default_factory=dict, description="the instruction's arguments")

    class AskRequest(BaseModel):
        """A question to answer, with optional output instructions and verifiable constraints."""

        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={
                "examples": [
                    {"question": DEMO_QUESTION, "mode": "rulerag", "k": 5},
                    {"question": DEMO_QUESTION, "instructions": ["Answer in one lowercase word."],
                     "constraints": [{"id": "change_case:english_lowercase", "kwargs": {}}], "refine_rounds": 1},
                ]
            },
        )

        question: Question
        mode: ModeF = None
        k: K = None
        instructions: list[Instruction] = Field(default_factory=list, max_length=limits.max_instructions, description="output instructions in words, shown to the generator")
        constraints: list[ConstraintIn] = Field(default_factory=list, max_length=limits.max_instructions, description="verifiable forms of the instructions; the answer is checked and refined while some fail")
        max_new_tokens: int | None = Field(None, ge=1, le=limits.max_new_tokens, description="answer length limit (default from settings)")
        temperature: float | None = Field(None, ge=0, le=limits.max_temperature, description="0 = greedy (default from settings)")
        refine_rounds: int | None = Field(None, ge=0, le=limits.max_refine_rounds, description="extra rounds when constraints fail (default from settings)")
        include_prompt: bool = Field(False, description="also return the prompt the generator saw")
        stream: bool = Field(False, description="answer as server-sent events (same as Accept: text/event-stream)")

    class RetrieveRequest(BaseModel):
        """One question (``question``) or a batch (``questions``); no generation."""

        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={
                "examples": [
                    {"question": DEMO_QUESTION, "mode": "rulerag", "k": 5},
                    {"questions": [DEMO_QUESTION, "Where was Alice Marlow born?"], "relations": ["citizen_of", None], "k": 3},
                ],
                "oneOf": [{"required": ["question"]}, {"required": ["questions"]}],
            },
        )

        question: Question | None = None
        relation: Short | None = Field(None, description="with question: its relation, for a structured query (rules by head relation)")
        time: When | None = Field(None, description="with question: its time (YYYY-MM-DD or year); later documents are dropped")
        questions: list[Question] | None = Field(None, min_length=1, max_length=limits.max_batch, description=f"a batch of at most {limits.max_batch} questions")
        relations: list[Short | None] | None = Field(None, max_length=limits.max_batch, description="with questions: one relation (or null) per question")
        times: list[When | None] | None = Field(None, max_length=limits.max_batch, description="with questions: one time (or null) per question")
        mode: ModeF = None
        k: K = None

        @model_validator(mode="after")
        def _one_form(self):
            if (self.question is None) == (self.questions is None):
                raise PydanticCustomError("question_or_questions", "give either 'question' or 'questions' (a list), not both or neither")
            if self.question is not None and (self.relations is not None or self.times is not None):
                raise PydanticCustomError("question_or_questions", "'relations' and 'times' go with 'questions'; with 'question' use 'relation' and 'time'")
            if self.questions is not None:
                if self.relation is not None or self.time is not None:
                    raise PydanticCustomError("question_or_questions", "'relation' and 'time' go with 'question'; with 'questions' use 'relations' and 'times'")
                for name in ("relations", "times"):
                    values = getattr(self, name)
                    if values is not None and len(values) != len(self.questions):
                        raise PydanticCustomError("length_mismatch", "'{name}' has {got} entries for {n} questions; give one per question (null for none)",
                                                  {"name": name, "got": len(values), "n": len(self.questions)})
            return self

    class CheckRequest(BaseModel):
        """An answer to score (IFEval field names): instruction following, faithfulness, correctness."""

        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={
                "examples": [
                    {"response": "norland", "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}],
                     "question": DEMO_QUESTION, "documents": ["Alice Marlow serves in army of Norland."], "golden_answers": ["Norland"]}
                ]
            },
        )

        response: Annotated[str, StringConstraints(max_length=limits.max_response_chars)] = Field(description="the answer to score")
        instruction_id_list: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
            default_factory=list, max_length=limits.max_instructions, description="IFEval or FollowRAG instruction ids")
        kwargs: list[dict[str, Any] | None] | None = Field(None, max_length=limits.max_instructions, description="one dict per instruction (null or {} when it takes none)")
        question: Annotated[str, StringConstraints(max_length=limits.max_question_chars)] | None = None
        documents: list[Annotated[str, StringConstraints(max_length=limits.max_document_chars)]] | None = Field(
            None, max_length=limits.max_documents, description="the documents the answer should be faithful to")
        golden_answers: list[Annotated[str, StringConstraints(max_length=1000)]] | Annotated[str, StringConstraints(max_length=1000)] | None = Field(
            None, description="gold answer aliases (a list, or one string)")

        @model_validator(mode="after")
        def _kwargs_len(self):
            if self.kwargs is not None and len(self.kwargs) != len(self.instruction_id_list):
                raise PydanticCustomError("length_mismatch", "'kwargs' has {got} entries for {n} instructions; give one dict per instruction",
                                          {"got": len(self.kwargs), "n": len(self.instruction_id_list)})
            return self

    return RequestModels(ConstraintIn, AskRequest, RetrieveRequest, CheckRequest)
