"""The OpenAI-compatible endpoints, driven by the real ``openai`` client and LangChain's
``ChatOpenAI`` against a live ``uvicorn`` server (the demo corpus, hashing encoder, a generator
that streams document [1]'s text word by word: no model is loaded)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from rulerag.demo import DEMO_CORPUS, DEMO_QUESTION, DEMO_RULES  # noqa: E402
from rulerag.generation import Prompt  # noqa: E402
from rulerag.generation.backends import first_document  # noqa: E402
from rulerag.retrieval.index import build_index  # noqa: E402
from server.app import create_app  # noqa: E402
from server.openai_api import answer_text  # noqa: E402
from server.testing import ServerThread  # noqa: E402
from tests.fakes import HashEncoder  # noqa: E402
from tests.test_server import fixed_settings  # noqa: E402

KEY = "openai-test-key-0123456789"


class WordStreamer:
    """Answers with document [1]'s text; streams it one word at a time."""

    name = "word-streamer"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        return "".join(self.stream(prompt, max_new_tokens=max_new_tokens, temperature=temperature))

    def stream(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        words = first_document(prompt).split(" ")
        for i, word in enumerate(words):
            if self.fail and i == 2:
                from rulerag.errors import GenerationError

                raise GenerationError("engine died mid-stream")
            yield word if i == 0 else " " + word


def live(index: Path, generator, corpus_rules=DEMO_RULES) -> ServerThread:
    app = create_app(index, corpus_rules, fixed_settings(), generator=generator, api_keys={KEY}, encoder=HashEncoder(),
                     server_settings={"load_in_background": False})
    return ServerThread(app)


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("openai") / "demo-hash"
    build_index(DEMO_CORPUS, out, progress=False, encoder=HashEncoder())
    return out


@pytest.fixture(scope="module")
def url(index) -> Iterator[str]:
    with live(index, WordStreamer()) as base:
        yield base


def client(url: str, key: str = KEY):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30,
                         http_client=openai.DefaultHttpxClient(trust_env=False))


def ask(url: str, **kwargs):
    return client(url).chat.completions.create(model="rulerag", messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": DEMO_QUESTION}], **kwargs)


def test_openai_client_gets_a_rule_guided_answer_with_citations(url):
    reply = ask(url)
    extra = reply.model_extra["rulerag"]
    assert reply.object == "chat.completion" and reply.model == "rulerag" and len(reply.choices) == 1
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.role == "assistant"
    content = reply.choices[0].message.content
    # the answer, its cited documents by number, and those documents under Sources
    assert extra["question"] == DEMO_QUESTION and extra["answer"] and content.startswith(extra["answer"])
    cited = extra["support"]["documents"]
    # the text as the model wrote it (document [1]'s sentence, with its full stop), then the citations
    assert cited and content.split("\n")[0] == extra["documents"][0]["contents"] + " " + "".join(f"[{n}]" for n in cited)
    sources = content.split("Sources:\n", 1)[1].splitlines()
    assert [int(re.match(r"\[(\d+)\]", s).group(1)) for s in sources] == cited
    assert all(extra["documents"][n - 1]["id"] in s for n, s in zip(cited, sources))
    # rule-guided: the demo question matches rules, and the response says which
    assert extra["mode"] == "rulerag" and extra["rules"]
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_openai_client_streams_the_same_answer(url):
    whole = ask(url).choices[0].message.content
    chunks = list(ask(url, stream=True))
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([d for d in deltas if d]) >= 3  # word by word, then citations and sources
    assert "".join(deltas) == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].model_extra["rulerag"]["answer"] and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_generation_options_and_rulerag_extension(url):
    reply = ask(url, max_tokens=5, temperature=0, extra_body={"rulerag": {"k": 2, "mode": "standard"}})
    extra = reply.model_extra["rulerag"]
    assert len(extra["documents"]) == 2 and extra["mode"] == "standard" and extra["rules"] == []


