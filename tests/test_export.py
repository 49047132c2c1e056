"""Exports: an answer with its references as Markdown, BibTeX, RIS and JSON, read back by real parsers."""

from __future__ import annotations

import json
from typing import Any

import bibtexparser
import pytest
import rispy
from bibtexparser.middlewares import LatexDecodingMiddleware, SeparateCoAuthors
from click.testing import CliRunner

from rag import Answer, BadInput, Citation, Source, export
from rag.export import bibtex_key

HARD = "S^{2}FT: 100% & more_#1 of $x$ ~ {braces} \\ back"
SOURCES = (
    Source(1, "doi:10.1000/xyz_1", HARD, ("a",), 0.03, 0.6, ("José Ñúñez", "O'Brien, Pat"), 2024),
    Source(2, "arxiv:2401.01234", "Deep Nets, Again", ("b",), 0.02, 0.5, ("Ann Lee",), 2023),
    Source(
        3, "title:abc", "Deep Nets Again: A Sequel", ("c",), 0.01, 0.4, ("Bo Lee",), 2023, "https://ex.org/p?a=1&b=2"
    ),
    Source(4, "title:def", "Not cited", ("d",), 0.01, 0.3),
)
ANSWER = Answer(
    question="Which nets?\nBoth of them.",
    text="Deep nets fine-tune sparsely [1]. They are deep [2][3].",
    citations=tuple(Citation(s.number, s.title, s.paper_id) for s in SOURCES[:3]),
    sources=SOURCES,
    abstained=False,
    model="custom:scripted",
)


def test_bibtex_parses_back_to_the_stored_metadata_with_stable_unique_keys() -> None:
    text = export(ANSWER, "bibtex")
    library = bibtexparser.parse_string(text, append_middleware=[LatexDecodingMiddleware(), SeparateCoAuthors()])
    assert not library.failed_blocks
    entries = library.entries
    assert len(entries) == 3 and len({e.key for e in entries}) == 3
    first = {f.key: f.value for f in entries[0].fields}
    # pylatexenc reads \textasciicircum{} (LaTeX's safe caret) as U+02C6, the modifier letter.
    assert first["title"].strip("{}").replace("\u02c6", "^") == HARD
    assert first["author"] == ["José Ñúñez", "O'Brien, Pat"] and first["year"] == "2024"
    assert first["doi"] == "10.1000/xyz_1"
    assert {f.key: f.value for f in entries[1].fields}["eprint"] == "2401.01234"
    assert {f.key: f.value for f in entries[2].fields}["url"] == "https://ex.org/p?a=1&b=2"
    # Ann Lee and Bo Lee, 2023, "Deep ...": one key apart, each with a suffix of its own id.
    assert entries[1].key != entries[2].key and all(e.key.startswith("lee2023deep") for e in entries[1:])
    # The same paper gets the same key whatever else is exported with it.
    assert entries[0].key == bibtex_key(SOURCES[0]) == "nunez2024s2ft"
    alone = Answer(**{**ANSWER.__dict__, "citations": ANSWER.citations[1:2]})
    assert bibtexparser.parse_string(export(alone, "bibtex")).entries[0].key == "lee2023deep"


def test_ris_parses_back_with_a_ris_reader() -> None:
    records = rispy.loads(export(ANSWER, "ris"))
    assert [r["title"] for r in records] == [HARD, "Deep Nets, Again", "Deep Nets Again: A Sequel"]
    assert records[0]["authors"] == ["José Ñúñez", "O'Brien, Pat"] and records[0]["year"] == "2024"
    assert records[0]["doi"] == "10.1000/xyz_1" and records[2]["urls"] == ["https://ex.org/p?a=1&b=2"]
    assert "arxiv.org/abs/2401.01234" in records[1]["urls"][0]


def test_markdown_and_json_carry_the_answer_and_its_references() -> None:
    markdown = export(ANSWER, "markdown")
    assert ANSWER.text in markdown and "**References**" in markdown
    assert f"[1] José Ñúñez, O'Brien, Pat (2024) *{HARD}*. <https://doi.org/10.1000/xyz_1>" in markdown
    assert "Not cited" not in markdown
    assert json.loads(export(ANSWER, "json"))["citations"][2]["title"] == "Deep Nets Again: A Sequel"
    with pytest.raises(BadInput, match="Unknown export format 'docx'"):
        export(ANSWER, "docx")


def test_an_abstention_exports_no_references() -> None:
    abstained = Answer(**{**ANSWER.__dict__, "citations": (), "abstained": True, "text": "Not covered."})
    assert bibtexparser.parse_string(export(abstained, "bibtex")).entries == []
    assert export(abstained, "ris") == "" and "**References**" not in export(abstained, "markdown")


def test_papercite_ask_format_bibtex_exports_the_cited_stored_papers(
    sample_settings: Any, scripted: Any, monkeypatch: Any
) -> None:
    from rag.services import Services
    from ui.cli import cli

    services = Services(sample_settings, llm=scripted)
    monkeypatch.setattr("rag.answer.ask.Services", lambda settings: services)
    scripted.enqueue("WaveMix mixes image tokens with a multi-level 2D wavelet transform [1].")
    question = "Which architecture mixes image tokens with a 2D wavelet transform?"
    result = CliRunner().invoke(cli, ["ask", question, "--format", "bibtex"])
    assert result.exit_code == 0, result.output
    entries = bibtexparser.parse_string(result.stdout).entries
    assert [e["title"] for e in entries] == ["{WaveMix: A Resource-efficient Neural Network for Image Analysis}"]
