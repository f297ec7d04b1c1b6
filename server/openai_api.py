"""OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Clients that speak the OpenAI protocol (the ``openai`` Python client, LangChain's ``ChatOpenAI``,
chat web UIs) get rule-guided answers from ``rulerag serve`` unchanged:

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="a-server-key-or-anything")
    reply = client.chat.completions.create(model="rulerag", messages=[{"role": "user", "content": "..."}])
    reply.choices[0].message.content     # "Norland [1][3]\\n\\nSources:\\n[1] ..."
    reply.model_extra["rulerag"]         # rules, documents, support, warnings (as POST /v1/ask)

How a chat maps onto RuleRAG, which answers one question at a time:

* the **last user message** is the question (text, or the text parts of a multi-part content);
  system messages and earlier turns do not steer retrieval or the answer (they are accepted, so
  clients that always send a system prompt work);
* ``max_tokens`` / ``max_completion_tokens`` and ``temperature`` are the generation options;
  ``n`` must be 1; sampling options RuleRAG has no use for (``top_p``, ``stop``, ``seed``, ...)
  are accepted and ignored; an optional ``rulerag`` object (``extra_body`` in the ``openai``
  client) sets ``k`` and ``mode`` as in ``/v1/ask``;
* the reply's text is the answer as the model wrote it, with the numbers of the documents that
  support it (``[1][3]``),
  the cited documents under ``Sources:``, and any warning (instruction-like document text kept
  out of the prompt, an answer no document states) on its own line; the full ``/v1/ask`` response
  travels in the extension field ``rulerag``, which OpenAI clients ignore (``rulerag.answer`` is
  the short answer extracted from the text, as ``/v1/ask`` gives it);
* streaming (``"stream": true``) sends ``chat.completion.chunk`` events: the role, the answer as
  it is decoded, the citations and sources, then a last chunk with ``finish_reason`` and the
  ``rulerag`` field, then ``data: [DONE]``; an error mid-stream is an ``{"error": ...}`` event;
* auth is the API's own: a server key in ``Authorization: Bearer`` (what OpenAI clients send) or
  ``X-API-Key``; errors are OpenAI-shaped (``{"error": {"message", "type", "code"}}``).
"""


import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rulerag.errors import RuleRAGError
from rulerag.generation.usage import call_usage
from rulerag.config import Mode
from server.config import ServerSettings
from server.engine import Engine, Generated, Prepared
from server.errors import ApiError, error_body, internal_error_parts, rulerag_error_parts

#: The model id clients pass; the generator's own name is accepted too.
MODEL_ID = "rulerag"
_SOURCE_CHARS = 200


class ContentPart(BaseModel):
    """One part of a multi-part message; only ``text`` parts carry a question."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class RuleRAGOptions(BaseModel):
    """RuleRAG's own options (``extra_body={"rulerag": {...}}`` in the ``openai`` client)."""

    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(None, ge=1, description="documents to retrieve (default from the server's settings)")
    mode: Mode | None = Field(None, description="standard or rulerag (default from settings)")


def chat_request_model(limits: ServerSettings) -> type[BaseModel]:
    """The request body, with the server's limits in its schema."""

    class ChatCompletionRequest(BaseModel):
        """An OpenAI chat completion request; see the module docstring for what RuleRAG reads."""

        model_config = ConfigDict(
            extra="allow",  # OpenAI clients send options RuleRAG has no use for; they are ignored
            json_schema_extra={"examples": [{"model": MODEL_ID, "messages": [
                {"role": "user", "content": "Which country is Alice Marlow a citizen of?"}]}]},
        )

        model: str = Field(description=f"'{MODEL_ID}' (see GET /v1/models)")
        messages: list[ChatMessage] = Field(min_length=1, max_length=200)
        stream: bool = False
        max_tokens: int | None = Field(None, ge=1, le=limits.max_new_tokens)
        max_completion_tokens: int | None = Field(None, ge=1, le=limits.max_new_tokens)
        temperature: float | None = Field(None, ge=0, le=limits.max_temperature)
        n: int = Field(1, ge=1, le=1, description="RuleRAG gives one answer")
        rulerag: RuleRAGOptions | None = None

    return ChatCompletionRequest


