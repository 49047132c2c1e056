"""Named collections in one data directory: ingest into one, list, ask, rename, delete; bad names and
unknown collections give one message and change nothing. Real Chroma and MiniLM throughout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag import UnknownCollection, retrieve
from rag.errors import BadInput
from rag.settings import Settings
from rag.store.collections import CollectionInfo, delete_collection, list_collections, rename_collection
from ui.cli import cli

THESIS = [
    {"title": "Tidal batteries for island grids", "abstract": "Tidal lagoons store island grid energy.", "year": 2023},
    {"title": "Soil moisture from radar", "abstract": "Radar backscatter predicts soil moisture.", "year": 2024},
]
DEFAULT = [{"title": "Wavelet token mixing", "abstract": "A 2D wavelet transform mixes image tokens.", "year": 2022}]


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _file(tmp_path: Path, name: str, papers: list[dict[str, object]]) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(p) + "\n" for p in papers), encoding="utf-8")
    return str(path)


@pytest.fixture
def two_collections(tmp_path: Path) -> Settings:
    """The default collection with one paper and ``thesis`` with two, made through the CLI."""
    assert _run("ingest", _file(tmp_path, "default.jsonl", DEFAULT))[0] == 0
    code, out, err = _run("ingest", "--collection", "thesis", _file(tmp_path, "thesis.jsonl", THESIS))
    assert code == 0 and "2 added" in out, err
    return Settings()


def test_each_collection_holds_and_answers_from_its_own_papers(two_collections: Settings) -> None:
    code, out, _ = _run("collections")
    assert code == 0 and out.splitlines() == ["default\t1 papers\t1 chunks", "thesis\t2 papers\t2 chunks"]
    thesis = two_collections.updated(store={"collection": "thesis"})
    assert {s.title for s in retrieve("energy storage", settings=thesis)} == {t["title"] for t in THESIS}
    assert [s.title for s in retrieve("energy storage", settings=two_collections)] == ["Wavelet token mixing"]
    code, out, _ = _run("stats", "--collection", "thesis")
    assert code == 0 and "collection: thesis" in out and "papers: 2" in out


def test_the_collection_setting_picks_the_default_one(
    two_collections: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPERCITE_STORE__COLLECTION", "thesis")
    code, out, _ = _run("stats")
    assert code == 0 and "papers: 2" in out


@pytest.mark.parametrize(
    "args",
    [
        ("ask", "energy?", "--collection", "nope"),
        ("stats", "--collection", "nope"),
        ("similar", "Soil moisture from radar", "--collection", "nope"),
        ("serve", "--collection", "nope"),
        ("eval", "--set", "gold.jsonl", "--collection", "nope"),
        ("collections", "delete", "nope", "--yes"),
        ("collections", "rename", "nope", "other"),
    ],
)
def test_an_unknown_collection_is_one_message_and_changes_nothing(
    two_collections: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)
    gold = {"id": "q1", "question": "Which paper stores energy in tidal lagoons?", "kind": "single"}
    (tmp_path / "gold.jsonl").write_text(json.dumps({**gold, "gold_titles": [THESIS[0]["title"]]}) + "\n")
    before = list_collections(two_collections)
    code, _out, err = _run(*args)
    lines = err.strip().splitlines()
    assert code == 3 and len(lines) == 1, err
    assert "No collection named 'nope': the collections are default, thesis." in lines[0]
    assert list_collections(two_collections) == before


@pytest.mark.parametrize("name", ["my thesis", "-x", "a..b", "x" * 65, "thèse"])
def test_a_name_that_cannot_name_a_collection_is_refused(name: str) -> None:
    code, _out, err = _run("ingest", "--collection", name, "--sample")
    assert code == 3 and "cannot name a collection" in err and len(err.strip().splitlines()) == 1
    assert [c.name for c in list_collections(Settings())] == ["default"]


def test_rename_keeps_the_papers_and_their_bm25_index(two_collections: Settings) -> None:
    code, out, _ = _run("collections", "rename", "thesis", "chapter-2")
    assert code == 0 and "renamed" in out
    moved = two_collections.updated(store={"collection": "chapter-2"})
    sources = retrieve("tidal lagoons", settings=moved)
    assert sources[0].title == "Tidal batteries for island grids"
    assert (two_collections.data_dir / "bm25" / "papers-chapter-2").is_dir()
    assert not (two_collections.data_dir / "bm25" / "papers-thesis").exists()
    with pytest.raises(UnknownCollection):
        retrieve("tidal lagoons", settings=two_collections.updated(store={"collection": "thesis"}))


def test_rename_onto_an_existing_collection_is_refused(two_collections: Settings) -> None:
    with pytest.raises(BadInput, match="A collection named 'default' exists"):
        rename_collection(two_collections, "thesis", "default")
    assert [c.papers for c in list_collections(two_collections)] == [1, 2]


def test_delete_removes_one_collection_and_keeps_the_others(two_collections: Settings) -> None:
    declined = CliRunner().invoke(cli, ["collections", "delete", "thesis"], input="n\n")
    assert declined.exit_code == 1 and "2 papers?" in declined.output  # declined at the prompt: nothing deleted
    assert [c.name for c in list_collections(two_collections)] == ["default", "thesis"]
    assert delete_collection(two_collections, "thesis") == CollectionInfo("thesis", 2, 2)
    assert list_collections(two_collections) == [CollectionInfo("default", 1, 1)]
    assert not (two_collections.data_dir / "bm25" / "papers-thesis").exists()
    assert [s.title for s in retrieve("image tokens", settings=two_collections)] == ["Wavelet token mixing"]


def test_the_evals_collections_stay_out_of_the_users_list(two_collections: Settings) -> None:
    from evals.harness import eval_settings
    from ingest import ingest_papers, read_papers

    settings = eval_settings(two_collections.updated(store={"collection": "thesis"}), "bundled")
    papers = read_papers(_file(two_collections.data_dir.parent, "e.jsonl", THESIS)).papers
    ingest_papers(papers, settings=settings, progress=False)
    assert settings.data_dir == two_collections.data_dir / "evals" / "bundled"
    assert [c.name for c in list_collections(two_collections)] == ["default", "thesis"]
    code, _out, err = _run("eval", "--set", "bundled", "--collection", "thesis")
    assert code == 3 and "asked of its own collection" in err


def test_a_collection_can_become_the_default_when_the_default_is_empty(tmp_path: Path) -> None:
    assert _run("ingest", "--collection", "thesis", _file(tmp_path, "thesis.jsonl", THESIS))[0] == 0
    assert _run("collections")[1].splitlines()[0] == "default\t0 papers\t0 chunks"  # opened, so made, but empty
    code, _out, err = _run("collections", "rename", "thesis", "default")
    assert code == 0, err
    assert list_collections(Settings()) == [CollectionInfo("default", 2, 2)]
