"""Papers read once and kept (``papercite warm``, :mod:`rag.llm.prefixes`), with the real embedded model.

The model's own prompt cache in memory is switched off here, so that a question reading
only its own tokens proves the paper's state came back from disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ingest import ingest_papers
from ingest.papers import Paper
from rag import ask, table
from rag.answer.cells import CELL_PROMPT
from rag.answer.readings import prefix_of
from rag.errors import BadInput, IndexEmpty
from rag.llm.backends import models_dir
from rag.llm.prefixes import PrefixStore
from rag.services import Services
from rag.settings import Settings
from rag.warm import collection_sources, warm
from ui.cli import cli

PAPERS = [
    Paper(
        "w:1",
        "Gradient Noise for Deep Nets",
        "We add annealed Gaussian noise to every gradient. It lets a 20-layer network train from a poor "
        "initialization and cuts the error rate by 72% on a question-answering task.",
    ),
    Paper(
        "w:2",
        "Wavelet Token Mixing",
        "WaveMix mixes image tokens with a multi-level two-dimensional discrete wavelet transform. It needs "
        "less GPU memory than transformers and reaches 75.3% accuracy on ImageNet-1k.",
    ),
    Paper(
        "w:3",
        "Tiny On-Device Training",
        "We train convolutional networks on a microcontroller within 256KB of memory, using quantization-aware "
        "scaling and sparse updates, with less than 1/1000 of the memory of PyTorch.",
    ),
]
QUESTIONS = {
    "Gradient Noise for Deep Nets": "How much does annealed gradient noise cut the error rate?",
    "Wavelet Token Mixing": "Which model mixes image tokens with a wavelet transform?",
    "Tiny On-Device Training": "How little memory does training on a microcontroller need?",
}


@pytest.fixture
def three_papers(tmp_path: Path, sample_settings: Settings) -> Settings:
    """A data directory holding three short papers, the embedded model's files shared with the sample store's."""
    settings = Settings(data_dir=tmp_path / "warm").updated(
        llm={"backend": "embedded", "prompt_cache_mib": 0, "models_dir": models_dir(sample_settings)},
        answer={"mode": "per_paper", "max_papers": 1},
        tuning={"reading": {"read_margin": 0.0}},
    )
    ingest_papers(PAPERS, settings=settings, source="test", progress=False)
    return settings


def _kept(services: Services) -> PrefixStore:
    store = services.backend.llm.prefix_store  # type: ignore[attr-defined]
    assert isinstance(store, PrefixStore)
    return store


@pytest.mark.llm
def test_a_warmed_question_reads_only_its_own_tokens(three_papers: Settings) -> None:
    services = Services(three_papers)
    report = warm(services)
    assert (report.papers, report.read, report.kept, report.left) == (3, 3, 0, 0)
    count, size = report.files
    assert count == 3 and size > 0
    assert warm(services).kept == 3  # a second warm reads nothing

    answer = ask("How much does annealed gradient noise cut the error rate?", services=services)
    reading = next(r for r in answer.readings if r.verdict != "unread")
    assert reading.title == "Gradient Noise for Deep Nets"
    assert reading.prompt_tokens and reading.cached_tokens is not None
    # Everything but the question came back from the paper's saved state: its abstract was not read again.
    assert reading.prompt_tokens - reading.cached_tokens < 40 < reading.cached_tokens


@pytest.mark.llm
def test_a_full_budget_evicts_the_least_recently_read_paper_and_never_fails(three_papers: Settings) -> None:
    services = Services(three_papers)
    store = _kept(services)
    sources = list(collection_sources(services.store))
    first = warm(services)
    assert first.read == 3
    sizes = {s.title: os.path.getsize(store.path(prefix_of(s))) for s in sources}
    # Room for two papers: the next save evicts the one read longest ago.
    store.budget_bytes = sum(sorted(sizes.values())[-2:]) + 1
    store.evict()
    assert store.usage()[0] == 2 and not store.has(prefix_of(sources[0]))  # the first warmed went first
    answer = ask(QUESTIONS[sources[0].title], services=services)  # about the evicted paper
    assert answer.readings[0].title == sources[0].title and answer.readings[0].cached_tokens is not None
    assert store.usage()[0] <= 2 and store.has(prefix_of(sources[0]))  # read again, kept, another evicted
    assert not store.has(prefix_of(sources[1]))  # the least recently read of the rest


@pytest.mark.llm
def test_warm_for_tables_keeps_each_paper_as_a_tables_cells_start(three_papers: Settings) -> None:
    services = Services(three_papers)
    store = _kept(services)
    sources = list(collection_sources(services.store))
    assert warm(services, tables=True).read == 3
    assert all(store.has(prefix_of(s, CELL_PROMPT)) and not store.has(prefix_of(s)) for s in sources)
    done = table(["Memory: How much memory does training need?"], papers=["Tiny On-Device"], services=services)
    assert "256" in done.rows[0].cells[0].shown
    assert store.usage()[0] == 3  # the table restored the paper's kept state; it saved no other
    assert warm(services, tables=True).kept == 3 and warm(services).read == 3  # questions' readings are apart


def test_warm_on_an_empty_or_unknown_collection_is_one_clear_message(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PAPERCITE_DATA_DIR": str(tmp_path / "empty")}
    result = runner.invoke(cli, ["warm", "--collection", "nope"], env=env)
    assert result.exit_code != 0 and "No collection named 'nope'" in result.output
    assert "Traceback" not in result.output


def test_warm_needs_a_model_that_keeps_what_it_reads(tmp_path: Path, scripted: Any) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    ingest_papers(PAPERS[:1], settings=settings, source="test", progress=False)
    with pytest.raises(BadInput, match="keeps read papers for the embedded model"):
        warm(Services(settings, llm=scripted))
    empty = settings.updated(store={"collection": "empty"})
    Services(empty).writable_store()
    with pytest.raises(IndexEmpty, match="has no papers to warm"):
        warm(Services(empty, llm=scripted))
