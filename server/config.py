"""Server settings: request limits, CORS, worker counts, API keys.

Layers, lowest first: defaults < environment (``RULERAG_SERVER__<FIELD>``, e.g.
``RULERAG_SERVER__MAX_K=20``) < constructor arguments (``create_app(..., server_settings=...)``
or ``serve(..., limits={...})``). API keys come from ``RULERAG_API_KEYS`` (comma-separated) or the
file named by ``RULERAG_API_KEYS_FILE`` (one key per line, ``#`` comments), unless passed
explicitly.

Example:
    >>> ServerSettings(max_k=20).max_k
    20
    >>> ServerSettings(cors_origins="http://a.example, http://b.example").cors_origins
    ['http://a.example', 'http://b.example']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rulerag.errors import ConfigError


class ServerSettings(BaseSettings):
    """Limits and switches of the web API. Every limit is checked before any work is done."""

    model_config = SettingsConfigDict(env_prefix="RULERAG_SERVER__", extra="forbid")

    max_body_bytes: int = Field(262_144, ge=1024, description="largest request body (413 above); checked on Content-Length and on the bytes read")
    max_question_chars: int = Field(1000, ge=1, le=100_000, description="longest question")
    max_k: int = Field(50, ge=1, le=1000, description="most documents per question")
    max_batch: int = Field(32, ge=1, le=1024, description="most questions in one /v1/retrieve call")
    max_instructions: int = Field(10, ge=0, le=100, description="most instructions and most constraints per request")
    max_instruction_chars: int = Field(500, ge=1, le=100_000, description="longest instruction text")
    max_new_tokens: int = Field(512, ge=1, le=4096, description="largest max_new_tokens a request may ask for")
    max_temperature: float = Field(2.0, ge=0, description="largest temperature a request may ask for")
    max_refine_rounds: int = Field(5, ge=0, le=10, description="largest refine_rounds a request may ask for")
    max_response_chars: int = Field(20_000, ge=1, description="longest answer text /v1/check scores")
    max_documents: int = Field(50, ge=0, le=1000, description="most documents /v1/check takes")
    max_document_chars: int = Field(20_000, ge=1, description="longest document /v1/check and /v1/documents take")
    max_update_documents: int = Field(1000, ge=1, le=100_000, description="most documents one /v1/documents call adds or removes")
    max_page: int = Field(200, ge=1, le=10_000, description="largest page of /v1/rules")
    retrieval_workers: int = Field(1, ge=1, le=64, description="threads running batched retrieval (the generator has its own single thread)")
    retrieval_batch: int = Field(32, ge=1, le=1024, description="most questions retrieved together in one batch")
    compute_threads: int | None = Field(
        1, ge=0, le=256,
        description="threads torch and FAISS use per operation (torch: process-wide; FAISS: in the threads that search). "
                    "1 (default) keeps latency steady when other jobs share the cores: with 2 threads on 2 busy cores a "
                    "rule-guided /v1/retrieve took 10x longer. 0 or None: the libraries' defaults (all cores), for a dedicated machine",
    )
    max_pending: int = Field(256, ge=1, description="requests queued for a worker before new ones get 503 server_busy")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS (comma-separated in the environment); empty = CORS off"
    )
    load_in_background: bool = Field(
        True, description="load the index and models in a thread after start-up (/readyz is 503 meanwhile); False blocks start-up"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


def load_server_settings(overrides: dict[str, Any] | ServerSettings | None = None) -> ServerSettings:
    """Defaults < ``RULERAG_SERVER__*`` environment < ``overrides``; invalid values raise ``ConfigError``."""
    if isinstance(overrides, ServerSettings):
        return overrides
    try:
        return ServerSettings(**{k: v for k, v in (overrides or {}).items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid server settings: {problems}. Fix: see `server.config.ServerSettings`") from exc


def load_api_keys(explicit: set[str] | None = None) -> set[str]:
    """API keys: ``explicit`` when given (an empty set turns auth off), else ``$RULERAG_API_KEYS``
    (comma-separated) plus the lines of ``$RULERAG_API_KEYS_FILE``. No keys = auth off."""
    if explicit is not None:
        keys = {k.strip() for k in explicit}
    else:
        keys = {k.strip() for k in os.environ.get("RULERAG_API_KEYS", "").split(",")}
        path = os.environ.get("RULERAG_API_KEYS_FILE")
        if path:
            file = Path(path)
            if not file.is_file():
                raise ConfigError(f"RULERAG_API_KEYS_FILE={path} does not exist. Fix: point it at a file with one key per line, or unset it")
            for line in file.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    keys.add(line)
    keys.discard("")
    for key in keys:
        if len(key) < 8:
            raise ConfigError("an API key is shorter than 8 characters. Fix: use long random keys, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return keys
