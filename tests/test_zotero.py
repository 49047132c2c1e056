"""Reading a Zotero library directly, from a ``zotero.sqlite`` built with Zotero's own schema."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ingest import ingest_path, read_papers
from ingest.zotero import collection_name, read_zotero, zotero_collections
from rag import BadInput
from rag.settings import Settings

try:
    from tests.zotero_library import SPARSE, WAVELETS, build_zotero_library
except ImportError:  # pragma: no cover - run from inside tests/
    from zotero_library import SPARSE, WAVELETS, build_zotero_library


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_regular_items_with_an_abstract_become_papers_and_the_rest_is_counted(tmp_path: Path) -> None:
    library = build_zotero_library(tmp_path / "zotero.sqlite")
    before = _digest(library)
    result = read_papers(library)
    assert [p.title for p in result.papers] == [WAVELETS, SPARSE]
    wave, sparse = result.papers
    assert wave.authors == ("José Ñúñez", "Pat O'Brien") and wave.year == 2021 and wave.url == "https://ex.org/wave"
    assert wave.id == "doi:10.1234/wave.5" and sparse.id.startswith("title:")
    assert sparse.authors == ("Speech Lab",) and sparse.year == 2019
    # The item without an abstract is skipped and counted; notes, attachments and the trash are not papers.
    assert [(p.location, p.reason) for p in result.problems] == [("zotero.sqlite:3", "no abstract field")]
    assert _digest(library) == before  # read-only


def test_the_same_papers_from_zotero_and_from_its_bibtex_export_are_one_paper_each(tmp_path: Path) -> None:
    library = build_zotero_library(tmp_path / "zotero.sqlite")
    settings = Settings(data_dir=tmp_path / "data")
    first = ingest_path(library, settings=settings, progress=False)
    assert len(first.added) == 2 and len(first.skipped) == 1
    export = tmp_path / "export.bib"
    export.write_text(
        "@article{nunez2021wavelets, title = {Wavelets Mix Tokens: A Study}, author = {Ñúñez, José and "
        "O'Brien, Pat}, year = {2021}, doi = {10.1234/wave.5}, url = {https://ex.org/wave},\n"
        "abstract = {We mix image tokens with a 2D wavelet transform.}}\n"
        "@inproceedings{lab2019sparse, title = {Sparse Adapters for Speech, Revisited}, author = {{Speech Lab}}, "
        "year = {2019}, abstract = {Pruned adapters keep word error rate within 0.3 points.}}\n",
        encoding="utf-8",
    )
    second = ingest_path(export, settings=settings, progress=False)
    assert not second.added and not second.updated and len(second.unchanged) == 2


def test_a_library_zotero_holds_locked_is_still_read(tmp_path: Path) -> None:
    library = build_zotero_library(tmp_path / "zotero.sqlite")
    zotero = sqlite3.connect(library)  # as Zotero does while it runs
    zotero.execute("PRAGMA locking_mode = EXCLUSIVE")
    zotero.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # a plain read-only open would fail
            sqlite3.connect(f"{library.as_uri()}?mode=ro", uri=True).execute("SELECT * FROM items").fetchall()
        assert [p.title for p in read_zotero(library).papers] == [WAVELETS, SPARSE]
    finally:
        zotero.rollback()
        zotero.close()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not a database at all\n" * 100, "is not a Zotero library (not an SQLite database)"),
        (None, "is not a Zotero library (it has no creators, itemCreators, fieldsCombined tables)"),
    ],
)
def test_a_file_that_is_not_a_zotero_library_is_one_clear_error(tmp_path: Path, content: Any, needle: str) -> None:
    path = tmp_path / "other.sqlite"
    if content is None:  # a real SQLite database, but someone else's
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
            db.execute("CREATE TABLE itemData (id INTEGER)")
            db.execute("CREATE TABLE itemDataValues (id INTEGER)")
            db.execute("CREATE TABLE itemTypes (id INTEGER)")
    else:
        path.write_bytes(content)
    with pytest.raises(BadInput) as raised:
        read_zotero(path)
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def test_papercite_ingest_zotero_reads_the_data_directory_and_changes_nothing_on_error(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from ui.cli import cli

    monkeypatch.setenv("PAPERCITE_DATA_DIR", str(tmp_path / "data"))
    zotero_dir = tmp_path / "Zotero"
    zotero_dir.mkdir()
    build_zotero_library(zotero_dir / "zotero.sqlite")
    result = CliRunner().invoke(cli, ["ingest", "--zotero", str(zotero_dir)])
    assert result.exit_code == 0, result.output
    assert "2 added" in result.stdout and "1 skipped" in result.stdout
    assert "zotero.sqlite:3: no abstract field" in result.stderr

    (tmp_path / "bad.sqlite").write_text("nope", encoding="utf-8")
    for args in (["--zotero", str(tmp_path / "nowhere")], [str(tmp_path / "bad.sqlite")]):
        failed = CliRunner().invoke(cli, ["ingest", *args])
        assert failed.exit_code == 3 and failed.stderr.startswith("Error: ") and failed.stderr.count("\n") == 1
    stats = CliRunner().invoke(cli, ["stats"])
    assert "papers: 2" in stats.stdout  # the failed ingests wrote nothing


def test_zotero_collections_become_papercite_collections_on_request(tmp_path: Path, monkeypatch: Any) -> None:
    from rag.store.collections import list_collections
    from ui.cli import cli

    monkeypatch.setenv("PAPERCITE_DATA_DIR", str(tmp_path / "data"))
    library = build_zotero_library(tmp_path / "zotero.sqlite")
    assert zotero_collections(library) == {
        "thesis": {"zotero.sqlite:1"},
        "thesis - Speech & Audio": {"zotero.sqlite:1", "zotero.sqlite:2"},  # a subcollection, by its path
    }
    assert collection_name("thesis - Speech & Audio") == "thesis-Speech-Audio"
    assert collection_name("Thèse / Chapitre 2") == "These-Chapitre-2" and collection_name("!!!") == "zotero"

    result = CliRunner().invoke(cli, ["ingest", str(library), "--zotero-collections"])
    assert result.exit_code == 0, result.output
    counts = {c.name: c.papers for c in list_collections(Settings())}
    assert counts == {"default": 2, "thesis": 1, "thesis-Speech-Audio": 2}  # the whole library stays in default
    again = CliRunner().invoke(cli, ["ingest", str(library), "--zotero-collections"])
    assert again.exit_code == 0 and all(": 0 added" in line for line in again.stdout.splitlines())  # idempotent

    plain = tmp_path / "p.jsonl"
    plain.write_text('{"title": "T", "abstract": "A."}\n', encoding="utf-8")
    refused = CliRunner().invoke(cli, ["ingest", str(plain), "--zotero-collections"])
    assert refused.exit_code == 3 and "needs a Zotero library" in refused.stderr
