"""The web API (server/): every endpoint, auth, limits, error shape, readiness, SSE, concurrency.

A small index of the demo corpus is built with the hashing encoder, and the fixed generator
backend answers with the text of document [1], so no model is loaded (one test, marked
``integration``, uses the real embedding model).
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from rulerag.demo import DEMO_CORPUS, DEMO_QUESTION, DEMO_RULES  # noqa: E402
from rulerag.config import load_settings  # noqa: E402
from rulerag.errors import ConfigError, GenerationError, IndexLoadError  # noqa: E402
from rulerag.generation import Prompt  # noqa: E402
from rulerag.generation.backends import first_document  # noqa: E402
from rulerag.retrieval.index import build_index  # noqa: E402
from server.app import create_app  # noqa: E402
from server.models import AskResponse  # noqa: E402
from tests.fakes import HashEncoder  # noqa: E402

KEY = "test-key-0123456789abcdef"
QUESTIONS = [
    DEMO_QUESTION,
    "Where was Alice Marlow born?",
    "Which company does Bruno Keller work for?",
    "Which language does Alice Marlow speak?",
    "Which city is Dravport located in?",
    "Where does Alice Marlow live?",
    "Which country is Norland next to?",
    "Who founded Karsland Steel?",
]


def fixed_settings(**generation):
    return load_settings(overrides={"generation": {"backend": "fixed", **generation}})


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("server") / "demo-hash"
    build_index(DEMO_CORPUS, out, progress=False, encoder=HashEncoder())
    return out


def make_app(index: Path, *, keys: set[str] | None = None, limits: dict | None = None, settings=None, generator=None, rules=DEMO_RULES):
    return create_app(index, rules, settings or fixed_settings(), generator=generator, api_keys=keys if keys is not None else set(),
                      encoder=HashEncoder(), server_settings={"load_in_background": False, **(limits or {})})


@pytest.fixture(scope="module")
def client(small_index):
    with TestClient(make_app(small_index)) as c:
        yield c


def assert_error(response, status: int, code: str | None = None) -> dict:
    """An error response: the status, our JSON shape, the code; never a stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        events.append((name, json.loads("\n".join(data))))
    return events


# ------------------------------------------------------------------------------------ health


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["documents"] == 350 and body["rules"] == 7 and body["generator"] == "fixed"


def test_readyz_is_503_until_loaded(small_index, monkeypatch):
    import server.engine

    release = threading.Event()
    original = server.engine.RuleRAG.from_index

    def slow_from_index(*args, **kwargs):
        assert release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(server.engine.RuleRAG, "from_index", slow_from_index)
    app = create_app(small_index, DEMO_RULES, fixed_settings(), api_keys=set(), encoder=HashEncoder())  # background loading
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        assert_error(c.get("/readyz"), 503, "not_ready")
        err = assert_error(c.post("/v1/ask", json={"question": DEMO_QUESTION}), 503, "not_ready")
        assert "retry" in err["message"].lower()
        assert_error(c.post("/v1/retrieve", json={"question": DEMO_QUESTION}), 503, "not_ready")
        release.set()
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.post("/v1/ask", json={"question": DEMO_QUESTION}).status_code == 200


def test_failed_load_reports_load_failed_without_details(tmp_path):
    app = create_app(tmp_path / "no-such-index", DEMO_RULES, fixed_settings(), api_keys=set(), encoder=HashEncoder(),
                     server_settings={"load_in_background": False})
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        err = assert_error(c.get("/readyz"), 503, "load_failed")
        assert "no-such-index" not in err["message"]  # the path stays in the log
        assert_error(c.post("/v1/ask", json={"question": "q?"}), 503, "load_failed")


# ------------------------------------------------------------------------------------ /v1/ask


