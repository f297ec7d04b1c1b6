"""Errors as JSON: ``{"error": {"code": "stable_code", "message": "what to change", "type": "..."}}``
(``type`` is OpenAI's error class for the status, so OpenAI clients read our errors too).

* :class:`ApiError` (an ``HTTPException``) carries a status, a code and a message;
* request validation errors become 400 ``invalid_json`` or 422 with a code per problem
  (``question_too_long``, ``k_too_large``, ``batch_too_large``, ``too_many_instructions``,
  ``missing_question``, ``unknown_field``, ``invalid_mode`` ...) and every problem in ``details``;
* :class:`rulerag.errors.RuleRAGError` from a request's content become 422 (``invalid_constraint``,
  ``invalid_request``); a failing generator is 502 ``generation_failed``;
* anything else is 500 ``internal_error`` with a reference id; the trace goes to the log only.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rulerag.checking.instructions import InstructionError
from rulerag.errors import ConfigError, GenerationError, IndexLoadError, InputFormatError, RuleRAGError

log = logging.getLogger("rulerag.server")


class ApiError(StarletteHTTPException):
    """An error for the client: HTTP status, stable code, message saying what to change."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code
        self.message = message


def error_type(status: int) -> str:
    """The OpenAI-style error ``type`` of an HTTP status, so OpenAI clients classify our errors.

    Example:
        >>> error_type(401), error_type(422), error_type(503)
        ('authentication_error', 'invalid_request_error', 'server_error')
    """
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "invalid_request_error")


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None, *, status: int | None = None) -> dict[str, Any]:
    """``{"error": {"code", "message"[, "type"][, "details"]}}``; ``type`` (OpenAI's error
    classes) when the HTTP ``status`` is given."""
    err: dict[str, Any] = {"code": code, "message": message}
    if status is not None:
        err["type"] = error_type(status)
    if details is not None:
        err["details"] = details
    return {"error": err}


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details, status=status), status_code=status, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}

#: field -> (code, hint) for "too long / too large" validation errors
_LIMIT_CODES = {
    "question": ("question_too_long", "shorten the question (server limit max_question_chars)"),
    "questions": ("batch_too_large", "send fewer questions per request (server limit max_batch)"),
    "relations": ("batch_too_large", "send fewer questions per request (server limit max_batch)"),
    "times": ("batch_too_large", "send fewer questions per request (server limit max_batch)"),
    "k": ("k_too_large", "ask for fewer documents (server limit max_k)"),
    "instructions": ("too_many_instructions", "send fewer instructions (server limit max_instructions)"),
    "constraints": ("too_many_constraints", "send fewer constraints (server limit max_instructions)"),
    "instruction_id_list": ("too_many_instructions", "send fewer instructions (server limit max_instructions)"),
    "kwargs": ("too_many_instructions", "send fewer instructions (server limit max_instructions)"),
    "documents": ("too_many_documents", "send fewer documents (server limit max_documents)"),
    "document": ("document_too_long", "send shorter documents (server limit max_document_chars)"),
    "instruction": ("instruction_too_long", "shorten the instruction (server limit max_instruction_chars)"),
    "response": ("response_too_long", "shorten the response (server limit max_response_chars)"),
    "max_new_tokens": ("max_new_tokens_too_large", "ask for fewer tokens (server limit max_new_tokens)"),
    "max_tokens": ("max_new_tokens_too_large", "ask for fewer tokens (server limit max_new_tokens)"),
    "max_completion_tokens": ("max_new_tokens_too_large", "ask for fewer tokens (server limit max_new_tokens)"),
    "n": ("invalid_n", "send n = 1: RuleRAG gives one answer per request"),
    "refine_rounds": ("refine_rounds_too_large", "ask for fewer rounds (server limit max_refine_rounds)"),
    "temperature": ("temperature_too_large", "use a lower temperature (server limit max_temperature)"),
    "limit": ("limit_too_large", "ask for a smaller page (server limit max_page)"),
}
_TOO_BIG = {"string_too_long", "too_long", "less_than_equal", "less_than"}


_SINGULAR = {"questions": "question", "instructions": "instruction", "documents": "document",
             "instruction_id_list": "instruction_id", "relations": "relation", "times": "time"}


