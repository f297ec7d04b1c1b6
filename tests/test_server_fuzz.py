"""Property-based fuzzing of the web API against its own OpenAPI schema (schemathesis, in-process
ASGI calls): no 5xx, status codes, content types and response bodies as documented.

Bounded: at most ``MAX_EXAMPLES`` generated requests per operation and phase. Marked ``slow``.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

from rulerag.demo import DEMO_CORPUS, DEMO_RULES  # noqa: E402
from rulerag.config import load_settings  # noqa: E402
from rulerag.retrieval.index import build_index  # noqa: E402
from server.app import create_app  # noqa: E402
from tests.fakes import HashEncoder  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MAX_EXAMPLES = 30
KEY = "fuzz-key-0123456789abcdef"


def _app(tmp_dir, keys: set[str]):
    index = tmp_dir / "demo-hash"
    if not (index / "manifest.json").is_file():
        build_index(DEMO_CORPUS, index, progress=False, encoder=HashEncoder())
    app = create_app(index, DEMO_RULES, load_settings(overrides={"generation": {"backend": "fixed"}}), api_keys=keys,
                     encoder=HashEncoder(), server_settings={"load_in_background": False, "max_batch": 8, "max_k": 20})
    app.state.engine.load()  # ready before the first generated request, whether or not a lifespan runs
    return app


OPERATIONS = [("POST", "/v1/ask"), ("POST", "/v1/retrieve"), ("GET", "/v1/rules"), ("POST", "/v1/check"),
              ("GET", "/v1/constraints"), ("GET", "/healthz"), ("GET", "/readyz")]
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
]
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def open_schema(fuzz_dir):
    return schemathesis.openapi.from_asgi("/openapi.json", _app(fuzz_dir, set()))


@pytest.fixture(scope="module")
def auth_schema(fuzz_dir):
    return schemathesis.openapi.from_asgi("/openapi.json", _app(fuzz_dir, {KEY}))


def _assert_error_shape(response) -> None:
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"], body


def _operation(schema, method: str, path: str):
    return schema[path][method]


WITH_INPUT = {"/v1/ask", "/v1/retrieve", "/v1/rules", "/v1/check"}  # negative cases need something to break
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [(m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if p in WITH_INPUT]


@pytest.mark.parametrize("method,path,mode", CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_fuzz_api_without_auth(open_schema, method, path, mode):
    """Valid and invalid requests: never a 5xx; every response as the schema documents it."""
    strategy = _operation(open_schema, method, path).as_strategy(generation_mode=mode)

    @FUZZ
    @given(case=strategy)
    def run(case):
        response = case.call_and_validate(checks=CHECKS)
        assert response.status_code < 500
        _assert_error_shape(response)

    run()


@pytest.mark.parametrize("method,path", [op for op in OPERATIONS if op[1].startswith("/v1/")], ids=lambda v: str(v))
def test_fuzz_api_with_auth(auth_schema, method, path):
    """With auth on: the right key reaches the handlers, no key or a generated one gets 401."""
    strategy = _operation(auth_schema, method, path).as_strategy()

    @FUZZ
    @given(case=strategy, send_key=st.booleans())
    def run(case, send_key):
        response = case.call_and_validate(headers={"X-API-Key": KEY} if send_key else None, checks=CHECKS)
        assert response.status_code < 500
        if not send_key and (case.headers or {}).get("X-API-Key") != KEY:
            assert response.status_code == 401, response.text
        _assert_error_shape(response)

    run()