def test_ask_returns_answer_rules_documents_timings(client):
    r = client.post("/v1/ask", json={"question": DEMO_QUESTION, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    AskResponse.model_validate(body)
    assert body["question"] == DEMO_QUESTION and body["mode"] == "rulerag" and body["generator"] == "fixed"
    assert len(body["documents"]) == 5
    assert [d["rank"] for d in body["documents"]] == [1, 2, 3, 4, 5]
    assert all(isinstance(d["score"], float) for d in body["documents"])
    assert body["answer"] == body["documents"][0]["contents"].rstrip(".")  # fixed backend: document [1]
    heads = {m["rule"]["head"]["relation"] for m in body["rules"]}
    assert "citizen_of" in heads
    assert all(0 <= m["score"] <= 1 and m["reason"] for m in body["rules"])
    assert any(f.startswith("rule:") for d in body["documents"] for f in d["found_by"])
    assert body["check"] is None and body["prompt"] is None
    assert set(body["timings"]) == {"retrieval_s", "generation_s", "total_s"}


def test_ask_standard_mode_uses_no_rules_and_k_is_per_request(client):
    r = client.post("/v1/ask", json={"question": DEMO_QUESTION, "mode": "standard", "k": 2, "max_new_tokens": 5, "temperature": 0.5})
    body = r.json()
    assert r.status_code == 200 and body["mode"] == "standard" and body["rules"] == [] and len(body["documents"]) == 2
    # per-request options never change the shared settings
    engine = client.app.state.engine
    assert engine.settings.retrieval.k == 5 and engine.settings.retrieval.mode.value == "rulerag"
    assert engine.settings.generation.max_new_tokens == 48 and engine.settings.generation.temperature == 0.0
    again = client.post("/v1/ask", json={"question": DEMO_QUESTION}).json()
    assert again["mode"] == "rulerag" and len(again["documents"]) == 5


def test_ask_with_instructions_constraints_and_prompt(client):
    r = client.post("/v1/ask", json={
        "question": DEMO_QUESTION,
        "instructions": ["Answer in lowercase letters only."],
        "constraints": [{"id": "change_case:english_lowercase"}, {"id": "length_words", "kwargs": {"relation": "less than", "num_words": 40}}],
        "refine_rounds": 1,
        "include_prompt": True,
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["instructions"] == ["Answer in lowercase letters only."]
    report = body["check"]
    assert report["instruction_id_list"] == ["change_case:english_lowercase", "length_words"]
    assert report["strict"]["follow_instruction_list"] == [False, True]  # document [1] has capitals
    assert len(body["rounds"]) == 2 and sum(r["kept"] for r in body["rounds"]) == 1
    assert "Answer in lowercase letters only." in body["prompt"]["user"]


@pytest.mark.parametrize("constraint", [{"id": "no_such_instruction"}, {"id": "length_words", "kwargs": {"num_words": "many"}}])
def test_ask_invalid_constraint_is_422(client, constraint):
    assert_error(client.post("/v1/ask", json={"question": DEMO_QUESTION, "constraints": [constraint]}), 422, "invalid_constraint")


def test_ask_streams_server_sent_events(client):
    for kwargs in ({"json": {"question": DEMO_QUESTION, "stream": True}},
                   {"json": {"question": DEMO_QUESTION}, "headers": {"Accept": "text/event-stream"}}):
        r = client.post("/v1/ask", **kwargs)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.text)
        names = [n for n, _ in events]
        assert names[:2] == ["rules", "documents"] and names[-2:] == ["answer", "done"], names
        tokens = [d["text"] for n, d in events if n == "token"]
        assert names[2:-2] == ["token"] * len(tokens) and tokens  # the answer as it was decoded
        data = dict(events)
        assert "".join(tokens).strip().rstrip(".") == data["answer"]["answer"]
        assert any(m["rule"]["head"]["relation"] == "citizen_of" for m in data["rules"]["rules"])
        assert len(data["documents"]["documents"]) == 5
        done = AskResponse.model_validate(data["done"])
        assert done.answer == data["answer"]["answer"] == data["documents"]["documents"][0]["contents"].rstrip(".")


def test_ask_stream_with_constraints_has_check_event(client):
    r = client.post("/v1/ask", json={"question": DEMO_QUESTION, "stream": True, "constraints": [{"id": "punctuation:no_comma"}]})
    names = [n for n, _ in parse_sse(r.text)]
    assert names == ["rules", "documents", "answer", "check", "done"]


class FailingGenerator:
    name = "failing"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def generate(self, prompt, *, max_new_tokens, temperature=0.0):
        raise self.exc


@pytest.mark.parametrize("exc,status,code", [
    (GenerationError("cannot reach http://10.0.0.7:8000/v1 (secret-host)"), 502, "generation_failed"),
    (RuntimeError("secret internal detail"), 500, "internal_error"),
])
def test_generator_failure_is_a_json_error_without_details(small_index, exc, status, code):
    with TestClient(make_app(small_index, generator=FailingGenerator(exc)), raise_server_exceptions=False) as c:
        err = assert_error(c.post("/v1/ask", json={"question": DEMO_QUESTION}), status, code)
        assert "secret" not in err["message"] and "reference" in err["message"]
        events = parse_sse(c.post("/v1/ask", json={"question": DEMO_QUESTION, "stream": True}).text)
        assert [n for n, _ in events] == ["rules", "documents", "error"]
        assert events[-1][1]["error"]["code"] == code and "secret" not in events[-1][1]["error"]["message"]


def test_unexpected_exception_is_500_generic(small_index, monkeypatch):
    app = make_app(small_index)
    with TestClient(app, raise_server_exceptions=False) as c:
        monkeypatch.setattr(app.state.engine, "_retrieve_many", lambda *a, **k: (_ for _ in ()).throw(KeyError("secret")))
        err = assert_error(c.post("/v1/retrieve", json={"question": DEMO_QUESTION}), 500, "internal_error")
        assert "secret" not in err["message"] and "KeyError" not in err["message"]


# ------------------------------------------------------------------------------------ /v1/retrieve


def test_retrieve_one_and_batch(client):
    one = client.post("/v1/retrieve", json={"question": DEMO_QUESTION, "k": 3})
    assert one.status_code == 200
    res = one.json()["results"]
    assert len(res) == 1 and len(res[0]["documents"]) == 3 and res[0]["rules"] and len(res[0]["queries"]) == 1 + len(res[0]["rules"])
    batch = client.post("/v1/retrieve", json={"questions": QUESTIONS[:3], "relations": ["citizen_of", None, None], "k": 2, "mode": "rulerag"})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["question"] for r in results] == QUESTIONS[:3]
    assert results[0]["rules"][0]["reason"] == "head relation"
    standard = client.post("/v1/retrieve", json={"questions": QUESTIONS[:2], "mode": "standard"}).json()["results"]
    assert all(r["rules"] == [] and r["mode"] == "standard" for r in standard)


@pytest.mark.parametrize("body,code", [
    ({"question": DEMO_QUESTION, "questions": [DEMO_QUESTION]}, "question_or_questions"),
    ({}, "question_or_questions"),
    ({"question": DEMO_QUESTION, "relations": ["x"]}, "question_or_questions"),
    ({"questions": ["a?", "b?"], "relations": ["x"]}, "length_mismatch"),
    ({"questions": []}, "invalid_questions"),
    ({"question": "   "}, "empty_question"),
])
def test_retrieve_bad_forms(client, body, code):
    assert_error(client.post("/v1/retrieve", json=body), 422, code)


# ------------------------------------------------------------------------------------ /v1/rules, /v1/check


def test_rules_paginated_and_filtered(client):
    page = client.get("/v1/rules", params={"limit": 3}).json()
    assert page["total"] == 7 and len(page["items"]) == 3 and page["next_offset"] == 3
    assert page["items"][0]["head"]["relation"] == "citizen_of" and page["items"][0]["confidence"] == 0.867
    last = client.get("/v1/rules", params={"offset": 6, "limit": 3}).json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    every = [r["id"] for off in (0, 3, 6) for r in client.get("/v1/rules", params={"offset": off, "limit": 3}).json()["items"]]
    assert len(set(every)) == 7
    cit = client.get("/v1/rules", params={"relation": "citizen_of"}).json()
    assert cit["total"] == 3 and all(r["head"]["relation"] == "citizen_of" for r in cit["items"])
    assert client.get("/v1/rules", params={"relation": "nope"}).json()["total"] == 0
    assert_error(client.get("/v1/rules", params={"limit": 100000}), 422, "limit_too_large")
    assert_error(client.get("/v1/rules", params={"offset": -1}), 422)
    assert_error(client.get("/v1/rules", params={"limit": "ten"}), 422, "invalid_limit")


def test_rules_without_rule_file(small_index):
    with TestClient(make_app(small_index, rules=None)) as c:
        assert c.get("/v1/rules").json()["total"] == 0
        assert c.post("/v1/ask", json={"question": DEMO_QUESTION}).json()["rules"] == []


def test_check_scores_an_answer(client):
    r = client.post("/v1/check", json={
        "response": "she is a citizen of norland because she serves in the army there", "instruction_id_list": ["change_case:english_lowercase", "format_no_commas"], "kwargs": [{}, None],
        "question": DEMO_QUESTION, "documents": ["Alice Marlow serves in army of Norland."], "golden_answers": ["Norland"],
    })
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["strict"]["follow_instruction_list"] == [True, True]
    assert report["canonical_ids"] == ["change_case:english_lowercase", "punctuation:no_comma"]
    assert report["correctness"]["recall"] == 1.0 and report["faithfulness"]["grounded"] is True
    only = client.post("/v1/check", json={"response": "Yes, sure", "instruction_id_list": ["punctuation:no_comma"]}).json()
    assert only["strict"]["follow_all_instructions"] is False and only["faithfulness"] is None


@pytest.mark.parametrize("body,code", [
    ({"response": "x", "instruction_id_list": ["nope:nope"]}, "invalid_constraint"),
    ({"response": "x", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}, {}]}, "length_mismatch"),
    ({"instruction_id_list": []}, "missing_response"),
    ({"response": 3}, "invalid_response"),
])
def test_check_bad_input(client, body, code):
    assert_error(client.post("/v1/check", json=body), 422, code)


