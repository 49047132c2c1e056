"""The chunk record: what each stored chunk says about its paper, written and read here only.

Ingest writes a chunk's metadata with :meth:`ChunkRecord.metadata`; the store, the
check and the retriever read it back with :meth:`ChunkRecord.read`. Chroma keeps
metadata as strings, ints and floats, so the conversions live in this one place.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AUTHOR_KEY", "ChunkRecord", "author_keys", "chunk_id", "fold_name", "normalize_title", "source_of"]

#: Prefix of the metadata keys that name a chunk's authors for filtering: ``author:han`` is True
#: on every chunk of a paper one of whose authors is (or whose name ends in) "Han".
AUTHOR_KEY = "author:"


def fold_name(name: str) -> str:
    """A person's name folded for matching: accents dropped, casefolded, words only ("Müller, J." -> "muller j")."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"\w+", plain))


def author_keys(authors: tuple[str, ...] | list[str]) -> list[str]:
    """The filter keys of a paper's authors: each author's folded name and every ending of it.

    "Song Han" gives ``author:song han`` and ``author:han``; "van der Berg, Jan" (BibTeX's
    "Last, First") gives ``author:jan van der berg``, ``author:van der berg``, ``author:der berg``
    and ``author:berg``. So a filter on the family name, with or without its particles, or on
    the whole name matches, whatever the case and accents.
    """
    keys: set[str] = set()
    for author in authors:
        family, comma, given = author.partition(",")
        words = fold_name(f"{given} {family}" if comma else author).split()
        keys.update(AUTHOR_KEY + " ".join(words[i:]) for i in range(len(words)))
    return sorted(keys)


def source_of(origin: str) -> str:
    """The file name a paper was read from, out of its ``file:line`` origin."""
    name, colon, line = origin.rpartition(":")
    return (name if colon and line.isdigit() else origin).replace("\\", "/").rsplit("/", 1)[-1]


def normalize_title(title: str) -> str:
    """Fold a title to the form a paper's id hashes (``ingest.papers.paper_id``): NFKC, casefolded, words only."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(re.findall(r"\w+", folded))


def chunk_id(paper_id: str, index: int) -> str:
    """The stored id of a paper's ``index``-th chunk."""
    return f"{paper_id}#{index}"


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk's paper and place in it.

    Attributes:
        paper_id: the paper's stable id.
        title: the paper's title (embedded and shown with the chunk).
        authors: the authors in order.
        year: the year of publication, if known.
        url: a link to the paper, if known.
        origin: ``file:line`` the paper was read from.
        content_hash: the hash of the paper's title and abstract when it was chunked.
        chunk_index: this chunk's place among the paper's chunks, from 0.
        n_chunks: how many chunks the paper was split into.
    """

    paper_id: str
    title: str
    authors: tuple[str, ...] = ()
    year: int | None = None
    url: str | None = None
    origin: str = ""
    content_hash: str = ""
    chunk_index: int = 0
    n_chunks: int = 0

    @property
    def id(self) -> str:
        """The stored id of this chunk."""
        return chunk_id(self.paper_id, self.chunk_index)

    def paper_metadata(self) -> dict[str, Any]:
        """The metadata every chunk of the paper shares, as Chroma stores it."""
        return {
            "title": self.title,
            "paper_id": self.paper_id,
            "authors": "; ".join(self.authors),
            "year": self.year or "",
            "url": self.url or "",
            "origin": self.origin,
            "content_hash": self.content_hash,
            **self.filter_metadata(),
        }

    def filter_metadata(self) -> dict[str, Any]:
        """What filters match on (Chroma ``where``): the source file's name and one key per author name."""
        return {"source": source_of(self.origin), **dict.fromkeys(author_keys(self.authors), True)}

    def hidden_keys(self) -> list[str]:
        """Every metadata key but the title: neither the embedding nor the LLM sees them."""
        return [key for key in self.metadata() if key != "title"]

    def metadata(self) -> dict[str, Any]:
        """This chunk's whole metadata, as Chroma stores it."""
        return {**self.paper_metadata(), "chunk_index": self.chunk_index, "n_chunks": self.n_chunks}

    @classmethod
    def read(cls, meta: Mapping[str, Any] | None) -> ChunkRecord | None:
        """The record in a stored chunk's metadata; None when it names no paper, title or chunk number."""
        meta = meta or {}
        if not meta.get("paper_id") or not meta.get("title") or "chunk_index" not in meta:
            return None
        year = meta.get("year")
        return cls(
            paper_id=str(meta["paper_id"]),
            title=str(meta["title"]),
            authors=tuple(a for a in str(meta.get("authors") or "").split("; ") if a),
            year=int(year) if isinstance(year, int | float) or (isinstance(year, str) and year.isdigit()) else None,
            url=str(meta.get("url") or "") or None,
            origin=str(meta.get("origin") or ""),
            content_hash=str(meta.get("content_hash") or ""),
            chunk_index=int(meta["chunk_index"]),
            n_chunks=int(meta.get("n_chunks") or 0),
        )
