"""A table of papers: the same short questions asked of every paper, each cell cited and checked.

from rag import table
t = table(["Dataset: Which dataset is evaluated on?", "Speedup: How much faster is it?"], about="pipeline parallelism")
for row in t.rows:
    print(row.title, [c.shown for c in row.cells])

Rows are papers: the ones named (``papers``, whole titles or words from them), the ones a
question retrieves (``about``), or the collection's, narrowed by ``filters``; at most
``limit``. Each cell is one paper's abstract asked one column (:mod:`rag.answer.cells`):
answered in a few words its abstract holds, or "not stated". Rows are read one paper at a
time, every column of a paper before the next paper, so the runtime's prompt cache keeps
the paper read and each further column costs only its own question.

:func:`table_stream` yields a :class:`TablePlan` (the rows and columns, before any cell),
each :class:`Cell` as it ends, then the :class:`Table`: a page fills cells as they come.
Everything the user gave is checked before anything is read, and a table changes nothing in the
collection (the embedded model keeps what it read of each paper, as for any question).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

from rag.answer.cells import (
    CELL_PROMPT,
    NOT_STATED,
    VALUE_ASK,
    Cell,
    Column,
    cell_messages,
    check_value,
    parse_value,
    resting_sentence,
    stated_probability,
)
from rag.answer.per_paper import Reader
from rag.answer.readings import prefix_of
from rag.errors import BadInput, IndexEmpty
from rag.llm.backends import BackendLLM, chat_once
from rag.retrieve import papers_by_id, retrieve_timed
from rag.services import Services
from rag.settings import Settings
from rag.store.filters import Filters, check_filters
from rag.titles import find_paper
from rag.types import Source

__all__ = ["NOT_STATED", "Cell", "Column", "Row", "Table", "TablePlan", "table", "table_stream"]

#: Rows a table of the collection has unless told otherwise: a collection of thousands is hours of reading.
DEFAULT_LIMIT = 50
#: Rows a table of the papers a question retrieves has unless told otherwise: the best ones, not every
#: paper with one chunk among the retrievers' candidates.
ABOUT_LIMIT = 10
#: Most columns one table asks.
MOST_COLUMNS = 12


@dataclass(frozen=True)
class Row:
    """One paper of a table and its cells, in column order."""

    number: int
    paper_id: str
    title: str
    year: int | None = None
    url: str | None = None
    cells: tuple[Cell, ...] = ()


@dataclass(frozen=True)
class TablePlan:
    """What a table will read, known before any cell: its columns, its papers, and what was left out."""

    columns: tuple[Column, ...]
    papers: tuple[Source, ...]
    notice: str = ""

    @property
    def cells(self) -> int:
        """How many cells the table will have."""
        return len(self.columns) * len(self.papers)


@dataclass(frozen=True)
class Table:
    """A finished table: rows of cells, the model that read them, and how long it took."""

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    model: str = ""
    seconds: float = 0.0
    notice: str = ""

    def to_csv(self) -> str:
        """The table as CSV (RFC 4180, a spreadsheet opens it): paper, year, then one column per question."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["Paper", "Year", *(c.name for c in self.columns)])
        for row in self.rows:
            writer.writerow([_safe(row.title), row.year or "", *(_safe(c.shown) for c in row.cells)])
        return out.getvalue()

    def to_markdown(self) -> str:
        """The table as a GitHub Markdown table (pipes and line breaks in cells escaped)."""
        head = ["Paper", *(c.name for c in self.columns)]
        lines = [_md_row(head), _md_row(["---"] * len(head))]
        lines += [_md_row([row.title, *(c.shown for c in row.cells)]) for row in self.rows]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """The table as JSON: columns, and each row's cells with their status, confidence and the sentence each
        rests on."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def _safe(text: str) -> str:
    """A spreadsheet never reads a cell as a formula: text starting with = + @ or a tab is quoted with '."""
    return f"'{text}" if text[:1] in ("=", "+", "@", "\t", "\r") else text


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(" ".join(c.split()).replace("\\", "\\\\").replace("|", "\\|") for c in cells) + " |"


