"""Who imports whom: no import circle among the ``rulerag`` and ``server`` modules, and the layer
contracts in pyproject.toml (``[tool.importlinter]``: the CLI on top, then the server, then the
pipeline, down to formats and settings) hold.

Every import counts, including those inside functions: a lazy import still ties two modules
together. Fix a failure by moving what both sides need to the lower module, not by hiding the
import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rulerag", "server")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Each module-level import circle as a path ``[a, b, ..., a]`` with ``a`` importing ``b`` and so on,
    one per strongly connected group of modules (Tarjan), shortest circle through its first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        # iterative Tarjan: (module, iterator over the modules it imports)
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            module, imported = work[-1]
            child = next(imported, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    cycles = []
    for group in groups:
        first = group[0]
        chains = [graph.find_shortest_chain(importer=child, imported=first)
                  for child in graph.find_modules_directly_imported_by(first) if child in group]
        chain = min((c for c in chains if c), key=len)
        cycles.append([first, *chain])
    return cycles


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """``a -> b (a.py:12: from b import x) -> ... -> a``."""
    steps = []
    for importer, imported in zip(cycle, cycle[1:]):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = f" (line {details[0]['line_number']}: {details[0]['line_contents']})" if details else ""
        steps.append(f"{importer} imports {imported}{where}")
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def test_no_import_cycle_among_rulerag_and_server_modules():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert len(graph.modules) > 50  # the packages were found
    cycles = import_cycles(graph)
    assert not cycles, (f"{len(cycles)} import circle(s); move what both sides need to the lower module:\n"
                        + "\n".join(describe(graph, c) for c in cycles))


def test_the_cycle_check_reports_the_circle_path(tmp_path, monkeypatch):
    """A planted circle a -> b -> c -> a (one import inside a function) is found, with its path."""
    pkg = tmp_path / "circle_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from circle_pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from circle_pkg.c import g\n    return g\n")
    (pkg / "c.py").write_text("import circle_pkg.a\n\ndef g():\n    return 1\n")
    (pkg / "d.py").write_text("from circle_pkg import a\n")  # imports into the circle, not part of it
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("circle_pkg", cache_dir=None)
    cycles = import_cycles(graph)
    assert cycles == [["circle_pkg.a", "circle_pkg.b", "circle_pkg.c", "circle_pkg.a"]]
    text = describe(graph, cycles[0])
    assert "circle_pkg.b imports circle_pkg.c (line 2: from circle_pkg.c import g)" in text


def test_layer_contracts_hold():
    """The import-linter contracts in pyproject.toml: a lower layer never imports a higher one.
    (In a subprocess: import-linter reconfigures logging, which would silence other tests' loggers.)"""
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                          "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"import-linter contracts broken:\n{report}"
    assert "0 broken" in report