def test_constraints_list(client):
    items = client.get("/v1/constraints").json()["items"]
    assert len(items) == 25 and any(i["id"] == "punctuation:no_comma" and i["followrag_id"] == "format_no_commas" for i in items)


# ------------------------------------------------------------------------------------ auth


@pytest.fixture(scope="module")
def auth_client(small_index):
    with TestClient(make_app(small_index, keys={KEY, "another-key-abcdefgh"})) as c:
        yield c


@pytest.mark.parametrize("method,path,body", [
    ("post", "/v1/ask", {"question": DEMO_QUESTION}),
    ("post", "/v1/retrieve", {"question": DEMO_QUESTION}),
    ("get", "/v1/rules", None),
    ("post", "/v1/check", {"response": "x"}),
    ("get", "/v1/constraints", None),
])
def test_auth_on(auth_client, method, path, body):
    call = getattr(auth_client, method)
    kw = {"json": body} if body is not None else {}
    err = assert_error(call(path, **kw), 401, "missing_api_key")
    assert "X-API-Key" in err["message"]
    assert_error(call(path, headers={"X-API-Key": "wrong-key-0123456789"}, **kw), 401, "invalid_api_key")
    assert_error(call(path, headers={"X-API-Key": KEY[:-1]}, **kw), 401, "invalid_api_key")
    assert call(path, headers={"X-API-Key": KEY}, **kw).status_code == 200
    assert call(path, headers={"X-API-Key": "another-key-abcdefgh"}, **kw).status_code == 200


