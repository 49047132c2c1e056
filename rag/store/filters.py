"""Filters: narrow a question to some years, an author, or the file the papers came from.

A filter becomes one Chroma ``where`` (:meth:`Filters.where`) that both retrievers apply
before they rank: Chroma before its nearest-neighbour search, BM25 before it picks its
top hits (:meth:`rag.store.chroma.Store.passing`). So the top k are k papers that pass, never
fewer because the filter ran afterwards. A filter no paper passes raises
:class:`rag.errors.NoMatch`: papercite never falls back to the unfiltered collection.

Matching: years are inclusive and papers without a year fail any year filter (the
notice says how many); an author matches any of a paper's authors by whole name or
family name, whatever the case and accents (:func:`rag.store.chunks.author_keys`); a source
is the name of the file a paper was read from (``my-library.bib``, ``zotero.sqlite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from rag.errors import BadInput, NoMatch
from rag.store.chunks import AUTHOR_KEY, fold_name

if TYPE_CHECKING:
    from rag.store.chroma import Store

__all__ = ["Filters", "check_filters"]

_YEARS = range(1000, 3000)


@dataclass(frozen=True)
class Filters:
    """What a paper must be to be retrieved; every field left None lets any paper through.

    Attributes:
        since: the first year, inclusive.
        until: the last year, inclusive.
        author: one author's name or family name ("Han", "Song Han", "Müller").
        source: the file the paper was read from ("my-library.bib"; a path is cut to its name).

    Raises:
        BadInput: a year is not a year, ``since`` is after ``until``, or a name is blank.
    """

    since: int | None = None
    until: int | None = None
    author: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            year = getattr(self, name)
            if year is not None and (isinstance(year, bool) or not isinstance(year, int) or year not in _YEARS):
                raise BadInput(f"--{name} {year!r} is not a year: give four digits, e.g. --{name} 2021.")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise BadInput(f"--since {self.since} is after --until {self.until}: no year is in that range; swap them.")
        if self.author is not None and not fold_name(self.author):
            raise BadInput(f"--author {self.author!r} holds no name: give an author's name, e.g. --author Han.")
        if self.source is not None and not PurePath(self.source.strip()).name:
            raise BadInput(f"--source {self.source!r} names no file: give the file's name, e.g. my-library.bib.")

    @property
    def active(self) -> bool:
        """True when some field narrows the collection."""
        return any(v is not None for v in (self.since, self.until, self.author, self.source))

    def where(self) -> dict[str, Any] | None:
        """The Chroma ``where`` a chunk must pass, or None when nothing is filtered."""
        terms: list[dict[str, Any]] = []
        if self.since is not None:
            terms.append({"year": {"$gte": self.since}})
        if self.until is not None:
            terms.append({"year": {"$lte": self.until}})
        if self.author is not None:
            terms.append({AUTHOR_KEY + fold_name(self.author): True})
        if self.source is not None:
            terms.append({"source": PurePath(self.source.strip()).name})
        return None if not terms else terms[0] if len(terms) == 1 else {"$and": terms}

    def describe(self) -> str:
        """The filter in words: "years 2021-2023, author Han, source my-library.bib"."""
        parts = []
        if self.since is not None or self.until is not None:
            if self.since == self.until:
                parts.append(f"year {self.since}")
            elif self.until is None:
                parts.append(f"years from {self.since}")
            elif self.since is None:
                parts.append(f"years up to {self.until}")
            else:
                parts.append(f"years {self.since}-{self.until}")
        if self.author is not None:
            parts.append(f"author {self.author.strip()}")
        if self.source is not None:
            parts.append(f"source {PurePath(self.source.strip()).name}")
        return ", ".join(parts)


def check_filters(filters: Filters, store: Store) -> str:
    """Make ``store`` ready to filter, and say what the filter leaves out that a reader should know.

    Returns:
        A notice for the answer ("3 papers without a year were left out by the year filter."),
        or "".

    Raises:
        NoMatch: no paper of the collection passes ``filters``; the message says which
            filter, and how many papers have no year when a year filter is set.
        StoreBusy: the collection predates filters and an ingest is writing to it now.
    """
    where = filters.where()
    if where is None:
        return ""
    store.ensure_filter_fields()
    first_chunks = {"chunk_index": 0}
    no_year = 0
    if filters.since is not None or filters.until is not None:
        no_year = len(store.collection.get(where={"$and": [first_chunks, {"year": ""}]}, include=[])["ids"])
    left_out = (
        f" {no_year} paper{'s' if no_year != 1 else ''} without a year {'were' if no_year != 1 else 'was'} "
        "left out by the year filter."
        if no_year
        else ""
    )
    if not _any_passes(store, where):
        known = store.sources() if filters.source is not None else []
        hint = f" Sources here: {', '.join(known)}." if known else ""
        raise NoMatch(
            f"No paper in collection {store.name!r} matches {filters.describe()}.{left_out}{hint} "
            "Widen or remove the filter."
        )
    return left_out.strip()


def _any_passes(store: Store, where: dict[str, Any]) -> bool:
    """Whether any chunk passes ``where``: from the BM25 index's mask for it, which retrieval reuses
    (kept per filter, so a later question with the same filter costs nothing here; at 1M chunks
    Chroma took about a second to find one passing row), or from Chroma when there is no index."""
    sparse = store.bm25()
    if sparse is not None:
        return bool(store.passing(sparse, where).any())
    return bool(store.collection.get(where=where, limit=1, include=[])["ids"])