def _question(messages: list[ChatMessage], limits: ServerSettings) -> str:
    user = [m for m in messages if m.role == "user"]
    if not user:
        raise ApiError(422, "missing_user_message", "the messages hold no user message. Fix: end them with "
                                                    '{"role": "user", "content": "your question"}')
    question = user[-1].text().strip()
    if not question:
        raise ApiError(422, "empty_question", "the last user message has no text. Fix: put the question in its content")
    if len(question) > limits.max_question_chars:
        raise ApiError(422, "question_too_long", f"the question has {len(question)} characters. Fix: shorten it to at most "
                                                 f"{limits.max_question_chars} (server limit max_question_chars)")
    return question


def answer_text(answer: dict[str, Any], text: str | None = None) -> tuple[str, str]:
    """(the answer text with its citations, what follows it: sources and warnings) from a
    ``/v1/ask`` response. ``text``: the answer as the model wrote it (default: ``answer["answer"]``,
    the short answer extracted from it).

    Example:
        >>> answer_text({"answer": "Norland", "support": {"documents": [2]}, "warnings": [],
        ...              "documents": [{"id": "a", "contents": "x"}, {"id": "d7", "contents": "Veldt is in Norland."}]})
        ('Norland [2]', '\\n\\nSources:\\n[2] d7: Veldt is in Norland.')
    """
    cited = [n for n in (answer.get("support") or {}).get("documents", []) if 1 <= n <= len(answer["documents"])]
    head = (answer["answer"] if text is None else text) + "".join(f" [{n}]" if i == 0 else f"[{n}]" for i, n in enumerate(cited))
    tail = ""
    if cited:
        lines = []
        for n in cited:
            doc = answer["documents"][n - 1]
            words = " ".join(str(doc.get("contents", "")).split())
            words = words if len(words) <= _SOURCE_CHARS else words[: _SOURCE_CHARS - 3] + "..."
            lines.append(f"[{n}] {doc.get('id', '')}: {words}")
        tail += "\n\nSources:\n" + "\n".join(lines)
    if answer.get("warnings"):
        tail += "\n\n" + "\n".join(f"Warning: {w}" for w in answer["warnings"])
    return head, tail


class _Trimmer:
    """Streams pieces so that their concatenation is the whole text ``.strip()``-ed: leading
    whitespace is dropped, trailing whitespace held back until more text follows."""

    def __init__(self) -> None:
        self.started = False
        self.pending = ""

    def __call__(self, piece: str) -> str:
        if not self.started:
            piece = piece.lstrip()
        body = piece.rstrip()
        if not body:
            if self.started:
                self.pending += piece
            return ""
        out, self.pending, self.started = self.pending + body, piece[len(body):], True
        return out


