"""The RuleRAG web API (FastAPI) and its web page.

    from server.app import create_app
    app = create_app("indexes/demo", "rules/demo.jsonl")     # uvicorn.run(app) or server.serve(...)

Endpoints (all JSON; errors are ``{"error": {"code": ..., "message": ..., "type": ...}}``):

* ``POST /v1/ask``: answer a question (rules, documents, answer, checker report, timings); as
  server-sent events with ``"stream": true`` or ``Accept: text/event-stream``;
* ``POST /v1/retrieve``: documents and matched rules for one question or a batch;
* ``GET /v1/rules``: the loaded rules, paginated, optionally for one head relation;
* ``POST /v1/check``: score an answer (instruction following, faithfulness, correctness);
* ``GET /v1/constraints``: the verifiable constraint ids the checker knows;
* ``POST /v1/chat/completions`` and ``GET /v1/models``: OpenAI-compatible (:mod:`server.openai_api`);
* ``POST /v1/documents``, ``POST /v1/documents/delete``: grow or shrink the served index (:mod:`server.index_api`);
* ``GET /healthz`` (always 200), ``GET /readyz`` (200 once loaded, 503 before), ``GET /`` (the page).

The index and models load once, in the lifespan (in a background thread by default, so
``/healthz`` answers at once and ``/readyz`` says when the API is usable).
"""

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from rulerag.checking import INSTRUCTIONS, check
from rulerag.checking.instructions import validate_kwargs
from rulerag.demo import DEMO_QUESTION, demo_rules_for
from rulerag.config import Settings, load_settings
from rulerag.embedding import TextEncoder
from rulerag.errors import RuleRAGError
from rulerag.generation import Generator
from rulerag.refine import Constraint
from server.apidocs import install_api_docs
from server.config import ServerSettings, load_api_keys, load_server_settings
from server.engine import Engine, Generated, Prepared
from server.errors import ApiError, error_body, install_error_handlers, internal_error_parts, rulerag_error_parts
from server.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from server.index_api import install_index_api
from server.openai_api import install_openai_api
from server.models import (
    AskResponse,
    CheckReportOut,
    ConstraintList,
    ErrorResponse,
    Health,
    Ready,
    RetrieveResponse,
    RulesPage,
    request_models,
)

log = logging.getLogger("rulerag.server")
STATIC = Path(__file__).resolve().parent / "static"

try:
    __version__ = version("rulerag")
except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
    __version__ = "0.1.0"


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