def test_auth_leaves_health_and_page_open(auth_client):
    assert auth_client.get("/healthz").status_code == 200
    assert auth_client.get("/readyz").status_code == 200
    assert auth_client.get("/").status_code == 200
    schema = auth_client.get("/openapi.json").json()
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_auth_off_needs_no_key(client):
    assert client.post("/v1/ask", json={"question": DEMO_QUESTION}).status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_api_keys_from_env_and_file(small_index, tmp_path, monkeypatch):
    from server.config import load_api_keys

    monkeypatch.setenv("RULERAG_API_KEYS", f" {KEY} , ,second-key-12345678")
    assert load_api_keys() == {KEY, "second-key-12345678"}
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("# comment\nfile-key-abcdefghij\n\n")
    monkeypatch.delenv("RULERAG_API_KEYS")
    monkeypatch.setenv("RULERAG_API_KEYS_FILE", str(keyfile))
    assert load_api_keys() == {"file-key-abcdefghij"}
    assert load_api_keys(set()) == set()  # explicit: auth off
    app = create_app(small_index, DEMO_RULES, fixed_settings(), encoder=HashEncoder(), server_settings={"load_in_background": False})
    with TestClient(app) as c:
        assert_error(c.get("/v1/rules"), 401, "missing_api_key")
        assert c.get("/v1/rules", headers={"X-API-Key": "file-key-abcdefghij"}).status_code == 200
    monkeypatch.setenv("RULERAG_API_KEYS_FILE", str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="RULERAG_API_KEYS_FILE"):
        load_api_keys()
    with pytest.raises(ConfigError, match="shorter than 8"):
        load_api_keys({"short"})


# ------------------------------------------------------------------------------------ limits


@pytest.fixture(scope="module")
def tight(small_index):
    limits = {"max_question_chars": 50, "max_k": 5, "max_batch": 3, "max_instructions": 2, "max_body_bytes": 2048, "max_page": 4}
    with TestClient(make_app(small_index, limits=limits)) as c:
        yield c


@pytest.mark.parametrize("path,body,code", [
    ("/v1/ask", {"question": "x" * 51}, "question_too_long"),
    ("/v1/retrieve", {"question": "x" * 51}, "question_too_long"),
    ("/v1/retrieve", {"questions": ["ok?", "x" * 51]}, "question_too_long"),
    ("/v1/ask", {"question": "q?", "k": 6}, "k_too_large"),
    ("/v1/retrieve", {"question": "q?", "k": 6}, "k_too_large"),
    ("/v1/ask", {"question": "q?", "k": 0}, "invalid_k"),
    ("/v1/retrieve", {"questions": ["a?", "b?", "c?", "d?"]}, "batch_too_large"),
    ("/v1/ask", {"question": "q?", "instructions": ["a", "b", "c"]}, "too_many_instructions"),
    ("/v1/ask", {"question": "q?", "constraints": [{"id": "punctuation:no_comma"}] * 3}, "too_many_constraints"),
    ("/v1/check", {"response": "x", "instruction_id_list": ["punctuation:no_comma"] * 3}, "too_many_instructions"),
    ("/v1/ask", {"question": "q?", "max_new_tokens": 100000}, "max_new_tokens_too_large"),
    ("/v1/ask", {"question": "q?", "refine_rounds": 11}, "refine_rounds_too_large"),
])
def test_limits(tight, path, body, code):
    err = assert_error(tight.post(path, json=body), 422, code)
    assert "Fix:" in err["message"] or code == "invalid_k"


