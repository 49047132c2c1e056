"""Tests for ingest.readers and ingest.page: every format, bad records, bad files, stable ids."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ingest.page import parse_page
from ingest.papers import ReadResult, paper_id
from ingest.readers import read_papers
from rag.errors import BadInput

BUNDLED_PAGE = Path(__file__).resolve().parents[1] / "data" / "trending-papers.txt"
HEADER_LINES = {
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "byAK and the research community",
    "Mar 12",
}
ABSTRACT = "We study a problem and propose a method that works well on several benchmarks. " * 3


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``tmp_path / name`` and return the path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problem_lines(result: ReadResult) -> list[str]:
    """Render a result's problems as ``file:line: reason`` strings."""
    return [str(p) for p in result.problems]


# --- the bundled trending-papers page -------------------------------------------------


def test_page_reads_exactly_the_84_bundled_papers() -> None:
    result = read_papers(BUNDLED_PAGE)

    assert len(result.papers) == 84
    assert result.problems == []
    titles = [p.title for p in result.papers]
    assert titles[0] == "Generative Image Layer Decomposition with Visual Effects"
    assert titles[-1] == (
        "Duplex: A Device for Large Language Models with Mixture of Experts, "
        "Grouped Query Attention, and Continuous Batching"
    )
    assert not HEADER_LINES & set(titles)
    assert all(len(p.abstract) > 200 for p in result.papers)
    assert len({p.id for p in result.papers}) == 84
    assert result.papers[0].origin == "trending-papers.txt:11"


def test_page_reports_title_without_abstract_and_orphan_abstract() -> None:
    text = (
        "Subscribe\n\n"
        "Mar 3, 2025\n\n"
        f"{ABSTRACT}\n\n"  # line 5: prose before any title
        "A Title With Nothing After It\n\n"  # line 7
        "Real Paper\n\n"  # line 9
        f"{ABSTRACT}\n\n"
        "Trailing Title"  # line 13
    )
    result = parse_page(text, "p.txt")

    assert [p.title for p in result.papers] == ["Real Paper"]
    assert result.papers[0].origin == "p.txt:9"
    assert problem_lines(result) == [
        "p.txt:5: abstract paragraph has no title before it",
        "p.txt:7: title 'A Title With Nothing After It' has no abstract after it",
        "p.txt:13: title 'Trailing Title' has no abstract after it",
    ]


def test_page_reports_a_repeated_paper_as_duplicate() -> None:
    text = f"A Paper\n\n{ABSTRACT}\n\nA paper!\n\n{ABSTRACT}\n"
    result = parse_page(text, "p.txt")

    assert len(result.papers) == 1
    assert problem_lines(result) == ["p.txt:5: duplicate of line 1"]


# --- JSON Lines and JSON ---------------------------------------------------------------


def test_jsonl_keeps_good_records_and_reports_bad_ones_by_line(tmp_path: Path) -> None:
    lines = [
        json.dumps({"title": "Good  One", "abstract": " An\nabstract. ", "authors": "A. One; B. Two", "year": 2021}),
        "{not json",
        json.dumps({"abstract": "no title here"}),
        "",
        json.dumps({"title": "Bad Year", "abstract": "x", "year": "20x1"}),
        json.dumps(["not", "an", "object"]),
        json.dumps(
            {"title": "Good Two", "abstract": "y", "authors": ["C and D"], "year": "2020", "id": "2101.00001v2"}
        ),
        json.dumps({"title": "good one!", "abstract": "again"}),
        json.dumps({"title": "", "abstract": "empty title"}),
        json.dumps({"title": "Typed", "abstract": 42}),
    ]
    path = write(tmp_path, "papers.jsonl", "\n".join(lines) + "\n")

    result = read_papers(path)

    first, second = result.papers
    assert (first.title, first.abstract, first.authors, first.year) == (
        "Good One", "An abstract.", ("A. One", "B. Two"), 2021,
    )  # fmt: skip
    assert first.origin == "papers.jsonl:1"
    assert (second.id, second.authors, second.year, second.origin) == (
        "arxiv:2101.00001", ("C and D",), 2020, "papers.jsonl:7",
    )  # fmt: skip
    assert problem_lines(result) == [
        "papers.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        "papers.jsonl:3: no title field",
        "papers.jsonl:5: year must be an integer, got '20x1'",
        "papers.jsonl:6: expected a JSON object, got array",
        "papers.jsonl:8: duplicate of line 1",
        "papers.jsonl:9: empty title",
        "papers.jsonl:10: abstract must be a string, got int",
    ]


