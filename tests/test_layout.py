"""The project's shape: public surfaces and the direction of imports."""

from __future__ import annotations

import ast
from pathlib import Path

import ingest
import rag

ROOT = Path(__file__).resolve().parent.parent


def _imported_top_levels(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_rag_imports_none_of_the_edges() -> None:
    assert not _imported_top_levels("rag") & {"ingest", "ui", "evals"}


def test_ingest_does_not_import_the_ui() -> None:
    assert not _imported_top_levels("ingest") & {"ui", "evals"}


def test_public_api_is_exactly_what_all_names() -> None:
    for name in ["ask", "retrieve", "Answer", "Citation", "Source", "Settings"]:
        assert name in rag.__all__
    for module in (rag, ingest):
        public = {n for n in dir(module) if not n.startswith("_")}
        assert set(module.__all__) <= public
    assert "ingest_path" in ingest.__all__


def test_modules_stay_readable() -> None:
    for path in ROOT.glob("*/*.py"):
        if path.parts[-2] in {"rag", "ingest", "ui", "evals"}:
            assert len(path.read_text().splitlines()) < 600, path


def test_services_are_looked_up_only_by_the_public_entry_points() -> None:
    # Everything else in rag/ and ingest/ receives its Services (store, encoder, LLM) as an argument.
    callers = set()
    for package in ("rag", "ingest"):
        for path in (ROOT / package).rglob("*.py"):
            for func in ast.walk(ast.parse(path.read_text())):
                if isinstance(func, ast.FunctionDef):
                    for node in ast.walk(func):
                        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "get_services":
                            callers.add(f"{package}.{path.stem}.{func.name}")
    assert callers == {
        "rag.answer.ask_stream",
        "rag.retrieve.retrieve",
        "rag.similar.similar",
        "ingest.pipeline.ingest_papers",
    }
