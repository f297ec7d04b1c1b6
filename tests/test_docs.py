"""The README and the MkDocs manual: the site builds with ``--strict``, the README stays a short front
door whose two commands are what ``.ci/run`` runs, and every ``rulerag ...`` command shown in a
fenced ``bash`` block parses against the real CLI (a snippet that drifts from the CLI fails)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rulerag.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted([README, *(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)])
FENCE = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_OPERATORS = {"&&", "||", "|", ";"}


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    env: tuple[tuple[str, str], ...]
    args: tuple[str, ...]  # after `rulerag`

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: rulerag {shlex.join(self.args)}"


def _logical_lines(block: str, first_line: int) -> list[tuple[int, str]]:
    """Lines of a bash block with ``\\`` continuations joined and heredoc bodies dropped."""
    out: list[tuple[int, str]] = []
    pending, start, heredoc = "", 0, None
    for offset, line in enumerate(block.splitlines()):
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if m := re.search(r"<<-?\s*'?\"?(\w+)", line):
            heredoc = m.group(1)
        if not pending:
            start = first_line + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def _commands(tokens: list[str]) -> list[list[str]]:
    commands, current = [], []
    for token in tokens:
        if token in SHELL_OPERATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [*commands, current]


def rulerag_snippets() -> list[Snippet]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            first = text.count("\n", 0, block.start(1)) + 1
            for lineno, line in _logical_lines(block.group(1), first):
                for command in _commands(shlex.split(line, comments=True)):
                    env = []
                    while command and (command[0] == "time" or re.match(r"^[A-Za-z_]\w*=", command[0])):
                        if "=" in command[0]:
                            env.append(tuple(command[0].split("=", 1)))
                        command = command[1:]
                    if command and Path(command[0]).name == "rulerag":
                        args = []
                        for token in command[1:]:
                            if re.match(r"^\d*[<>]", token):  # a redirection ends the arguments
                                break
                            args.append(token)
                        found.append(Snippet(str(page.relative_to(ROOT)), lineno, tuple(env), tuple(args)))
    return found


SNIPPETS = rulerag_snippets()


def _parse(args: tuple[str, ...]) -> tuple[str, object]:
    """Parse ``args`` the way click would run them, without invoking anything: the subcommand path
    must exist and every option and value must be accepted. Returns the command path and the leaf."""
    command = typer.main.get_command(app)
    ctx = command.make_context("rulerag", list(args))
    path = "rulerag"
    while hasattr(command, "resolve_command"):  # a group: its own options are parsed, then the rest
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])  # click < 9: public
        rest = [*protected, *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        path = f"{path} {name}"
        ctx = command.make_context(name, rest, parent=ctx)
    return path, command


def test_docs_show_rulerag_commands():
    pages = {s.page for s in SNIPPETS}
    assert len(SNIPPETS) >= 30, SNIPPETS
    assert {"README.md", "docs/benchmarks.md", "docs/retrieval.md", "docs/finetuning.md"} <= pages


@pytest.mark.parametrize("snippet", SNIPPETS, ids=str)
def test_docs_command_parses_against_the_cli(snippet: Snippet):
    args = snippet.args
    if "--help" in args:  # help is eager: resolve the path only
        args = tuple(a for a in args if a != "--help")
        if not args:
            return
    try:
        _parse(args)
    except Exception as exc:  # click's UsageError and friends: say which snippet drifted and why
        message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
        pytest.fail(f"{snippet}\n  does not parse against the CLI: {message}")


def test_a_drifted_snippet_fails():
    with pytest.raises(Exception, match="No such option"):
        _parse(("retrieve", "question?", "--no-such-option", "3"))
    with pytest.raises(Exception):
        _parse(("index", "no-such-command"))
    with pytest.raises(Exception):
        _parse(("retrieve", "q", "--retriever", "bm26"))


CHEAP = ("config", "show")  # a command a test can run in a moment, with no index or model


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.args[:2] == CHEAP], ids=str)
def test_cheap_docs_commands_run(snippet: Snippet):
    result = CliRunner().invoke(app, list(snippet.args), env=dict(snippet.env))
    assert result.exit_code == 0, f"{snippet}\n{result.output}"


# ----------------------------------------------------------------------------- README


def _bash_blocks_after(heading: str, text: str) -> list[str]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in FENCE.findall(section)]


def test_readme_is_a_short_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_two_commands_are_what_ci_runs():
    text = README.read_text(encoding="utf-8")
    demo, tests = _bash_blocks_after("## The two commands", text)[:2]
    assert "`.ci/run` runs exactly this" in text
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci, "README command (2) must be what .ci/run runs, verbatim"
    assert demo.endswith("HF_HUB_OFFLINE=1 .venv/bin/rulerag demo")
    # the copies in the manual are the same commands
    assert demo in (DOCS / "index.md").read_text(encoding="utf-8")
    assert tests in (DOCS / "development.md").read_text(encoding="utf-8")


def test_readme_result_links_point_at_result_files():
    text = README.read_text(encoding="utf-8")
    targets = set(re.findall(r"\]\((benchmarks/results/[^)#]+)\)", text))
    assert len(targets) >= 5
    for target in targets:
        assert (ROOT / target).is_file(), f"README links to a missing result file: {target}"
    for target in set(re.findall(r"\]\((docs/[^)#]+)\)", text)):
        assert (ROOT / target).is_file(), f"README links to a missing docs page: {target}"


# ----------------------------------------------------------------------------- site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def test_site_builds_strict_with_every_page(site: Path):
    for page in DOCS.rglob("*.md"):
        if "hooks" in page.parts:
            continue
        rel = page.relative_to(DOCS).with_suffix("")
        built = site / ("index.html" if rel.name == "index" else rel / "index.html")
        assert built.is_file(), f"{page} was not built"


def test_references_are_generated(site: Path):
    cli = _page(site, "reference/cli")
    for command in ("rulerag index build", "rulerag bench run", "rulerag finetune retriever", "rulerag serve"):
        assert command in cli
    assert "--ivfpq-refine" in cli and str(ROOT) not in cli
    http = _page(site, "reference/http")
    for endpoint in ("/v1/ask", "/v1/retrieve", "/v1/rules", "/v1/check", "/readyz"):
        assert endpoint in http
    assert (site / "openapi.json").is_file()
    config = _page(site, "reference/configuration")
    assert "RULERAG_RETRIEVAL__RRF_K" in config and "RULERAG_SERVER__MAX_BODY_BYTES" in config
    python = _page(site, "reference/python")
    assert "from_index" in python and "RuleGuidedRetriever" in python