def test_jsonl_id_field_is_used_only_when_it_looks_like_arxiv_or_doi(tmp_path: Path) -> None:
    records = [
        {"title": "A", "abstract": "a", "id": "10.1000/XYZ"},
        {"title": "B", "abstract": "b", "id": "row-17"},
        {"title": "C", "abstract": "c", "id": 17, "doi": "https://doi.org/10.5/ABC"},
    ]
    path = write(tmp_path, "ids.ndjson", "\n".join(map(json.dumps, records)))

    ids = [p.id for p in read_papers(path).papers]

    assert ids == ["doi:10.1000/xyz", paper_id("B"), "doi:10.5/abc"]


def test_json_array_gives_line_numbers_of_each_object(tmp_path: Path) -> None:
    text = """[
  {"title": "First", "abstract": "one",
   "url": "https://example.org/1"},
  {"title": "Second"},
  "stray",
  {"title": "Third", "abstract": "three", "authors": ["X Y"]}
]
"""
    result = read_papers(write(tmp_path, "p.json", text))

    assert [(p.title, p.origin) for p in result.papers] == [("First", "p.json:2"), ("Third", "p.json:6")]
    assert result.papers[0].url == "https://example.org/1"
    assert problem_lines(result) == ["p.json:4: no abstract field", "p.json:5: expected a JSON object, got string"]


def test_json_papers_object(tmp_path: Path) -> None:
    text = '{"source": {"papers": 1},\n "papers": [\n  {"title": "T", "abstract": "A"}\n ]}'
    result = read_papers(write(tmp_path, "p.json", text))

    assert [(p.title, p.origin) for p in result.papers] == [("T", "p.json:3")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"title": "T", "abstract": "A"}\n{"title": "U", "abstract": "B"}\n', "pass format='jsonl'"),
        ('{"items": []}', "expected a JSON array"),
        ("[1, 2", "is not valid JSON"),
    ],
)
def test_json_unusable_document_is_bad_input(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(BadInput, match="p.json") as err:
        read_papers(write(tmp_path, "p.json", text))
    assert expected in str(err.value)


# --- CSV / TSV -------------------------------------------------------------------------


def test_csv_with_missing_abstract_and_multiline_quoted_field(tmp_path: Path) -> None:
    text = (
        "Title,Abstract_Text,Author,Year,DOI\n"
        'First,"An abstract\nthat spans\nthree lines",A One and B Two,2019,10.1/First\n'
        "No Abstract,,C,2020,\n"
        'Third,"Plain, with comma",,,\n'
    )
    result = read_papers(write(tmp_path, "papers.csv", text))

    first, third = result.papers
    assert (first.id, first.abstract, first.authors, first.year, first.origin) == (
        "doi:10.1/first", "An abstract that spans three lines", ("A One", "B Two"), 2019, "papers.csv:2",
    )  # fmt: skip
    assert third.origin == "papers.csv:6"
    assert problem_lines(result) == ["papers.csv:5: empty abstract"]


def test_tsv_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "papers.tsv.gz"
    path.write_bytes(gzip.compress(b"title\tabstract\nT\tAbstract, with comma\n"))

    result = read_papers(path)

    assert [(p.title, p.abstract, p.origin) for p in result.papers] == [
        ("T", "Abstract, with comma", "papers.tsv.gz:2")
    ]


def test_csv_without_abstract_column_names_the_columns_found(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as err:
        read_papers(write(tmp_path, "p.csv", "title,summary_of_it\nT,S\n"))
    assert "p.csv" in str(err.value)
    assert "'summary_of_it'" in str(err.value)
    assert "\n" not in str(err.value)


def test_csv_large_field(tmp_path: Path) -> None:
    big = "word " * 60_000  # 300 kB, over csv's default 128 kB field limit
    result = read_papers(write(tmp_path, "big.csv", f'title,abstract\nBig,"{big}"\n'))

    assert len(result.papers[0].abstract) == len(big.strip())


def test_unknown_extension_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as err:
        read_papers(write(tmp_path, "papers.xml", "<papers/>"))
    message = str(err.value)
    assert "papers.xml" in message and "format=" in message and "--format" in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="nowhere.jsonl"):
        read_papers(tmp_path / "nowhere.jsonl")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    with pytest.raises(BadInput, match="dir.jsonl.*directory"):
        read_papers(folder)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "paper.txt"
    path.write_bytes(b"%PDF-1.7\n\x00\x01\x02binary")
    with pytest.raises(BadInput, match="paper.txt.*binary"):
        read_papers(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("title,abstract\nCaf\u00e9,ok\n".encode("latin-1"))
    with pytest.raises(BadInput) as err:
        read_papers(path)
    message = str(err.value)
    assert "latin.csv" in message and "UTF-8" in message and "line 2" in message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("title,abstract\nT,A\n".encode("utf-8-sig"))
    assert [p.title for p in read_papers(path).papers] == ["T"]


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"title": "T", "abstract": "A"}\n')[:-8])
    with pytest.raises(BadInput, match="p.jsonl.gz.*gzip"):
        read_papers(path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "secret.jsonl", "{}")

    # chmod 0 does not stop root (as in CI containers), so simulate the OS refusing the read.
    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(BadInput, match="secret.jsonl.*permission denied"):
        read_papers(path)


def test_empty_file_is_a_problem_not_an_error(tmp_path: Path) -> None:
    result = read_papers(write(tmp_path, "empty.jsonl", "\n"))
    assert result.papers == []
    assert problem_lines(result) == ["empty.jsonl:1: file is empty"]


# --- format override ---------------------------------------------------------------------


def test_format_override_reads_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "export.data", '{"title": "T", "abstract": "A"}\n')
    assert [p.title for p in read_papers(path, format="jsonl").papers] == ["T"]
    assert [p.title for p in read_papers(str(path), format="JSONL").papers] == ["T"]


