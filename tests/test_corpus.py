"""Corpus reading/writing and fact linearisation."""

from __future__ import annotations

import pytest

from rulerag.corpus import Document, linearise_fact, read_corpus, write_corpus
from rulerag.errors import CorpusFormatError


def test_linearise_temporal_and_static():
    assert linearise_fact("Representatives (Nigeria)", "Consult", "Media (Africa)", "2014-08-22") == (
        "Time 2014-08-22 Representatives (Nigeria) Consult Media (Africa)."
    )
    assert linearise_fact("Alice", "born_in", "Norland") == "Alice born in Norland."


def test_round_trip_keeps_metadata(tmp_path):
    docs = [Document("a", "x y", {"time": "2014"}), Document("b", "z")]
    assert write_corpus(docs, tmp_path / "c.jsonl") == 2
    back = read_corpus(tmp_path / "c.jsonl")
    assert back == docs and back[0].metadata == {"time": "2014"}


@pytest.mark.parametrize(
    "content, line, problem",
    [
        ('{"id": "1", "contents": "ok"}\nnot json\n', 2, "not valid JSON"),
        ('["a list"]\n', 1, "line is not a JSON object"),
        ('{"contents": "no id"}\n', 1, "missing or non-string 'id'"),
        ('{"id": "1", "contents": "  "}\n', 1, "missing or empty 'contents'"),
        ('{"id": "1", "contents": "a"}\n\n{"id": "1", "contents": "b"}\n', 3, "duplicate id '1'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, content, line, problem):
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(CorpusFormatError, match=rf"c\.jsonl:{line}: {problem}.*Fix:") as info:
        read_corpus(path)
    assert info.value.line == line


def test_missing_and_empty(tmp_path):
    with pytest.raises(CorpusFormatError, match="not found"):
        read_corpus(tmp_path / "none.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(CorpusFormatError, match="corpus is empty"):
        read_corpus(tmp_path / "e.jsonl")


def test_text_field_is_accepted_and_int_ids_become_strings(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": 7, "text": "hello"}\n')
    assert read_corpus(path) == [Document("7", "hello")]
