"""Growing and shrinking the served index: ``POST /v1/documents`` and ``POST /v1/documents/delete``.

Both change the index directory on disk (:func:`rulerag.retrieval.update.update_index`: only new
documents are embedded, BM25 is rebuilt, the directory is swapped in atomically), then the server
loads the new index and swaps it in: requests in flight finish on the old one, later ones see the
new one, never a mix. Updates run one at a time. They need an API key: a server started without
keys refuses them (403 ``updates_need_api_key``), since anyone who can reach it could rewrite
its index, and so does one started with ``--workers N`` (409 ``updates_need_one_worker``: the
other workers would keep the old index).
"""

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rulerag.corpus import Document
from server.config import ServerSettings
from server.engine import Engine
from server.errors import ApiError


class UpdateResult(BaseModel):
    """What an update did."""

    added: int = Field(description="documents added")
    removed: int = Field(description="documents removed")
    num_docs: int = Field(description="documents in the index now")
    seconds: float = Field(description="time to update the index on disk and load it")


def install_index_api(router: APIRouter, engine: Engine, limits: ServerSettings, *, has_keys: bool, responses: dict) -> None:
    """Add the document endpoints to ``router`` (mounted at ``/v1`` with the API's auth)."""
    Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]

    class DocumentIn(BaseModel):
        """A document to add: ``id``, ``contents`` and any metadata fields (kept in the store)."""

        model_config = ConfigDict(extra="allow")

        id: Id
        contents: Annotated[str, StringConstraints(min_length=1, max_length=limits.max_document_chars)]

    class AddRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"documents": [{"id": "news-1", "contents": "Alice Marlow moved to Dravport."}]}]})

        documents: list[DocumentIn] = Field(min_length=1, max_length=limits.max_update_documents,
                                            description="documents whose ids the index does not hold yet")

    class DeleteRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ids": ["news-1"]}]})

        ids: list[Id] = Field(min_length=1, max_length=limits.max_update_documents, description="ids of documents in the index")

    def require_keys() -> None:
        if not has_keys:
            raise ApiError(403, "updates_need_api_key", "this server runs without API keys, so it does not let requests change its "
                                                        "index. Fix: start it with RULERAG_API_KEYS (or RULERAG_API_KEYS_FILE) set, "
                                                        "or use `rulerag index add` / `index remove` and restart it")

        if engine.workers > 1:
            raise ApiError(409, "updates_need_one_worker", f"this server runs {engine.workers} worker processes, each with the "
                                                           "index loaded; an update would reach only the worker that took it. Fix: "
                                                           "use `rulerag index add` / `index remove` and restart the server, or serve "
                                                           "with --workers 1 to update it live")

    errors = {**responses, 403: {"description": "The server has no API keys, so updates are off"},
              409: {"description": "The server runs several worker processes, so live updates are off"}}

    @router.post("/documents", response_model=UpdateResult, summary="Add documents to the index", tags=["index"], responses=errors)
    async def add_documents(body: AddRequest) -> Any:  # type: ignore[valid-type]
        """Embeds only the new documents; an id already in the index (or given twice) is refused with the
        list of such ids, and nothing changes. Retrieval afterwards equals a fresh build on all documents."""
        require_keys()
        docs = [Document(d.id, d.contents, dict(d.model_extra or {})) for d in body.documents]
        return await engine.work(engine.update_documents, docs, ())

    @router.post("/documents/delete", response_model=UpdateResult, summary="Remove documents from the index", tags=["index"],
                 responses=errors)
    async def delete_documents(body: DeleteRequest) -> Any:  # type: ignore[valid-type]
        """By id; an id the index does not hold is refused with the list of such ids, and nothing changes."""
        require_keys()
        return await engine.work(engine.update_documents, (), set(body.ids))