def _field(loc: tuple[Any, ...]) -> str:
    """The innermost named field of a location; an element of a list is named in the singular
    (``('body', 'questions', 3)`` -> ``question``)."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    for i in range(len(parts) - 1, -1, -1):
        if isinstance(parts[i], str):
            if i < len(parts) - 1 and isinstance(parts[i + 1], int):
                return _SINGULAR.get(parts[i], parts[i])
            return parts[i]
    return ""


def _code(err: dict[str, Any]) -> tuple[str, str]:
    """(code, hint) for one pydantic error."""
    kind = err.get("type", "")
    loc = tuple(err.get("loc", ()))
    field = _field(loc)
    if kind == "json_invalid":
        return "invalid_json", "send a valid JSON object"
    if kind in ("question_or_questions", "length_mismatch"):
        return kind, ""
    if kind in _TOO_BIG and field in _LIMIT_CODES:
        return _LIMIT_CODES[field]
    if kind == "missing":
        if loc == ("body",):
            return "missing_body", "send a JSON object with Content-Type: application/json"
        return f"missing_{field or 'field'}", f"add '{field}'"
    if kind == "extra_forbidden":
        return "unknown_field", f"remove '{field}' (see the schema at /openapi.json)"
    if kind in ("model_attributes_type", "dict_type", "model_type") and loc == ("body",):
        return "invalid_body", "send a JSON object (see the schema at /openapi.json)"
    if kind == "string_pattern_mismatch" and field == "question":
        return "empty_question", "ask a question with at least one non-space character"
    return (f"invalid_{field}" if field.isidentifier() else "invalid_request"), ""


def _loc_text(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "request"


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    details = [{"loc": [p if isinstance(p, (str, int)) else str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                "type": str(e.get("type", ""))} for e in errors]
    if not errors:
        return error_response(422, "invalid_request", "the request is not valid", details)
    first = errors[0]
    code, hint = _code(first)
    if code == "invalid_json":
        return error_response(400, code, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')}). "
                                          "Fix: send a JSON object with Content-Type: application/json", details)
    message = f"{_loc_text(tuple(first.get('loc', ())))}: {first.get('msg', 'invalid')}"
    if hint:
        message += f". Fix: {hint}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s), see details)"
    status = 400 if code == "invalid_json" else 422
    return error_response(status, code, message, details)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, ApiError):
            return error_response(exc.status_code, exc.code, exc.message, headers=exc.headers)
        code = _STATUS_CODES.get(exc.status_code, "error" if exc.status_code < 500 else "internal_error")
        if exc.status_code == 400:  # FastAPI could not parse the body (e.g. a broken form or multipart body)
            return error_response(400, "invalid_body", "the request body could not be parsed. Fix: send a JSON object with "
                                                       "Content-Type: application/json", headers=getattr(exc, "headers", None))
        message = {
            404: f"no such endpoint: {request.method} {request.url.path}. Fix: see /openapi.json for the endpoints",
            405: f"{request.method} is not allowed on {request.url.path}. Fix: see /openapi.json for the methods",
        }.get(exc.status_code, str(exc.detail) if exc.status_code < 500 else "internal error")
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RuleRAGError)
    async def _rulerag(request: Request, exc: RuleRAGError) -> JSONResponse:
        return rulerag_error_response(exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return internal_error_response(exc, f"{request.method} {request.url.path}")


def rulerag_error_parts(exc: RuleRAGError) -> tuple[int, str, str]:
    """(status, code, message) for a toolkit error raised while serving a request."""
    if isinstance(exc, InstructionError):
        return 422, "invalid_constraint", str(exc)
    if isinstance(exc, GenerationError):
        ref = uuid.uuid4().hex[:12]
        log.error("generation failed (reference %s): %s", ref, exc)
        return 502, "generation_failed", f"the generator failed (reference {ref}); the server log has the details. Retry later"
    if isinstance(exc, IndexLoadError):
        ref = uuid.uuid4().hex[:12]
        log.error("index error (reference %s): %s", ref, exc)
        return 503, "index_unavailable", f"the index is not usable (reference {ref}); the server log has the details"
    if isinstance(exc, (ConfigError, InputFormatError)):
        return 422, "invalid_request", str(exc)
    return 422, "invalid_request", str(exc)


def rulerag_error_response(exc: RuleRAGError) -> JSONResponse:
    status, code, message = rulerag_error_parts(exc)
    return error_response(status, code, message)


def internal_error_parts(exc: BaseException, where: str) -> tuple[int, str, str]:
    ref = uuid.uuid4().hex[:12]
    log.error("internal error in %s (reference %s)", where, ref, exc_info=(type(exc), exc, exc.__traceback__))
    return 500, "internal_error", f"internal error (reference {ref}); the server log has the details"


def internal_error_response(exc: BaseException, where: str) -> JSONResponse:
    status, code, message = internal_error_parts(exc, where)
    return error_response(status, code, message)