def test_limits_at_the_edge_pass(tight):
    assert tight.post("/v1/ask", json={"question": "x" * 49 + "?", "k": 5, "instructions": ["a", "b"]}).status_code == 200
    assert tight.post("/v1/retrieve", json={"questions": ["a?", "b?", "c?"]}).status_code == 200
    assert tight.get("/v1/rules", params={"limit": 4}).status_code == 200
    assert_error(tight.get("/v1/rules", params={"limit": 5}), 422, "limit_too_large")


def test_body_too_large_by_content_length_and_by_stream(tight):
    big = json.dumps({"question": "q?", "instructions": ["x" * 400] * 2, "pad": "y" * 3000}).encode()
    err = assert_error(tight.post("/v1/ask", content=big, headers={"Content-Type": "application/json"}), 413, "body_too_large")
    assert "max_body_bytes" in err["message"]

    def chunks():  # no Content-Length: sent chunked; the limit applies to the bytes read
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    assert_error(tight.post("/v1/ask", content=chunks(), headers={"Content-Type": "application/json"}), 413, "body_too_large")
    assert_error(tight.post("/v1/check", content=b"{" + b" " * 5000 + b"}", headers={"Content-Type": "application/json"}), 413, "body_too_large")
    r = tight.post("/v1/ask", content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "abc"})
    assert 400 <= r.status_code < 500


def _run_body_limit(headers: list, chunks: list[bytes], *, max_bytes: int = 2048, drain_bytes: int | None = None):
    """Drive BodyLimitMiddleware over an app that reads its whole body; return (messages the
    middleware took from the client, response status)."""
    import asyncio

    from server.middleware import BodyLimitMiddleware

    taken: list[int] = []
    sent: list[dict] = []

    async def receive():
        i = len(taken)
        taken.append(i)
        return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):  # reads until the end, then answers 200
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = BodyLimitMiddleware(app, max_bytes=max_bytes, drain_bytes=drain_bytes)
    asyncio.run(middleware({"type": "http", "headers": headers}, receive, send))
    return len(taken), sent[0]["status"]


def test_body_limit_reads_the_rest_of_an_oversized_body_before_its_413():
    """Unread request bytes at close make the kernel reset the connection, which can destroy the 413
    before the client reads it (seen in CI); so the middleware drops the rest of the body first."""
    five = [b"x" * 1000] * 5
    assert _run_body_limit([(b"content-length", b"5000")], five) == (5, 413)  # declared too large
    assert _run_body_limit([], five) == (5, 413)  # chunked: over the limit at the third chunk
    assert _run_body_limit([], five[:2]) == (2, 200)  # under the limit: untouched
    # beyond the drain budget the answer comes at once, without reading
    assert _run_body_limit([(b"content-length", b"5000")], five, drain_bytes=3000) == (0, 413)


def test_limits_from_environment(small_index, monkeypatch):
    monkeypatch.setenv("RULERAG_SERVER__MAX_K", "3")
    app = create_app(small_index, DEMO_RULES, fixed_settings(), api_keys=set(), encoder=HashEncoder(), server_settings={"load_in_background": False})
    with TestClient(app) as c:
        assert_error(c.post("/v1/retrieve", json={"question": "q?", "k": 4}), 422, "k_too_large")
        assert c.post("/v1/retrieve", json={"question": "q?", "k": 3}).status_code == 200
        assert c.get("/openapi.json").json()["components"]["schemas"]["RetrieveRequest"]["properties"]["k"]["anyOf"][0]["maximum"] == 3
    monkeypatch.setenv("RULERAG_SERVER__MAX_K", "lots")
    with pytest.raises(ConfigError, match="max_k"):
        create_app(small_index, DEMO_RULES, fixed_settings(), api_keys=set(), encoder=HashEncoder())


# ------------------------------------------------------------------------------------ malformed


@pytest.mark.parametrize("path", ["/v1/ask", "/v1/retrieve", "/v1/check"])
@pytest.mark.parametrize("content,ctype,status,code", [
    (b"not json", "application/json", 400, "invalid_json"),
    (b'{"question": ', "application/json", 400, "invalid_json"),
    (b"", "application/json", 422, None),
    (b"[1, 2]", "application/json", 422, "invalid_body"),
    (b'"a string"', "application/json", 422, "invalid_body"),
    (b"null", "application/json", 422, None),
    (b"question=x", "application/x-www-form-urlencoded", 422, None),
    (b"\xff\xfe\x00garbage", "application/json", 400, "invalid_json"),
])
def test_malformed_bodies_are_4xx_json(client, path, content, ctype, status, code):
    assert_error(client.post(path, content=content, headers={"Content-Type": ctype}), status, code)


