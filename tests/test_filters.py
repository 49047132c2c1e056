"""Filters over the real store: years, authors and source files narrow both retrievers before they rank.

Real Chroma and MiniLM throughout; the answer tests use the scripted LLM, which fails
the test if it is asked when nothing should be asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rag import Filters, NoMatch, ask, retrieve
from rag.errors import BadInput
from rag.retrieve import hybrid_retriever
from rag.services import Services
from rag.settings import Settings
from rag.store.chunks import author_keys, fold_name, source_of
from ui.cli import cli

# Eight papers on attention from 2018 and four on other things from 2023-2024, so a question on
# attention filtered to 2023 on ranks the 2023 papers below every 2018 one.
OLD = [
    {
        "title": f"Attention variant {i} for long sequences",
        "abstract": f"We study attention mechanism variant {i} in transformers for long sequences and "
        "show that attention heads can be pruned.",
        "authors": ["Li Wei", "Ana Okafor"],
        "year": 2018,
    }
    for i in range(8)
]
NEW = [
    {
        "title": "Sparse attention kernels on CPUs",
        "abstract": "Attention computed with sparse kernels runs twice as fast on laptop CPUs.",
        "authors": ["Song Han", "Jürgen Müller"],
        "year": 2023,
    },
    {
        "title": "Tidal batteries for island grids",
        "abstract": "Tidal lagoons store island grid energy and release it through turbines.",
        "authors": ["Han, Song"],
        "year": 2023,
    },
    {
        "title": "Soil moisture from radar",
        "abstract": "Satellite radar backscatter predicts soil moisture in dry regions.",
        "authors": ["José García"],
        "year": 2024,
    },
    {
        "title": "Coral reef sound maps",
        "abstract": "Hydrophones map the sounds of coral reefs to track their recovery.",
        "authors": ["Ana Okafor"],
        "year": 2024,
    },
]
UNDATED = {
    "title": "An undated note on attention",
    "abstract": "A note on attention in transformers, without a date.",
    "authors": ["Jurgen Muller"],
}
QUESTION = "How can attention heads in transformers be pruned for long sequences?"


def _write(path: Path, papers: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in papers), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the papers above from two files: old.jsonl (2018) and new.jsonl (the rest)."""
    from ingest import ingest_path

    folder = tmp_path_factory.mktemp("filters")
    settings = Settings(data_dir=folder / "data")
    for name, papers in (("old.jsonl", OLD), ("new.jsonl", [*NEW, UNDATED])):
        report = ingest_path(_write(folder / name, papers), settings=settings, progress=False)
        assert not report.skipped, report.summary()
    return folder / "data"


@pytest.fixture
def settings(store_dir: Path) -> Settings:
    return Settings(data_dir=store_dir)


def _titles(sources: Any) -> list[str]:
    return [s.title for s in sources]


def test_author_keys_fold_case_accents_and_bibtex_order() -> None:
    assert fold_name("MÜLLER, J.") == "muller j"
    assert author_keys(["Song Han"]) == ["author:han", "author:song han"]
    assert author_keys(["Han, Song"]) == author_keys(["Song Han"])
    assert "author:van der berg" in author_keys(["van der Berg, Jan"])
    assert source_of("/home/me/refs/my-library.bib:12") == "my-library.bib"
    assert source_of("zotero.sqlite:431") == "zotero.sqlite"


@pytest.mark.parametrize(
    ("filters", "passes"),
    [
        (Filters(since=2023), lambda p: (p.year or 0) >= 2023),
        (Filters(until=2018), lambda p: p.year is not None and p.year <= 2018),
        (Filters(since=2023, until=2023), lambda p: p.year == 2023),
        (Filters(author="müller"), lambda p: any(fold_name(a).endswith("muller") for a in p.authors)),
        (Filters(author="SONG HAN"), lambda p: any(fold_name(a) in ("song han", "han song") for a in p.authors)),
        (Filters(author="Garcia"), lambda p: "José García" in p.authors),
        (Filters(source="/somewhere/else/old.jsonl"), lambda p: p.year == 2018),
        (Filters(since=2020, author="Okafor"), lambda p: p.title == "Coral reef sound maps"),
    ],
)
def test_every_paper_retrieved_passes_the_filter(settings: Settings, filters: Filters, passes: Any) -> None:
    sources = retrieve(QUESTION, top_k=20, filters=filters, settings=settings)
    assert sources, filters
    assert all(passes(s) for s in sources), [(s.title, s.year, s.authors) for s in sources]


def test_the_filter_applies_before_ranking_so_top_k_papers_all_pass(settings: Settings) -> None:
    # Each retriever returns 3 candidates only: filtering after ranking would leave nothing, as
    # the 3 nearest chunks to an attention question are all 2018 papers.
    narrow = settings.updated(tuning={"retrieval": {"candidates": 3}})
    unfiltered = retrieve(QUESTION, top_k=3, settings=narrow)
    assert all(s.year == 2018 for s in unfiltered)
    filtered = retrieve(QUESTION, top_k=3, filters=Filters(since=2023), settings=narrow)
    assert len(filtered) == 3 and all((s.year or 0) >= 2023 for s in filtered)
    assert filtered[0].title == "Sparse attention kernels on CPUs"  # still ranked: the one on attention first