def _sse(event: str, data: Any) -> bytes:
    """One server-sent event; ``data`` as one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)}\n\n".encode()


_SSE_EXAMPLE = (
    'event: rules\ndata: {"question": "...", "mode": "rulerag", "rules": [...]}\n\n'
    'event: documents\ndata: {"documents": [...]}\n\n'
    'event: token\ndata: {"text": "Nor"}\n\n'
    'event: token\ndata: {"text": "land"}\n\n'
    'event: answer\ndata: {"answer": "Norland"}\n\n'
    'event: done\ndata: {...the JSON response...}\n\n'
)


#: One server-sent event (OpenAPI 3.2 ``itemSchema`` form, as FastAPI writes it): ``data`` is JSON.
_SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["rules", "documents", "token", "answer", "check", "done", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


def _wants_events(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "text/event-stream" in accept and "application/json" not in accept


def create_app(
    index: Path | str,
    rules: Path | str | None = None,
    settings: Settings | None = None,
    *,
    generator: Generator | None = None,
    api_keys: set[str] | None = None,
    encoder: TextEncoder | None = None,
    server_settings: ServerSettings | dict[str, Any] | None = None,
) -> FastAPI:
    """The web API over one index directory and rule file.

    ``settings``: toolkit settings (default :func:`rulerag.config.load_settings`: defaults < YAML <
    ``RULERAG_*`` environment). ``generator``: a ready generator backend (default: built from
    ``settings.generation``). ``api_keys``: accepted ``X-API-Key`` values (default from
    ``RULERAG_API_KEYS`` / ``RULERAG_API_KEYS_FILE``; none = no auth). ``encoder``: a query
    encoder (tests pass a light one). ``server_settings``: limits and switches
    (:class:`~server.config.ServerSettings`; default from ``RULERAG_SERVER__*``).
    """
    settings = settings or load_settings()
    limits = load_server_settings(server_settings)
    keys = load_api_keys(api_keys)
    index = Path(index)
    if rules is None and settings.rules.path is None:
        rules = demo_rules_for(index)
    engine = Engine(index, Path(rules) if rules is not None else None, settings, limits, generator=generator, encoder=encoder)
    models = request_models(limits)
    AskRequest, RetrieveRequest, CheckRequest = models.AskRequest, models.RetrieveRequest, models.CheckRequest

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("API-key auth %s; CORS %s; limits %s", f"on ({len(keys)} key(s))" if keys else "off",
                 ", ".join(limits.cors_origins) or "off", limits.model_dump(exclude={"cors_origins"}))
        engine.open()
        engine.start_loading(limits.load_in_background)
        try:
            yield
        finally:
            engine.close()

    app = FastAPI(
        title="RuleRAG API",
        version=__version__,
        summary="Rule-guided retrieval-augmented question answering.",
        description=(
            "Ask questions over an index with rule-guided retrieval (RuleRAG), retrieve documents and matched rules, "
            "browse the rules and score answers with the checker. Every error is "
            '`{"error": {"code": "stable_code", "message": "what to change"}}`.'
            + (" Requests to `/v1/*` need an `X-API-Key` header." if keys else "")
        ),
        lifespan=lifespan,
        docs_url=None,  # served from local files by install_api_docs, not from a CDN
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.limits = limits
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    if limits.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=limits.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Accept", "X-API-Key", "Authorization"], allow_credentials=False, max_age=600)
    app.add_middleware(SecurityHeadersMiddleware)

    # ----------------------------------------------------------------------------- auth

    key_bytes = [k.encode("utf-8") for k in sorted(keys)]
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of the server's API keys")

    bearer_header = HTTPBearer(auto_error=False, description="one of the server's API keys (what OpenAI clients send)")

    def check_key(key: str | None, where: str) -> None:
        if not key:
            raise ApiError(401, "missing_api_key", f"this server needs an API key. Fix: send it in {where}",
                           {"WWW-Authenticate": "ApiKey"})
        given = key.encode("utf-8", "surrogateescape")
        ok = False
        for candidate in key_bytes:  # compare with every key, no early exit
            ok |= hmac.compare_digest(given, candidate)
        if not ok:
            raise ApiError(401, "invalid_api_key", f"the API key is not valid. Fix: send a key the server accepts in {where}",
                           {"WWW-Authenticate": "ApiKey"})

    async def require_key(key: Annotated[str | None, Security(api_key_header)] = None) -> None:
        check_key(key, "the X-API-Key header")

    async def require_key_or_bearer(key: Annotated[str | None, Security(api_key_header)] = None,
                                    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_header)] = None) -> None:
        check_key(key or (bearer.credentials if bearer else None), "an Authorization: Bearer header (the OpenAI client's api_key) or X-API-Key")

    common = {400: _err("Not JSON, or a bad header"), 413: _err("Request body too large"),
              422: _err("Invalid request (the code names the problem)"), 500: _err("Internal error (no details; see the server log)")}
    if keys:
        common[401] = _err("Missing or invalid API key")
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)] if keys else [], responses=common)
    not_ready = {503: _err("Still loading (not_ready), failed to load (load_failed), or too busy (server_busy)")}

    # ----------------------------------------------------------------------------- /v1/ask

    def _notes(prepared: Prepared, generated: Generated) -> tuple[Any, list[str]]:
        """Why the answer (its support), and the warnings: instruction-like document text kept out of
        the prompt, an answer that repeats it, an answer no document states."""
        support, notes = engine.require_ready().explain(generated.answer, prepared.result, prepared.documents, prepared.shown)
        return support, prepared.warnings + notes

    def _answer_dict(prepared: Prepared, generated: Generated, include_prompt: bool, t0: float,
                     notes: tuple[Any, list[str]] | None = None) -> dict[str, Any]:
        """The /v1/ask response; ``notes``: :func:`_notes` when the caller has them already."""
        result = prepared.result
        support, warnings = notes or _notes(prepared, generated)
        return {
            "warnings": warnings,
            "support": support.to_dict() if support is not None else None,
            "question": result.question,
            "answer": generated.answer,
            "mode": result.mode.value,
            "generator": engine.generator.name if engine.generator else "",
            "rules": [m.to_dict() for m in result.rules],
            "documents": [d.to_dict() for d in result.documents],
            "instructions": prepared.shown,
            "check": generated.report.to_dict() if generated.report is not None else None,
            "rounds": generated.rounds,
            "prompt": {"system": prepared.prompt.system, "user": prepared.prompt.user} if include_prompt else None,
            "timings": {"retrieval_s": round(prepared.retrieval_s, 4), "generation_s": round(generated.generation_s, 4),
                        "total_s": round(time.perf_counter() - t0, 4)},
        }

    @v1.post(
        "/ask",
        response_model=AskResponse,
        summary="Answer a question",
        responses={200: {"description": "The answer; with streaming, server-sent events `rules`, `documents`, `token` (each "
                                        "piece of the answer as it is decoded), `answer`, "
                                        "`check` (with constraints), then `done` (the full JSON answer) or `error`.",
                         "content": {"text/event-stream": {"itemSchema": _SSE_EVENT_SCHEMA, "example": _SSE_EXAMPLE}}},
                   502: _err("The generator failed"), **not_ready},
    )
    async def ask(body: AskRequest, request: Request) -> Any:  # type: ignore[valid-type]
        """Rules matched to the question guide retrieval (mode `rulerag`); the generator answers from the
        documents. With `constraints` (IFEval / FollowRAG ids) the answer is checked and, while some fail,
        regenerated up to `refine_rounds` times; the report comes back in `check`."""
        t0 = time.perf_counter()
        engine.require_ready()
        constraints = [Constraint(c.id, validate_kwargs(c.id, c.kwargs)) for c in body.constraints]
        args = (body.question, body.k, body.mode, list(body.instructions), constraints)
        gen_args = (constraints, body.max_new_tokens, body.temperature, body.refine_rounds)
        if body.stream or _wants_events(request):
            return StreamingResponse(_ask_events(args, gen_args, body.include_prompt, t0), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        prepared = await engine.prepare(*args)
        generated = await engine.generate(engine.run_generator, prepared, *gen_args)
        return _answer_dict(prepared, generated, body.include_prompt, t0)

    async def _ask_events(args: tuple, gen_args: tuple, include_prompt: bool, t0: float) -> AsyncIterator[bytes]:
        try:
            prepared = await engine.prepare(*args)
            result = prepared.result
            yield _sse("rules", {"question": result.question, "mode": result.mode.value, "rules": [m.to_dict() for m in result.rules]})
            yield _sse("documents", {"documents": [d.to_dict() for d in result.documents], "warnings": prepared.warnings})
            pieces: asyncio.Queue[str | None] = asyncio.Queue()
            loop = asyncio.get_running_loop()

            def on_piece(piece: str) -> None:  # generator thread -> event loop
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

            # token events carry the answer as it is decoded; with constraints the kept answer may be a
            # refined one, so only the final `answer` event is sent
            job = asyncio.ensure_future(engine.generate(engine.run_generator, prepared, *gen_args,
                                                        None if gen_args[0] else on_piece))
            job.add_done_callback(lambda _: pieces.put_nowait(None))
            try:
                while (piece := await pieces.get()) is not None:
                    yield _sse("token", {"text": piece})
            finally:
                if not job.done():
                    job.cancel()
            generated = await job
            notes = _notes(prepared, generated)
            support, warnings = notes
            yield _sse("answer", {"answer": generated.answer, "warnings": warnings,
                                  "support": support.to_dict() if support is not None else None})
            if generated.report is not None:
                yield _sse("check", {"check": generated.report.to_dict(), "rounds": generated.rounds})
            done = _answer_dict(prepared, generated, include_prompt, t0, notes)
            yield _sse("done", AskResponse.model_validate(done).model_dump(mode="json"))
        except ApiError as exc:
            yield _sse("error", error_body(exc.code, exc.message))
        except RuleRAGError as exc:
            _, code, message = rulerag_error_parts(exc)
            yield _sse("error", error_body(code, message))
        except Exception as exc:  # noqa: BLE001 - the client gets a generic error event, the log the trace
            _, code, message = internal_error_parts(exc, "POST /v1/ask (stream)")
            yield _sse("error", error_body(code, message))

    # ----------------------------------------------------------------------------- /v1/retrieve

    @v1.post("/retrieve", response_model=RetrieveResponse, summary="Retrieve documents and matched rules", responses=not_ready)
    async def retrieve(body: RetrieveRequest) -> Any:  # type: ignore[valid-type]
        """No generation. One `question` (with an optional `relation` for a structured query and a `time`),
        or a batch of `questions` (with optional `relations` and `times`, one per question), searched together."""
        t0 = time.perf_counter()
        engine.require_ready()
        if body.question is not None:
            questions, relations, times = [body.question], [body.relation], [body.time]
        else:
            questions, relations, times = list(body.questions), body.relations, body.times
        results = await engine.retrieve(questions, body.k, body.mode, relations, times)
        return {"results": [r.to_dict() for r in results], "timings": {"total_s": round(time.perf_counter() - t0, 4)}}

    # ----------------------------------------------------------------------------- /v1/rules

    @v1.get("/rules", response_model=RulesPage, summary="List the loaded rules", responses=not_ready)
    async def list_rules(
        relation: Annotated[str | None, Query(max_length=200, description="only rules concluding this head relation")] = None,
        offset: Annotated[int, Query(ge=0, le=10**9, description="rules to skip")] = 0,
        limit: Annotated[int, Query(ge=1, le=limits.max_page, description=f"page size (1-{limits.max_page})")] = 50,
    ) -> Any:
        """Rules by head relation (alphabetical), then by confidence (highest first)."""
        rag = engine.require_ready()
        store = rag.rules
        if store is None:
            selected: list = []
        elif relation is not None:
            selected = store.by_head(relation)
        else:
            selected = engine.rule_list
        page = selected[offset : offset + limit]
        return {"items": [r.to_dict() for r in page], "total": len(selected), "offset": offset, "limit": limit,
                "next_offset": offset + limit if offset + limit < len(selected) else None, "relation": relation}

    # ----------------------------------------------------------------------------- /v1/check

    @v1.post("/check", response_model=CheckReportOut, summary="Score an answer", responses={503: _err("Too busy (server_busy)")})
    async def check_answer(body: CheckRequest) -> Any:  # type: ignore[valid-type]
        """Instruction following (IFEval strict and loose), contradiction detection, faithfulness to
        `documents` and correctness against `golden_answers`, as `rulerag check` reports them."""
        def run() -> dict[str, Any]:
            return check(body.response, body.instruction_id_list, body.kwargs, question=body.question,
                         documents=body.documents, golden_answers=body.golden_answers).to_dict()

        return await engine.work(run)

    @v1.get("/constraints", response_model=ConstraintList, summary="List the verifiable constraints")
    async def constraints() -> Any:
        """The instruction ids `/v1/ask` constraints and `/v1/check` accept (IFEval ids; FollowRAG ids are aliases)."""
        return {"items": [{"id": s.id, "followrag_id": s.followrag_id, "description": s.description, "kwargs": dict(s.kwargs)}
                          for s in INSTRUCTIONS.values()]}

    app.include_router(v1)

    # ----------------------------------------------------------------------------- OpenAI-compatible

    openai_v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key_or_bearer)] if keys else [], responses=common)
    install_openai_api(openai_v1, engine, limits, lambda prepared, generated, t0: _answer_dict(prepared, generated, False, t0),
                       not_ready)
    app.include_router(openai_v1)
    updates_v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)] if keys else [], responses=common)
    install_index_api(updates_v1, engine, limits, has_keys=bool(keys), responses=not_ready)
    app.include_router(updates_v1)

    # ----------------------------------------------------------------------------- health, page

    @app.get("/healthz", response_model=Health, summary="Liveness", tags=["health"])
    async def healthz() -> Any:
        """200 while the process serves requests, loaded or not."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, summary="Readiness", tags=["health"],
             responses={503: _err("Not loaded yet (not_ready) or failed to load (load_failed)")})
    async def readyz() -> Any:
        """200 once the index, rules and models are loaded; 503 before (and after a failed load)."""
        rag = engine.require_ready()
        return {"status": "ready", "index": engine.index_path.name, "documents": len(rag.index.docs),
                "rules": len(rag.rules or ()), "generator": engine.generator.name if engine.generator else "",
                "load_s": round(engine.load_s, 3)}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_api_docs(app)
    app.state.demo_question = DEMO_QUESTION
    return app
