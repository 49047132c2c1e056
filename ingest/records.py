"""Turn the raw records a reader finds into ``Paper`` records and ``Problem`` lines.

Every reader walks its file in its own way and hands each record's fields to one
:class:`Collector`, which checks and coerces them (title, abstract, authors, year,
url, doi, arxiv_id, id), skips a bad or repeated record as a problem at its line and
keeps the rest in file order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ingest.papers import Paper, Problem, ReadResult, paper_id

__all__ = ["Collector"]

_ARXIV_ID = re.compile(r"(?:arxiv:)?\d{4}\.\d{4,5}(?:v\d+)?", re.IGNORECASE)
_DOI_LIKE = re.compile(r"(?:https?://(?:dx\.)?doi\.org/|doi:\s*)?10\.", re.IGNORECASE)
_AUTHOR_SEPARATOR = re.compile(r"\s*;\s*|\s+and\s+")
_YEAR = re.compile(r"\d{1,4}(?:\.0+)?")


class _Skip(Exception):
    """A record cannot become a paper; the message is the problem's reason."""


class Collector:
    """Turns the raw records of one file into papers, problems and duplicate reports."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.result = ReadResult()
        self._first_line: dict[str, int] = {}

    def problem(self, line: int, reason: str) -> None:
        """Record that the record starting at ``line`` was skipped."""
        self.result.problems.append(Problem(f"{self.name}:{line}", reason))

    def add(self, line: int, fields: Mapping[str, object]) -> None:
        """Build a paper from a record's fields; skip it as a problem if it is bad or seen before."""
        try:
            paper = _paper_from(fields, f"{self.name}:{line}")
        except _Skip as err:
            self.problem(line, str(err))
            return
        if paper.id in self._first_line:
            self.problem(line, f"duplicate of line {self._first_line[paper.id]}")
            return
        self._first_line[paper.id] = line
        self.result.papers.append(paper)


def _text_field(fields: Mapping[str, object], key: str) -> str:
    """Return a required text field, whitespace collapsed."""
    value = fields.get(key)
    if value is None:
        raise _Skip(f"no {key} field")
    if not isinstance(value, str):
        raise _Skip(f"{key} must be a string, got {type(value).__name__}")
    collapsed = " ".join(value.split())
    if not collapsed:
        raise _Skip(f"empty {key}")
    return collapsed


def _optional_str(fields: Mapping[str, object], key: str) -> str | None:
    """Return an optional string field stripped, or None when absent or blank."""
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Skip(f"{key} must be a string, got {type(value).__name__}")
    return value.strip() or None


def _authors(value: object) -> tuple[str, ...]:
    """Return author names from a list of strings or one string joined by ';' or ' and '."""
    if value is None:
        return ()
    if isinstance(value, str):
        names: list[object] = _AUTHOR_SEPARATOR.split(value)
    elif isinstance(value, list):
        names = value
    else:
        raise _Skip(f"authors must be a list of strings or a string, got {type(value).__name__}")
    if not all(isinstance(n, str) for n in names):
        raise _Skip("authors must be a list of strings")
    return tuple(c for n in names if (c := " ".join(str(n).split())))


def _year(value: object) -> int | None:
    """Return the year as an int; integral floats and '2020.0' pass, since spreadsheets write them."""
    if isinstance(value, str):
        value = value.strip() or None
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _YEAR.fullmatch(value):
        return int(value.split(".")[0])
    raise _Skip(f"year must be an integer, got {value!r}")


def _paper_from(fields: Mapping[str, object], origin: str) -> Paper:
    """Build a paper from a record's fields (title, abstract, authors, year, url, doi, arxiv_id, id)."""
    title = _text_field(fields, "title")
    abstract = _text_field(fields, "abstract")
    doi = _optional_str(fields, "doi")
    arxiv_id = _optional_str(fields, "arxiv_id")
    # A generic "id" is only trusted when it is recognizably an arXiv id or a DOI;
    # anything else (a row number, a database key) would not match across files.
    other = fields.get("id")
    if isinstance(other, str) and not (doi or arxiv_id):
        other = other.strip()
        if _ARXIV_ID.fullmatch(other):
            arxiv_id = other
        elif _DOI_LIKE.match(other):
            doi = other
    return Paper(
        id=paper_id(title, doi=doi, arxiv_id=arxiv_id),
        title=title,
        abstract=abstract,
        authors=_authors(fields.get("authors")),
        year=_year(fields.get("year")),
        url=_optional_str(fields, "url"),
        origin=origin,
    )