def test_bm25_hits_are_taken_among_the_papers_that_pass(settings: Settings) -> None:
    services = Services(settings)
    where = Filters(since=2023).where()
    hits = hybrid_retriever(services, where).sparse.retrieve("attention transformers sequences")  # type: ignore[union-attr]
    assert hits and all(h.node.metadata["year"] >= 2023 for h in hits)
    everything = hybrid_retriever(services).sparse.retrieve("attention transformers sequences")  # type: ignore[union-attr]
    assert any(h.node.metadata["year"] == 2018 for h in everything)


def test_a_filter_that_matches_nothing_says_so_and_never_falls_back(settings: Settings, scripted: Any) -> None:
    services = Services(settings, llm=scripted)  # no reply queued: asking the model fails the test
    with pytest.raises(NoMatch) as caught:
        ask(QUESTION, services=services, filters=Filters(since=2030))
    message = str(caught.value)
    assert "years from 2030" in message and "1 paper without a year was left out" in message
    with pytest.raises(NoMatch, match="author Nobody"):
        retrieve(QUESTION, filters=Filters(author="Nobody"), settings=settings)
    with pytest.raises(NoMatch, match="Sources here: new.jsonl, old.jsonl"):
        retrieve(QUESTION, filters=Filters(source="thesis.bib"), settings=settings)
    assert scripted.history == []


def test_a_year_filter_answer_says_how_many_papers_had_no_year(settings: Settings, scripted: Any) -> None:
    scripted.enqueue("Sparse kernels make attention twice as fast on laptop CPUs [1].")
    answer = ask(
        "What makes attention faster on CPUs?", services=Services(settings, llm=scripted), filters=Filters(since=2020)
    )
    assert answer.citations and answer.citations[0].title == "Sparse attention kernels on CPUs"
    assert "1 paper without a year was left out by the year filter" in answer.notice
    assert "An undated note" not in " ".join(m.content or "" for m in scripted.history[-1])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"since": 2024, "until": 2020}, "after --until"),
        ({"since": 24}, "not a year"),
        ({"author": " . "}, "holds no name"),
        ({"source": " "}, "names no file"),
    ],
)
def test_a_malformed_filter_is_refused_with_its_fix(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        Filters(**kwargs)


def test_a_store_from_before_filters_gets_its_fields_on_first_use(tmp_path: Path) -> None:
    from ingest import ingest_path

    settings = Settings(data_dir=tmp_path / "data")
    ingest_path(_write(tmp_path / "new.jsonl", NEW), settings=settings, progress=False)
    services = Services(settings)
    store = services.store
    rows = store.collection.get(include=["metadatas"])
    stripped = [
        {key: None for key in meta if key == "source" or key.startswith("author:")} for meta in rows["metadatas"]
    ]
    store.collection.update(ids=rows["ids"], metadatas=stripped)  # as papercite wrote chunks before filters
    store.collection.modify(metadata={"embedding_model": store.recorded_embedding_model()})
    assert store.sources() == [] and not store.collection.get(where={"author:han": True})["ids"]

    sources = retrieve("island grid energy", filters=Filters(author="Han"), services=services)
    assert _titles(sources) == ["Tidal batteries for island grids", "Sparse attention kernels on CPUs"]
    assert store.sources() == ["new.jsonl"] == Services(settings).store.sources()


def test_cli_filters_refuse_with_one_line_and_change_nothing(settings: Settings) -> None:
    env = {"PAPERCITE_DATA_DIR": str(settings.data_dir)}
    before = Services(settings).store.collection.count()
    for args, needle in (
        (["--since", "2030"], "No paper in collection 'default' matches years from 2030"),
        (["--since", "2024", "--until", "2020"], "swap them"),
        (["--author", "Nobody", "--source", "old.jsonl"], "author Nobody, source old.jsonl"),
    ):
        result = CliRunner().invoke(cli, ["ask", QUESTION, *args], env=env)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 3 and len(lines) == 1 and needle in lines[0], result.stderr
    assert Services(settings).store.collection.count() == before


@pytest.mark.llm
def test_cli_ask_with_filters_answers_from_the_papers_that_pass_only(settings: Settings, sample_store: Path) -> None:
    env = {
        "PAPERCITE_DATA_DIR": str(settings.data_dir),
        "PAPERCITE_LLM__BACKEND": "embedded",
        "PAPERCITE_LLM__MODELS_DIR": str(sample_store / "models"),  # the joined model, shared (1.1 GB)
    }
    result = CliRunner().invoke(
        cli,
        ["ask", "What makes attention faster?", "--since", "2023", "--author", "müller", "--format", "json"],
        env=env,
    )
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [s["title"] for s in answer["sources"]] == ["Sparse attention kernels on CPUs"]
    assert all(c["title"] == "Sparse attention kernels on CPUs" for c in answer["citations"])