def table(
    columns: Sequence[str | Column],
    *,
    papers: Sequence[str] | None = None,
    about: str | None = None,
    filters: Filters | None = None,
    limit: int | None = None,
    settings: Settings | None = None,
    services: Services | None = None,
) -> Table:
    """The table :func:`table_stream` fills, once every cell is read. Same arguments and errors."""
    last = None
    for last in table_stream(
        columns, papers=papers, about=about, filters=filters, limit=limit, settings=settings, services=services
    ):
        pass
    assert isinstance(last, Table)
    return last


def table_stream(
    columns: Sequence[str | Column],
    *,
    papers: Sequence[str] | None = None,
    about: str | None = None,
    filters: Filters | None = None,
    limit: int | None = None,
    settings: Settings | None = None,
    services: Services | None = None,
) -> Iterator[TablePlan | Cell | Table]:
    """Ask every column of every chosen paper, yielding the plan, each cell as it ends, then the table.

    Args:
        columns: "Name: question" strings (or :class:`Column`), at most 12.
        papers: titles, or words from titles ("gpipe"), of the rows; else ``about`` or the collection.
        about: a question whose retrieved papers are the rows, best first.
        filters: only papers that pass (years, author, source file).
        limit: most rows; None: every named paper, 10 for ``about``, 50 of the collection; 0: every paper.
        settings: defaults to ``Settings()``.
        services: the store, encoder and LLM to read with; built from ``settings`` when None.

    Raises:
        BadInput: a column is empty, over 300 characters or repeated; a paper is unknown or
            ambiguous; ``papers`` is given with ``about`` or with filters.
        IndexEmpty: the collection holds no papers.
        NoMatch: no paper passes ``filters``.
        UnknownCollection: the collection in ``settings`` does not exist.
        LLMUnavailable: the backend cannot answer.
    """
    started = time.perf_counter()
    asked = _columns(columns)
    if papers is not None and about is not None:
        raise BadInput("Give the papers or a question to find them (--paper or --about), not both.")
    if papers is not None and filters is not None and filters.active:
        raise BadInput("Named papers are the rows as they are: leave out the filters, or use --about or none.")
    if limit is not None and limit < 0:
        raise BadInput(f"The limit {limit} leaves no row: give 1 or more, or 0 for every paper.")
    services = services or Services(settings or Settings())
    plan = _plan(asked, services, papers=papers, about=about, filters=filters, limit=limit)
    yield plan
    reader = Reader(
        services,
        services.backend,
        may_fall_back=services.settings.llm.backend == "auto",
        max_tokens=services.settings.tuning.table.max_tokens,
    )
    rows = []
    for source in plan.papers:
        cells = []
        for column in plan.columns:
            cell = reader.falling_back(lambda s=source, c=column: _cell(reader, s, c))
            cells.append(cell)
            yield cell
        rows.append(Row(source.number, source.paper_id, source.title, source.year, source.url, tuple(cells)))
    notice = " ".join(n for n in (plan.notice, reader.notice) if n)
    yield Table(plan.columns, tuple(rows), reader.backend.label, round(time.perf_counter() - started, 3), notice)


def _columns(columns: Sequence[str | Column]) -> tuple[Column, ...]:
    """The columns, checked: 1-12, none empty or too long, no name twice.

    Raises:
        BadInput: as :meth:`Column.parse`, none given, too many, or a name repeated.
    """
    if isinstance(columns, str):
        columns = [columns]
    parsed = tuple(c if isinstance(c, Column) else Column.parse(c) for c in columns)
    if not parsed:
        raise BadInput('A table needs a column: give one or more, e.g. --column "Dataset: Which dataset is used?".')
    if len(parsed) > MOST_COLUMNS:
        raise BadInput(f"{len(parsed)} columns is more than {MOST_COLUMNS}: split the table in two.")
    names = [c.name.casefold() for c in parsed]
    if twice := next((c.name for c in parsed if names.count(c.name.casefold()) > 1), None):
        raise BadInput(f"Two columns are named {twice!r}: give each column its own name (Name: question).")
    return parsed


