"""The project's shape: public surfaces, the direction of imports, and no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import ingest
import rag

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rag", "ingest", "ui", "evals")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (in functions and type-checking blocks too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_module_imports_itself_back() -> None:
    # Every import counts, in a function or a type-checking block too: a circle is a circle to the reader.
    assert _circles(_graph()) == []


def test_the_rooms_of_rag_import_only_downwards() -> None:
    # Bottom to top; a module may import its own room and any room below it, never one above.
    floors = [
        {"rag.errors", "rag.settings", "rag.types", "rag.loaded"},
        {"rag.store", "rag.llm", "rag.embedding"},
        {"rag.services"},
        {"rag.retrieve"},
        {"rag.answer"},
        {"rag.similar", "rag.warm", "rag.export", "rag.titles", "rag.table"},
        {"rag"},
    ]

    def floor(module: str) -> int:
        room = module if module == "rag" else ".".join(module.split(".")[:2])
        return next(i for i, rooms in enumerate(floors) if room in rooms)

    graph = _graph()
    upwards = sorted(
        f"{name} -> {other}"
        for name, others in graph.items()
        if name.startswith("rag")
        for other in others
        if other.startswith("rag") and floor(other) > floor(name)
    )
    assert upwards == []


def test_rag_imports_none_of_the_edges() -> None:
    graph = _graph()
    assert not {o.split(".")[0] for n, os in graph.items() if n.split(".")[0] == "rag" for o in os} & {
        "ingest",
        "ui",
        "evals",
    }
    assert not {o.split(".")[0] for n, os in graph.items() if n.split(".")[0] == "ingest" for o in os} & {"ui", "evals"}


def test_public_api_is_exactly_what_all_names() -> None:
    for name in ["ask", "ask_stream", "retrieve", "similar", "Answer", "Citation", "Source", "Settings"]:
        assert name in rag.__all__
    for module in (rag, ingest):
        public = {n for n in dir(module) if not n.startswith("_")}
        assert set(module.__all__) <= public
    assert "ingest_path" in ingest.__all__


def test_modules_stay_readable() -> None:
    for name, path in _modules().items():
        assert len(path.read_text().splitlines()) < 600, name


def test_functions_stay_readable() -> None:
    long = []
    for package in ("rag", "ingest", "ui"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                if is_function and node.end_lineno and node.end_lineno - node.lineno + 1 > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert long == []


def test_imports_inside_functions_are_only_heavy_or_optional_ones_and_say_so() -> None:
    # A function-level import hides a dependency from the reader; only a heavy or optional
    # third-party module may wait until it is needed, with a comment on the line saying why.
    # The CLI also defers the page (gradio) and the evals, which only some commands use; the
    # ingest benchmark imports each case's pipeline in that case's process, whose memory it measures.
    deferred = {"ui": ("ui.app", "evals"), "evals": ("rag", "ingest", "evals")}
    hidden = []
    for package in ("rag", "ingest", "ui", "evals"):
        for path in (ROOT / package).rglob("*.py"):
            lines = path.read_text().splitlines()
            for func in ast.walk(ast.parse(path.read_text())):
                if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(func):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        module = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""
                        allowed = module.startswith(deferred.get(package, ()))
                        project = module.split(".")[0] in PACKAGES and not allowed
                        if project or "#" not in lines[node.lineno - 1]:
                            hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert hidden == []