def test_format_override_beats_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", "title\tabstract\nT\tA\n")
    assert [p.abstract for p in read_papers(path, format="csv").papers] == ["A"]


def test_unknown_format_override(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", "{}")
    with pytest.raises(BadInput, match="'yaml'.*p.jsonl"):
        read_papers(path, format="yaml")


# --- paper_id stability ------------------------------------------------------------------


def test_paper_id_ignores_case_and_punctuation() -> None:
    assert paper_id("Attention Is All You Need") == paper_id("attention is all you need!")
    assert paper_id("Attention: is all -- you need?") == paper_id("ATTENTION IS ALL YOU NEED")
    assert paper_id("Attention Is All You Need") != paper_id("Attention Is Not All You Need")


def test_paper_id_strips_doi_url_prefix_and_arxiv_version() -> None:
    assert paper_id("x", doi="https://doi.org/10.1000/ABC") == paper_id("y", doi="10.1000/abc") == "doi:10.1000/abc"
    assert paper_id("x", arxiv_id="2301.01234v3") == paper_id("y", arxiv_id="arXiv:2301.01234") == "arxiv:2301.01234"


def test_same_paper_gets_same_id_across_formats(tmp_path: Path) -> None:
    jsonl = write(tmp_path, "a.jsonl", '{"title": "Deep Learning", "abstract": "A", "doi": "10.1/X"}\n')
    bib = write(tmp_path, "a.bib", "@article{k, title={{Deep} Learning}, abstract={A}, doi={10.1/x}}\n")
    csv_ = write(tmp_path, "a.csv", "title,abstract\nDEEP LEARNING.,A\n")
    page = write(tmp_path, "a.txt", f"deep learning\n\n{ABSTRACT}\n")

    (from_jsonl,), (from_bib,) = read_papers(jsonl).papers, read_papers(bib).papers
    (from_csv,), (from_page,) = read_papers(csv_).papers, read_papers(page).papers
    assert from_jsonl.id == from_bib.id == "doi:10.1/x"
    assert from_csv.id == from_page.id == paper_id("Deep Learning")