def install_openai_api(
    router: APIRouter,
    engine: Engine,
    limits: ServerSettings,
    answer_dict: Callable[[Prepared, Generated, float], dict[str, Any]],
    responses: dict[int | str, Any],
) -> None:
    """Add the OpenAI-compatible endpoints to ``router`` (mounted at ``/v1``, with the API's auth).
    ``answer_dict(prepared, generated, t0)``: the ``/v1/ask`` response for an answer."""
    ChatRequest = chat_request_model(limits)

    def model_ids() -> list[str]:
        name = engine.generator.name if engine.generator is not None else ""
        return [MODEL_ID] + ([name] if name and name != MODEL_ID else [])

    @router.get("/models", summary="Models (OpenAI-compatible)", tags=["openai"])
    async def list_models() -> Any:
        """The model ids `/v1/chat/completions` accepts, in OpenAI's list format."""
        engine.require_ready()
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "rulerag"} for m in model_ids()]}

    def generate_counted(prepared: Prepared, max_new: int | None, temperature: float | None,
                         on_piece: Callable[[str], None] | None) -> tuple[Generated, dict[str, int]]:
        """Generate (on the generator thread) and read that call's token counts there."""
        if hasattr(engine.generator, "last_usage"):
            engine.generator.last_usage = {}  # a backend that does not count is estimated, not read stale
        generated = engine.run_generator(prepared, [], max_new, temperature, 0, on_piece)
        prompt_tokens, completion_tokens, _ = call_usage(engine.generator, prepared.prompt, generated.raw)
        return generated, {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                           "total_tokens": prompt_tokens + completion_tokens}

    @router.post("/chat/completions", summary="Chat completion (OpenAI-compatible)", tags=["openai"],
                 responses={**responses, 404: {"description": "Unknown model"}, 502: {"description": "The generator failed"}})
    async def chat_completions(body: ChatRequest, request: Request) -> Any:  # type: ignore[valid-type]
        """The last user message is the question; the answer comes with its citations, and the full
        `/v1/ask` response in the extension field `rulerag`. With `"stream": true`, server-sent
        `chat.completion.chunk` events ending in `data: [DONE]`."""
        t0 = time.perf_counter()
        engine.require_ready()
        if body.model not in model_ids():
            raise ApiError(404, "model_not_found", f"no model {body.model!r} here. Fix: use model {MODEL_ID!r} (see GET /v1/models)")
        question = _question(body.messages, limits)
        opts = body.rulerag or RuleRAGOptions()
        if opts.k is not None and opts.k > limits.max_k:
            raise ApiError(422, "k_too_large", f"rulerag.k is {opts.k}. Fix: ask for at most {limits.max_k} documents (server limit max_k)")
        max_new = body.max_completion_tokens or body.max_tokens
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model}
        prepared = await engine.prepare(question, opts.k, opts.mode, [], [])
        if body.stream:
            return StreamingResponse(_chunks(prepared, max_new, body.temperature, meta, t0), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        generated, usage = await engine.generate(generate_counted, prepared, max_new, body.temperature, None)
        answer = answer_dict(prepared, generated, t0)
        head, tail = answer_text(answer, generated.raw.strip())
        return {**meta, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": head + tail},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": usage, "rulerag": answer}

    def chunk(meta: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {**meta, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False, default=str)}\n\n".encode()

    async def _chunks(prepared: Prepared, max_new: int | None, temperature: float | None, meta: dict[str, Any],
                      t0: float) -> AsyncIterator[bytes]:
        try:
            yield chunk(meta, {"role": "assistant", "content": ""})
            pieces: asyncio.Queue[str | None] = asyncio.Queue()
            loop = asyncio.get_running_loop()

            def on_piece(piece: str) -> None:  # generator thread -> event loop
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

            job: Awaitable[Any] = asyncio.ensure_future(engine.generate(generate_counted, prepared, max_new, temperature, on_piece))
            job.add_done_callback(lambda _: pieces.put_nowait(None))  # type: ignore[attr-defined]
            trim = _Trimmer()
            try:
                while (piece := await pieces.get()) is not None:
                    if text := trim(piece):
                        yield chunk(meta, {"content": text})
            finally:
                if not job.done():  # type: ignore[attr-defined]
                    job.cancel()  # type: ignore[attr-defined]
            generated, usage = await job
            answer = answer_dict(prepared, generated, t0)
            # the pieces streamed so far are the model's text; the citations, sources and warnings
            # follow, so the whole stream is the non-streamed content
            head, tail = answer_text(answer, "")
            if head + tail:
                yield chunk(meta, {"content": head + tail})
            yield chunk(meta, {}, "stop", usage=usage, rulerag=answer)
            yield b"data: [DONE]\n\n"
        except ApiError as exc:
            yield _error_event(exc.status_code, exc.code, exc.message)
        except RuleRAGError as exc:
            yield _error_event(*rulerag_error_parts(exc))
        except Exception as exc:  # noqa: BLE001 - the client gets a generic error, the log the trace
            yield _error_event(*internal_error_parts(exc, "POST /v1/chat/completions (stream)"))


def _error_event(status: int, code: str, message: str) -> bytes:
    body = error_body(code, message, status=status)
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