def _plan(
    columns: tuple[Column, ...],
    services: Services,
    *,
    papers: Sequence[str] | None,
    about: str | None,
    filters: Filters | None,
    limit: int | None,
) -> TablePlan:
    """The table's rows, chosen and read from the store (titles, abstracts), before any cell is asked."""
    if papers is not None:
        if isinstance(papers, str):
            papers = [papers]
        if not papers:
            raise BadInput("No paper given: name one or more papers, or leave them out for the collection.")
        ids = list(dict.fromkeys(find_paper(services.store, p) for p in papers))
        chosen = papers_by_id(services.store, ids[: limit or None])
        left = len(ids) - len(chosen)
        return TablePlan(columns, tuple(chosen), f"{left} more papers left out by the limit." if left > 0 else "")
    if about is not None:
        if not about.strip():
            raise BadInput('The question for --about is empty: give one, e.g. --about "pipeline parallelism".')
        top = ABOUT_LIMIT if limit is None else limit or services.settings.tuning.retrieval.candidates
        found, _, notice = retrieve_timed(about, services, top, filters=filters)
        return TablePlan(columns, tuple(found), notice)
    return _collection_plan(columns, services, filters, limit)


def _collection_plan(
    columns: tuple[Column, ...], services: Services, filters: Filters | None, limit: int | None
) -> TablePlan:
    store = services.store
    notice = check_filters(filters, store) if filters is not None and filters.active else ""
    where = {"chunk_index": 0}
    if filters is not None and (more := filters.where()) is not None:
        where = {"$and": [where, *more.get("$and", [more])]}
    firsts = store.collection.get(where=where, include=[])["ids"]  # ids only: at 250,000 papers, metadata is MBs
    ids = [first.rpartition("#")[0] for first in firsts]  # a paper's first chunk is "<paper id>#0"
    if not ids:
        raise IndexEmpty(
            f"The collection {store.name!r} at {store.location} holds no papers: add some with "
            f"`papercite ingest --collection {store.name} FILE` (or --sample) before making a table."
        )
    kept = ids[: DEFAULT_LIMIT if limit is None else limit or None]
    left = len(ids) - len(kept)
    more = f"The table has the first {len(kept)} of {len(ids)} papers; give a higher limit for more." if left else ""
    return TablePlan(columns, tuple(papers_by_id(store, kept)), " ".join(n for n in (notice, more) if n))


def _cell(reader: Reader, source: Source, column: Column) -> Cell:
    """One paper asked one column: the reply's first token gives P(stated); when that reaches
    ``tuning.table.accept`` the answer is written and checked against the abstract."""
    started = time.perf_counter()
    conf = reader.services.settings.tuning.table
    backend: BackendLLM = reader.backend
    messages = cell_messages(source, column)
    kept = {"prefix": prefix_of(source, CELL_PROMPT)} if reader.llms.keeps_prefixes else {}
    first = chat_once(backend, reader.llms.verdict, messages, **kept)
    p = stated_probability(first.logprobs)
    said = bool(parse_value(first)) if p is None else p >= conf.accept
    confidence = None if p is None else round(p, 4)
    cell = Cell(source.number, source.paper_id, source.title, column.name, "", "not stated", confidence)
    if not said:
        why = "the model says the abstract does not state this"
        if confidence is not None:
            why = f"the model is only {confidence:.2f} sure the abstract states this (answered from {conf.accept:.2f})"
        return replace(cell, reason=why, seconds=round(time.perf_counter() - started, 3))
    value = parse_value(chat_once(backend, reader.llms.finding, cell_messages(source, column, VALUE_ASK)))
    held, why = check_value(value, source, conf.overlap)
    if not value:
        cell = replace(cell, reason="the model wrote that the abstract does not state this")
    elif not held:
        cell = replace(cell, value=value, status="unsupported", reason=why)
    else:
        cell = replace(cell, value=value, status="stated", evidence=resting_sentence(value, column.question, source))
    return replace(cell, seconds=round(time.perf_counter() - started, 3))
