"""The ``Paper`` record every reader produces, and how its stable id is made."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from rag.store.chunks import normalize_title  # papercite reads titles back by the same folding (rag.similar)

__all__ = ["Paper", "Problem", "ReadResult", "normalize_title", "paper_id"]

_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)
_ARXIV_PREFIX = re.compile(r"^(?:https?://arxiv\.org/(?:abs|pdf)/|arxiv:\s*)", re.IGNORECASE)
_ARXIV_VERSION = re.compile(r"v\d+$")


def paper_id(title: str, *, doi: str | None = None, arxiv_id: str | None = None) -> str:
    """Return a stable id: the DOI or arXiv id when given, else a hash of the normalized title.

    The same paper read from a BibTeX export and from a JSONL file gets the same id,
    which is what makes ingest idempotent across formats.
    """
    if doi and doi.strip():
        return "doi:" + _DOI_PREFIX.sub("", doi.strip()).lower()
    if arxiv_id and arxiv_id.strip():
        bare = _ARXIV_PREFIX.sub("", arxiv_id.strip()).removesuffix(".pdf")
        return "arxiv:" + _ARXIV_VERSION.sub("", bare).lower()
    digest = hashlib.sha256(normalize_title(title).encode()).hexdigest()[:16]
    return "title:" + digest


@dataclass(frozen=True)
class Paper:
    """One paper: what a reader found in a record, with its stable id.

    Attributes:
        id: stable id (see :func:`paper_id`).
        title: the title, whitespace collapsed.
        abstract: the abstract, whitespace collapsed.
        authors: author names in order, when known.
        year: publication year, when known.
        url: a link to the paper, when known.
        origin: where the record came from, as ``file:line``.
    """

    id: str
    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    year: int | None = None
    url: str | None = None
    origin: str = ""

    def content_hash(self) -> str:
        """Hash of everything that is stored for this paper; a change means re-ingest it."""
        parts = [self.title, self.abstract, "; ".join(self.authors), str(self.year or ""), self.url or ""]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Problem:
    """A record that was skipped, as ``file:line: reason``."""

    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class ReadResult:
    """What a reader got from one file: the good papers and the skipped records."""

    papers: list[Paper] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
