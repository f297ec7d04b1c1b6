"""Documents and corpora: JSON lines ``{"id": str, "contents": str, ...metadata}`` (FlashRAG's format).

Example:
    >>> linearise_fact("Alice Marlow", "born_in", "Tarvik")
    'Alice Marlow born in Tarvik.'
    >>> linearise_fact("Representatives (Nigeria)", "Consult", "Media (Africa)", "2014-08-22")
    'Time 2014-08-22 Representatives (Nigeria) Consult Media (Africa).'
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rulerag.errors import CorpusFormatError
from rulerag.io import atomic_file, iter_jsonl
from rulerag.text import relation_words


@dataclass(frozen=True)
class Document:
    """One retrievable passage. ``metadata`` holds every other JSON field of the corpus line."""

    id: str
    contents: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "contents": self.contents, **self.metadata}


def linearise_fact(subject: str, relation: str, obj: str, time: str | None = None) -> str:
    """Render a KG fact as a sentence (DESIGN.md section 2): ``[Time T ]S r O.``"""
    text = f"{subject} {relation_words(relation)} {obj}."
    return f"Time {time} {text}" if time else text


def iter_corpus(path: str | Path) -> Iterator[Document]:
    """Read a JSONL corpus, failing with ``file:line`` on the first malformed line."""
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path, '{"id": "...", "contents": "..."}', CorpusFormatError):
        doc_id, contents = obj.pop("id", None), obj.pop("contents", None)
        if contents is None and "text" in obj:  # tolerate the common "text" field name
            contents = obj.pop("text")
        if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
            raise CorpusFormatError(path, lineno, "missing or non-string 'id'", "give every document a unique string id")
        if not isinstance(contents, str) or not contents.strip():
            raise CorpusFormatError(path, lineno, "missing or empty 'contents'", "give every document non-empty text in 'contents'")
        doc_id = str(doc_id)
        if doc_id in seen:
            raise CorpusFormatError(path, lineno, f"duplicate id {doc_id!r}", "make document ids unique")
        seen.add(doc_id)
        yield Document(doc_id, contents, obj)


def read_corpus(path: str | Path) -> list[Document]:
    """All documents of a JSONL corpus (see :func:`iter_corpus`)."""
    docs = list(iter_corpus(path))
    if not docs:
        raise CorpusFormatError(path, None, "corpus is empty", "add at least one document")
    return docs


def write_corpus(docs: Iterable[Document], path: str | Path) -> int:
    """Write documents as JSONL atomically; returns the number written."""
    n = 0
    with atomic_file(path, "wb") as fh:
        for doc in docs:
            fh.write(orjson.dumps(doc.to_dict()) + b"\n")
            n += 1
    return n


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