@pytest.mark.parametrize("path,body,code", [
    ("/v1/ask", {"question": 42}, "invalid_question"),
    ("/v1/ask", {"question": ["a"]}, "invalid_question"),
    ("/v1/ask", {"question": "q?", "mode": "bogus"}, "invalid_mode"),
    ("/v1/ask", {"question": "q?", "k": "five"}, "invalid_k"),
    ("/v1/ask", {"question": "q?", "k": 2.5}, "invalid_k"),
    ("/v1/ask", {"question": "q?", "instructions": "not a list"}, "invalid_instructions"),
    ("/v1/ask", {"question": "q?", "constraints": [{"kwargs": {}}]}, "missing_id"),
    ("/v1/ask", {"question": "q?", "constraints": [{"id": "punctuation:no_comma", "kwargs": [1]}]}, "invalid_kwargs"),
    ("/v1/ask", {"question": "q?", "temperature": -1}, "invalid_temperature"),
    ("/v1/ask", {"question": "q?", "stream": "maybe"}, "invalid_stream"),
    ("/v1/ask", {"questoin": "q?"}, "missing_question"),
    ("/v1/ask", {"question": "q?", "unknown": 1}, "unknown_field"),
    ("/v1/retrieve", {"question": "q?", "mode": "RULERAG"}, "invalid_mode"),
    ("/v1/retrieve", {"questions": "q?"}, "invalid_questions"),
    ("/v1/retrieve", {"questions": [1, 2]}, "invalid_question"),
    ("/v1/check", {"response": "x", "kwargs": "nope"}, "invalid_kwargs"),
])
def test_wrong_types_are_422_with_codes(client, path, body, code):
    err = assert_error(client.post(path, json=body), 422, code)
    assert err["details"] and all({"loc", "msg", "type"} <= set(d) for d in err["details"])


def test_unknown_paths_and_methods(client):
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/ask"), 405, "method_not_allowed")
    assert_error(client.delete("/v1/rules"), 405, "method_not_allowed")


# ------------------------------------------------------------------------------------ concurrency


def test_concurrent_asks_each_get_their_own_answer(client):
    expected = {}
    for q in QUESTIONS:  # sequential reference answers
        expected[q] = client.post("/v1/ask", json={"question": q}).json()
    assert len({e["answer"] for e in expected.values()}) >= 4  # answers differ per question
    barrier = threading.Barrier(len(QUESTIONS) * 2)

    def ask(q: str) -> tuple[str, dict]:
        barrier.wait(timeout=30)
        return q, client.post("/v1/ask", json={"question": q}).json()

    with ThreadPoolExecutor(len(QUESTIONS) * 2) as pool:
        got = list(pool.map(ask, QUESTIONS * 2))
    for q, body in got:
        assert body["question"] == q
        assert body["answer"] == expected[q]["answer"]
        assert [d["id"] for d in body["documents"]] == [d["id"] for d in expected[q]["documents"]]


def test_retrieval_batcher_groups_waiting_questions():
    """Questions queued while a batch runs go together into the next call, grouped by k/mode/time."""
    import concurrent.futures

    from server.engine import RetrievalBatcher, _Job

    calls = []
    started = threading.Event()

    def retrieve_many(questions, *, k, mode, relations, times):
        calls.append((list(questions), k, list(times)))
        started.set()
        time.sleep(0.2 if len(calls) == 1 else 0)
        if "boom" in questions:
            raise ValueError("boom")
        return [f"{q}|{k}" for q in questions]

    batcher = RetrievalBatcher(retrieve_many, workers=1, max_batch=4)
    jobs = [_Job("first", None, None, None, None, concurrent.futures.Future())]
    batcher.submit(jobs[0])
    assert started.wait(5)
    for i in range(5):
        jobs.append(_Job(f"q{i}", None, None, None, None, concurrent.futures.Future()))
    jobs.append(_Job("k3", 3, None, None, None, concurrent.futures.Future()))
    jobs.append(_Job("dated", None, None, None, "2014-01-01", concurrent.futures.Future()))
    jobs.append(_Job("boom", None, None, None, None, concurrent.futures.Future()))
    for j in jobs[1:]:
        batcher.submit(j)
    results = [j.future.result(timeout=5) if j.question != "boom" else None for j in jobs]
    with pytest.raises(ValueError):
        jobs[-1].future.result(timeout=5)
    batcher.close()
    assert results[:-1] == ["first|None"] + [f"q{i}|None" for i in range(5)] + ["k3|3", "dated|None"]
    assert calls[0] == (["first"], None, [None])
    # then the queued questions, at most 4 per drain, grouped by k / mode / with-or-without time
    assert calls[1] == (["q0", "q1", "q2", "q3"], None, [None] * 4)
    assert (["dated"], None, ["2014-01-01"]) in calls and (["k3"], 3, [None]) in calls
    # a failing batch is retried one by one: only the culprit fails
    assert (["q4", "boom"], None, [None, None]) in calls and (["q4"], None, [None]) in calls
    assert all(len(q) <= 4 for q, _, _ in calls)


