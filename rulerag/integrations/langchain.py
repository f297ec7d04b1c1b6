"""LangChain integration: a ``BaseRetriever`` over RuleRAG's rule-guided retrieval.

Example:
    >>> from rulerag.pipeline import RuleRAG
    >>> rag = RuleRAG.from_index("indexes/demo", rules="rules/demo.jsonl")   # doctest: +SKIP
    >>> retriever = RuleRAGRetriever(pipeline=rag, k=3)                        # doctest: +SKIP
    >>> docs = retriever.invoke("Which country is Alice Marlow a citizen of?")  # doctest: +SKIP
    >>> docs[0].metadata["score"], docs[0].metadata["rules"][0]["rule"]["text"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from rulerag.config import Mode


class RuleRAGRetriever(BaseRetriever):
    """Rule-guided retriever for LangChain chains.

    Each returned ``Document`` has ``page_content`` = the passage and ``metadata`` with ``id``,
    ``score``, ``rank``, ``found_by`` (which queries found it), the corpus metadata, and ``rules``
    (the matched rules with their scores, the same list on every document of a call).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Any = Field(description="a rulerag.pipeline.RuleRAG")
    k: int = Field(5, ge=1, description="documents returned per query")
    mode: Mode = Mode.rulerag

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        result = self.pipeline.retrieve(query, k=self.k, mode=self.mode)
        rules = [m.to_dict() for m in result.rules]
        return [
            LCDocument(
                page_content=d.contents,
                id=d.id,
                metadata={**d.metadata, "id": d.id, "score": d.score, "rank": d.rank, "found_by": list(d.found_by), "rules": rules},
            )
            for d in result.documents
        ]
