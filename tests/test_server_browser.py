"""The web page in a real headless browser: Debian's Chromium driven by Playwright's Python
package, against a uvicorn server on an ephemeral loopback port.

Needs ``pip install playwright`` (the Python package only; no ``playwright install``) and a
Chromium binary: ``$RULERAG_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on the PATH
(``apt-get install -y chromium``). Skipped when either is missing, except in CI (``$CI`` set, or
``RULERAG_REQUIRE_BROWSER=1``, which ``.ci/run`` exports): there a missing browser fails the test.
The screenshot goes to the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from rulerag.demo import DEMO_CORPUS, DEMO_QUESTION, DEMO_RULES
from rulerag.config import load_settings
from rulerag.generation import FixedBackend
from rulerag.retrieval.index import build_index
from server.app import create_app
from tests.fakes import HashEncoder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
XSS = '<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>'


def browser_required() -> bool:
    """In CI a skipped browser test would hide a broken page: there it must run."""
    return os.environ.get("RULERAG_REQUIRE_BROWSER", "") not in ("", "0") or os.environ.get("CI", "") not in ("", "0", "false")


def unavailable(reason: str) -> None:
    """Skip, or fail where the browser test is required."""
    if browser_required():
        pytest.fail(f"{reason} (the browser test is required here: $CI or RULERAG_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str:
    path = os.environ.get("RULERAG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not Path(path).is_file():
        unavailable("no Chromium binary: apt-get install -y chromium (or set RULERAG_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def sync_api():
    try:
        import playwright.sync_api
    except ImportError:
        unavailable("the playwright Python package is not installed (pip install playwright)")
    return playwright.sync_api


@pytest.fixture(scope="module")
def expect(sync_api):
    return sync_api.expect


@pytest.fixture(scope="module")
def browser(sync_api):
    exe = chromium_path()
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as exc:  # noqa: BLE001 - an unusable browser is an environment problem
            unavailable(f"could not launch {exe} with Playwright: {str(exc).splitlines()[0]}")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "demo-hash"
    build_index(DEMO_CORPUS, out, progress=False, encoder=HashEncoder())
    return out


class StreamingBackend(FixedBackend):
    """The fixed backend's answer, streamed word by word with a pause after each word, so the page
    shows the answer growing before the final ``answer`` event."""

    def stream(self, prompt, *, max_new_tokens: int, temperature: float = 0.0):
        words = self.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature).split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
            time.sleep(0.15)


# Records every text the answer shows, with the status line at that moment (an init script runs
# outside the page's Content-Security-Policy).
WATCH_ANSWER = """
window.__answers = [];
document.addEventListener("DOMContentLoaded", () => {
  const answer = document.getElementById("answer"), status = document.getElementById("status");
  new MutationObserver(() => window.__answers.push([answer.textContent, status.textContent]))
    .observe(answer, {childList: true, characterData: true, subtree: true});
});
"""


def _server(index: Path, generator=None, **generation):
    from server.testing import ServerThread

    settings = load_settings(overrides={"generation": {"backend": "fixed", **generation}})
    app = create_app(index, DEMO_RULES, settings, generator=generator, api_keys=set(), encoder=HashEncoder(),
                     server_settings={"load_in_background": False})
    return ServerThread(app)


def test_page_asks_the_demo_question(browser, expect, index, tmp_path):
    with _server(index, StreamingBackend()) as url:
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        asks = []
        page.on("response", lambda r: asks.append(r) if r.url.endswith("/v1/ask") else None)
        page.add_init_script(WATCH_ANSWER)
        page.goto(url + "/", wait_until="domcontentloaded")
        page.wait_for_selector("#ready.ok", timeout=20_000)
        page.fill("#question", DEMO_QUESTION)
        page.click("#ask")
        expect(page.locator("#status")).to_have_text("done", timeout=30_000)  # no eval: the page's CSP forbids it

        answer = page.text_content("#answer")
        # streamed: server-sent events, and the answer grew word by word on the page before the end
        assert len(asks) == 1 and asks[0].headers["content-type"].startswith("text/event-stream")
        seen = page.evaluate("window.__answers")
        partial = [text for text, status in seen if text and text != answer and status != "done"]
        assert len(set(partial)) >= 2, seen
        rules = page.locator("#rules tbody tr.rule")
        docs = page.locator("#documents tbody tr.document")
        assert answer and answer.strip()
        assert rules.count() >= 1 and docs.count() == 5
        rule_texts = [rules.nth(i).locator(".rule-text").text_content() for i in range(rules.count())]
        assert any("citizen_of" in t for t in rule_texts), rule_texts
        doc_texts = [docs.nth(i).locator(".doc-text").text_content() for i in range(docs.count())]
        assert answer == doc_texts[0].rstrip(".")  # the fixed backend answers with document [1]
        assert all(doc_texts[0].startswith(text) for text in partial), seen  # streamed pieces of that answer
        why = page.locator("#answer-why li")  # why this answer: the document that states it, by number
        assert why.count() >= 1 and why.first.text_content().startswith("why: [1] "), why.first.text_content()
        assert "0." in rules.first.locator("td.score").text_content()  # a score is shown
        assert "rule 1" in " ".join(docs.nth(i).locator(".found").text_content() for i in range(docs.count()))
        assert page.is_hidden("#error")
        shot = tmp_path / "web_page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")

        # a constraint shows the checker's verdict
        page.click("#more summary")
        page.click("#add-constraint")
        page.fill("#constraints .constraint-id", "punctuation:no_comma")
        page.click("#ask")
        expect(page.locator("#status")).to_have_text("done", timeout=30_000)
        assert page.locator("#checks tbody tr.verdict").count() == 1
        assert page.text_content("#checks tbody tr.verdict td:nth-child(2)") in ("followed", "not followed")
        assert not errors, errors
        page.close()


def test_page_shows_server_text_as_text(browser, expect, index):
    """An answer containing markup is displayed literally and never executed."""
    with _server(index, fixed_answer=XSS) as url:
        page = browser.new_page()
        page.goto(url + "/", wait_until="domcontentloaded")
        page.fill("#question", XSS)
        page.click("#ask")
        expect(page.locator("#status")).to_have_text("done", timeout=30_000)
        assert page.text_content("#answer") == XSS
        assert page.locator("#answer img, #answer script").count() == 0
        assert page.evaluate("window.__xss") is None
        page.close()


def test_page_shows_validation_errors(browser, index):
    with _server(index) as url:
        page = browser.new_page()
        page.goto(url + "/", wait_until="domcontentloaded")
        page.fill("#question", "why? " * 300)  # over the server's 1000-character limit
        page.click("#ask")
        page.wait_for_selector("#error:not([hidden])", timeout=20_000)
        assert page.text_content("#error").startswith("question_too_long")
        assert page.is_hidden("#answer-section")
        page.close()


def test_api_docs_render_without_network(browser, expect, index):
    """/docs (Swagger UI) and /redoc (ReDoc) render with every request to another host refused, as on
    an air-gapped machine."""
    with _server(index) as url:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        refused: list[str] = []

        def local_only(route):
            if route.request.url.startswith((url + "/", "data:", "blob:")):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        page.route("**/*", local_only)
        page.goto(url + "/docs", wait_until="domcontentloaded")
        operations = page.locator(".opblock-summary-path")
        expect(operations.first).to_be_visible(timeout=30_000)
        paths = {operations.nth(i).text_content() for i in range(operations.count())}
        assert {"/v1/ask", "/v1/retrieve", "/v1/rules", "/v1/check"} <= {p.replace("\u200b", "") for p in paths}, paths

        page.goto(url + "/redoc", wait_until="domcontentloaded")
        expect(page.locator("h1").first).to_contain_text("RuleRAG API", timeout=30_000)
        expect(page.locator("h2", has_text="Answer a question").first).to_be_visible()  # the /v1/ask operation
        assert not refused, refused
        assert not errors, errors
        page.close()