class SlowGenerator:
    """Answers with document [1] after a delay; records how many calls overlapped."""

    name = "slow"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def generate(self, prompt: Prompt, *, max_new_tokens: int, temperature: float = 0.0) -> str:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        return first_document(prompt)


def test_generator_is_serialised_and_event_loop_stays_responsive(small_index):
    gen = SlowGenerator(0.4)
    with TestClient(make_app(small_index, generator=gen)) as c:

        def ask(question: str) -> tuple[dict, float]:
            return c.post("/v1/ask", json={"question": question}).json(), time.perf_counter()

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(ask, q) for q in QUESTIONS[:4]]
            time.sleep(0.1)
            assert c.get("/healthz").status_code == 200
            assert c.post("/v1/retrieve", json={"question": DEMO_QUESTION}).status_code == 200
            answered = time.perf_counter()
            results = [f.result(timeout=30) for f in futures]
        answers = [a for a, _ in results]
        assert gen.max_active == 1
        # served while the serialised generation (4 x 0.4 s) still had a whole answer to go, not queued
        # behind it (an ordering, not a wall-clock budget: a slow machine slows both sides)
        assert answered < max(t for _, t in results) - gen.delay
        assert [a["question"] for a in answers] == QUESTIONS[:4]
        assert all(a["answer"] == a["documents"][0]["contents"].rstrip(".") for a in answers)


def test_too_many_pending_requests_get_503_busy(small_index):
    gen = SlowGenerator(0.5)
    with TestClient(make_app(small_index, generator=gen, limits={"max_pending": 1})) as c:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(c.post, "/v1/ask", json={"question": DEMO_QUESTION})
            time.sleep(0.2)
            err = assert_error(c.post("/v1/ask", json={"question": DEMO_QUESTION}), 503, "server_busy")
            assert "retry" in err["message"].lower()
            assert first.result(timeout=30).status_code == 200
        assert c.post("/v1/ask", json={"question": DEMO_QUESTION}).status_code == 200


# ------------------------------------------------------------------------------------ CORS, page, schema