def test_models_list_and_the_api_key_in_either_header(url):
    assert [m.id for m in client(url).models.list()] == ["rulerag", "word-streamer"]
    with pytest.raises(openai.AuthenticationError) as err:
        client(url, key="wrong-key").models.list()
    assert err.value.code == "invalid_api_key" and err.value.body["type"] == "authentication_error"
    import httpx

    with httpx.Client(base_url=url, trust_env=False) as http:
        assert http.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200
        r = http.get("/v1/models")
        assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"]


@pytest.mark.parametrize("kwargs, error, code", [
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "q?"}]}, "NotFoundError", "model_not_found"),
    ({"model": "rulerag", "messages": [{"role": "system", "content": "Be brief."}]}, "UnprocessableEntityError", "missing_user_message"),
    ({"model": "rulerag", "messages": [{"role": "user", "content": "  "}]}, "UnprocessableEntityError", "empty_question"),
    ({"model": "rulerag", "messages": [{"role": "user", "content": "q?"}], "n": 2}, "UnprocessableEntityError", "invalid_n"),
    ({"model": "rulerag", "messages": [{"role": "user", "content": "q?"}], "max_tokens": 10**6}, "UnprocessableEntityError",
     "max_new_tokens_too_large"),
    ({"model": "rulerag", "messages": [{"role": "user", "content": "q?"}], "extra_body": {"rulerag": {"k": 10**4}}},
     "UnprocessableEntityError", "k_too_large"),
    ({"model": "rulerag", "messages": [{"role": "user", "content": "q" * 100_000}]}, "UnprocessableEntityError", "question_too_long"),
])
def test_bad_requests_get_openai_style_errors(url, kwargs, error, code):
    with pytest.raises(getattr(openai, error)) as err:
        client(url).chat.completions.create(**kwargs)
    body = err.value.body
    assert err.value.code == code, body
    assert body["message"] and "Fix" in body["message"] and body["type"] in ("invalid_request_error", "not_found_error")


def test_an_engine_error_mid_stream_reaches_the_client(index):
    with live(index, WordStreamer(fail=True)) as base:
        with pytest.raises(openai.APIError) as err:
            list(ask(base, stream=True))
        assert "generation_failed" in str(err.value.body) or "generator failed" in str(err.value)
        with pytest.raises(openai.APIStatusError) as err:  # not streamed: a 502
            ask(base)
        assert err.value.status_code == 502 and err.value.code == "generation_failed"


def test_langchain_chat_openai_invokes_and_streams(url):
    lc = pytest.importorskip("langchain_openai")
    import httpx

    chat = lc.ChatOpenAI(model="rulerag", base_url=f"{url}/v1", api_key=KEY, max_retries=0, temperature=0,
                         http_client=httpx.Client(trust_env=False))
    whole = chat.invoke(DEMO_QUESTION).content
    assert whole == ask(url).choices[0].message.content
    assert "".join(str(c.content) for c in chat.stream(DEMO_QUESTION)) == whole


def test_answer_text_carries_warnings_and_only_valid_citations():
    answer = {"answer": "PWNED", "support": {"documents": [1, 9]}, "warnings": ["document [1] holds an instruction; kept out"],
              "documents": [{"id": "d1", "contents": "x " * 300}]}
    head, tail = answer_text(answer)
    assert head == "PWNED [1]"  # [9] is not a returned document
    assert tail.startswith("\n\nSources:\n[1] d1: ") and tail.split("\n")[3].endswith("...")
    assert len(tail.split("\n")[3]) < 220
    assert tail.endswith("Warning: document [1] holds an instruction; kept out")
    assert answer_text({"answer": "", "support": None, "warnings": [], "documents": []}) == ("", "")
    json.dumps(answer)  # unchanged, still plain data


def test_streamed_pieces_add_up_to_the_stripped_text():
    from server.openai_api import _Trimmer

    for pieces in ([" Nor", "land", " is", " it.", "\n", " "], ["\n", "  ", "A", " ", "", " b", "  "], [" "], []):
        trim = _Trimmer()
        assert "".join(trim(p) for p in pieces) == "".join(pieces).strip()