def test_cors_off_by_default_and_configurable(client, small_index):
    pre = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    r = client.options("/v1/ask", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    r = client.post("/v1/ask", json={"question": DEMO_QUESTION}, headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    with TestClient(make_app(small_index, limits={"cors_origins": "http://app.example"})) as c:
        ok = c.options("/v1/ask", headers={**pre, "Origin": "http://app.example"})
        assert ok.headers["access-control-allow-origin"] == "http://app.example"
        bad = c.options("/v1/ask", headers=pre)
        assert bad.headers.get("access-control-allow-origin") != "http://evil.example"


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'id="question"' in page.text and "<script>" not in page.text  # no inline script
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    code = "\n".join(line for line in js.text.splitlines() if not line.lstrip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, sink
    assert client.get("/static/style.css").status_code == 200
    assert_error(client.get("/static/nope.js"), 404)
    assert client.post("/v1/ask", json={"question": DEMO_QUESTION}).headers["cache-control"] == "no-store"


def test_openapi_documents_models_examples_and_errors(client):
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/v1/ask", "/v1/retrieve", "/v1/rules", "/v1/check", "/v1/constraints", "/healthz", "/readyz",
                                    "/v1/chat/completions", "/v1/models", "/v1/documents", "/v1/documents/delete"}
    comps = schema["components"]["schemas"]
    for name in ("AskRequest", "AskResponse", "RetrieveRequest", "RetrieveResponse", "RulesPage", "CheckRequest", "CheckReportOut", "ErrorResponse",
                 "ChatCompletionRequest"):
        assert name in comps, name
    for name in ("AskRequest", "RetrieveRequest", "CheckRequest", "AskResponse", "ChatCompletionRequest"):
        assert comps[name].get("examples"), name
    ask = schema["paths"]["/v1/ask"]["post"]
    assert "text/event-stream" in ask["responses"]["200"]["content"]
    assert ask["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert comps["AskRequest"]["properties"]["question"]["maxLength"] == 1000
    assert "HTTPValidationError" not in comps


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_pages_load_every_asset_from_this_server(client, page):
    """/docs (Swagger UI) and /redoc work offline: every asset they reference is served here."""
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.findall(r"https?://[^\s\"'<>]+", html)  # nothing from another host (CDN, Google Fonts)
    urls = re.findall(r"""(?:\bsrc|\bhref|spec-url)=["']([^"']+)["']|\burl: *["']([^"']+)["']""", html)
    urls = [u for pair in urls for u in pair if u]
    assert "/openapi.json" in urls and any(u.endswith(".js") for u in urls) and len(urls) >= 3, urls
    if page == "/redoc":
        urls.append("/redoc/logo-mini.svg")  # asked for by redoc.standalone.js itself
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, url


# ------------------------------------------------------------------------------------ serving


def test_real_uvicorn_server_streams_and_answers(small_index):
    import httpx

    from server.testing import ServerThread

    # the server reads the rest of an oversized body before its 413, so a client on a kept-alive
    # connection reads the answer rather than a connection reset (CI once saw the reset)
    with ServerThread(make_app(small_index, limits={"max_body_bytes": 2048})) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        with http.stream("POST", "/v1/ask", json={"question": DEMO_QUESTION}, headers={"Accept": "text/event-stream"}) as r:
            text = "".join(r.iter_text())
        assert [n for n, _ in parse_sse(text) if n != "token"] == ["rules", "documents", "answer", "done"]
        assert "token" in [n for n, _ in parse_sse(text)]
        for _ in range(20):
            big = http.post("/v1/ask", content=b"{" + b" " * 4_000 + b"}", headers={"Content-Type": "application/json"})
            assert_error(big, 413, "body_too_large")
            assert http.get("/healthz").status_code == 200


def test_serve_fails_fast_on_a_missing_index(tmp_path):
    from server.serve import serve

    with pytest.raises(IndexLoadError):
        serve(tmp_path / "none", port=0)
    with pytest.raises(ConfigError, match="port"):
        serve(tmp_path / "none", port=70000)


@pytest.mark.integration
def test_integration_real_embedding_model(tmp_path_factory):
    """The demo index built with the packaged embedding model; the rule lifts the evidence."""
    out = tmp_path_factory.mktemp("server-real") / "demo"
    build_index(DEMO_CORPUS, out, progress=False)
    app = create_app(out, DEMO_RULES, fixed_settings(), api_keys=set(), server_settings={"load_in_background": False})
    with TestClient(app) as c:
        body = c.post("/v1/ask", json={"question": DEMO_QUESTION, "k": 5}).json()
        assert body["rules"][0]["rule"]["text"] == "[Entity1, serves_in_army_of, Entity2] leads to [Entity1, citizen_of, Entity2]"
        assert "Alice Marlow serves in army of Norland." in [d["contents"] for d in body["documents"]]
        standard = c.post("/v1/retrieve", json={"question": DEMO_QUESTION, "k": 5, "mode": "standard"}).json()["results"][0]
        assert "Alice Marlow serves in army of Norland." not in [d["contents"] for d in standard["documents"]]


def test_preload_loads_retrieval_once_stops_its_threads_and_leaves_the_generator_to_the_worker(small_index):
    """`rulerag serve --workers N` preloads in the parent, then forks: nothing this engine started may
    still run at the fork, the engine must not answer before the worker has loaded the generator,
    and the worker's load must not load the index again."""
    class CountingGenerator:
        name = "counting"
        loads = 0

        def load(self):
            CountingGenerator.loads += 1

        def generate(self, prompt, *, max_new_tokens, temperature=0.0):
            return first_document(prompt)

    before = set(threading.enumerate())  # other tests' engines may still have threads
    app = create_app(small_index, DEMO_RULES, fixed_settings(), generator=CountingGenerator(), api_keys=set(), encoder=HashEncoder(),
                     server_settings={"load_in_background": False})
    engine = app.state.engine
    assert [t for t in set(threading.enumerate()) - before if t.name.startswith("rulerag-")]  # the engine starts its threads
    engine.preload()
    assert engine.rag is not None and CountingGenerator.loads == 0 and not engine.ready
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("rulerag-")], "engine threads alive at the fork"
    rag = engine.rag
    with TestClient(app) as c:  # the worker: lifespan opens the engine again and loads the generator only
        assert c.get("/readyz").status_code == 200
        assert engine.rag is rag and CountingGenerator.loads == 1
        assert c.post("/v1/ask", json={"question": DEMO_QUESTION}).status_code == 200
