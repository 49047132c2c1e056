"""What the page's events call: each turns the page's inputs into one call on ``rag`` or
``ingest``, and its result (or its ``PaperciteError``) into the page's outputs.

The page's layout and wiring are in ``ui/app.py``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gradio as gr

from ingest import ingest_path
from rag.answer.ask import ask, ask_stream, clean_question
from rag.errors import BadInput, IndexEmpty, PaperciteError, UnknownCollection
from rag.export import SUFFIX, export
from rag.services import Services
from rag.settings import LLMSettings, Settings
from rag.similar import similar
from rag.store.collections import check_name, collection_names
from rag.store.filters import Filters
from rag.table import Cell, Table, TablePlan, table_stream
from rag.types import Answer, PaperReading, Reading
from ui.render import (
    answer_markdown,
    collection_markdown,
    display_name,
    example_questions,
    reading_html,
    reading_markdown,
    readings_markdown,
    similar_html,
    sources_html,
    streaming_markdown,
    table_html,
    upload_report_markdown,
)

__all__ = ["DOWNLOADS", "NO_SOURCES", "TABLE_ROWS", "Handlers", "max_upload_bytes", "page_filters", "page_message"]

log = logging.getLogger(__name__)

#: Where the Table tab takes its rows from (the choices, in order).
TABLE_ROWS = ("the last answer's papers", "the papers a search finds", "the collection")
#: The page's download buttons: format -> label.
DOWNLOADS = {"markdown": "Download Markdown", "bibtex": "Download BibTeX", "ris": "Download RIS"}
NO_SOURCES = (
    '<div class="pc-sources"><p class="pc-empty">Ask a question: the papers behind the answer appear here.</p></div>'
)


def page_message(exc: PaperciteError, settings: Settings, *uploads: str) -> str:
    """``exc``'s message for the page: no path on the server in it (uploads shown by file name)."""
    if isinstance(exc, IndexEmpty):
        return (
            "The collection is empty: upload papers in the Collection panel, or run "
            "`papercite ingest --sample` for the bundled 84 papers."
        )
    text = str(exc)
    for upload in uploads:
        text = text.replace(str(upload), display_name(upload))
    return text.replace(str(settings.data_dir), "the data directory")


class Handlers:
    """What the page's events call, over the services and LLM choices built once for the page.

    Each handler turns the page's inputs into one call on ``rag`` or ``ingest`` and its
    result into the page's outputs; a ``PaperciteError`` becomes a ``gr.Error``.
    """

    def __init__(self, settings: Settings, services: Services, choices: dict[str, LLMSettings]) -> None:
        self.settings = settings
        self.services = services
        self.choices = choices
        self.default_llm = next(iter(choices), None)
        self.api_ask = _api_ask(self)
        self._by_collection: dict[str, Services] = {settings.store.collection: services}
        self._by_llm: dict[tuple[str, str], Services] = {}

    def services_for(self, collection: str | None) -> Services:
        """The page's services for ``collection`` (its own when None): the same encoder and LLM, that store.

        Raises:
            BadInput: the name cannot name a collection.
        """
        name = check_name(collection) if collection else self.settings.store.collection
        if name not in self._by_collection:
            self._by_collection[name] = self.services.with_collection(name)
        return self._by_collection[name]

    def collection_names(self) -> list[str]:
        """The collections of the page's data directory, for the selector."""
        return collection_names(self.settings)

    def collection_view(self, collection: str | None = None) -> tuple[Any, ...]:
        """The collection panel, the example questions and the source filter's choices for ``collection``."""
        try:
            store = self.services_for(collection).store
        except UnknownCollection:  # typed into the selector: made by the first upload
            panel = f"**Collection `{collection}` does not exist yet.** Upload files below to create it."
            return panel, gr.Dataset(samples=[], visible=False), gr.Dropdown(choices=[], value=None)
        except PaperciteError as exc:
            raise gr.Error(page_message(exc, self.settings), print_exception=False) from None
        stats = store.stats()
        panel = collection_markdown(
            stats.papers,
            stats.chunks,
            stats.embedding_model,
            self.default_llm or "none: install papercite[embedded] or start Ollama",
        )
        examples = example_questions(store.titles())
        sources = gr.Dropdown(choices=store.sources(), value=None)
        return panel, gr.Dataset(samples=[[q] for q in examples], visible=bool(examples)), sources

    def switch_collection(self, collection: str | None) -> tuple[Any, ...]:
        """Show ``collection``, and start a new chat: a follow-up never reaches into another collection."""
        return (*self.collection_view(collection), [], {}, None, NO_SOURCES, "")

    def check_question(self, question: str) -> tuple[str, str]:
        try:
            return "", clean_question(question)
        except PaperciteError as exc:
            raise gr.Error(page_message(exc, self.settings), print_exception=False) from None

    def respond(
        self,
        question: str,
        history: list[dict[str, Any]],
        turns: dict[int, tuple[str, str]],
        last: Answer | None,
        top_k: int,
        llm_label: str | None,
        collection: str | None = None,
        since: str | None = None,
        until: str | None = None,
        author: str | None = None,
        source: str | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Answer ``question`` as a follow-up to ``last``, the chat's previous answer (None: a new chat),
        from ``collection`` and the papers that pass the filters."""
        history = [
            *history,
            {"role": "user", "content": question},
            {"role": "assistant", "content": "*Searching the collection…*"},
        ]
        yield history, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        streamed, reading, done = "", None, []
        try:
            filters = page_filters(since, until, author, source)
            services = self._answering(collection, llm_label)
            for item in ask_stream(question, services=services, top_k=int(top_k), history=last, filters=filters):
                if isinstance(item, Answer):
                    history[-1] = {"role": "assistant", "content": answer_markdown(item)}
                    panel, copy_text = sources_html(item), item.with_references()
                    turns = {**turns, len(history) - 1: (panel, copy_text)}
                    yield history, panel, copy_text, turns, item
                elif isinstance(item, Reading):  # the sources at once, while the model reads them
                    reading = item
                    history[-1] = {"role": "assistant", "content": reading_markdown(item)}
                    yield history, reading_html(item), "", gr.skip(), gr.skip()
                elif isinstance(item, PaperReading) and reading is not None:  # per-paper: each finding as it ends
                    done.append(item)
                    history[-1] = {"role": "assistant", "content": readings_markdown(reading, done)}
                    yield history, reading_html(reading, done), "", gr.skip(), gr.skip()
                else:
                    streamed += item
                    history[-1] = {"role": "assistant", "content": streaming_markdown(streamed)}
                    yield history, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        except PaperciteError as exc:
            yield from _failed(history, turns, page_message(exc, self.settings))
        except Exception:
            log.exception("Answering %r failed", question)
            yield from _failed(history, turns, "Answering failed unexpectedly; the details are in the server's log.")

    def _answering(self, collection: str | None, llm_label: str | None) -> Services:
        """The services that answer: the page's own model, or another from the menu with its own
        (sharing this page's encoder), over ``collection``."""
        services = self.services_for(collection)
        llm = self.choices.get(llm_label or "")
        if llm is None or llm == self.settings.llm:
            return services
        key = (services.settings.store.collection, llm_label or "")
        if key not in self._by_llm:
            self._by_llm[key] = services.with_llm(services.settings.model_copy(update={"llm": llm}))
        return self._by_llm[key]

    def make_table(
        self,
        rows_from: str,
        search: str,
        columns: str,
        most: float | None,
        last: Answer | None,
        llm_label: str | None,
        collection: str | None = None,
    ) -> Iterator[tuple[Any, Any]]:
        """Fill the Table tab: its columns (one "Name: question" per line) asked of the papers ``rows_from``
        names (the last answer's sources, a search's, or the collection's), cell by cell; then the CSV to
        download."""
        no_file = gr.DownloadButton(value=None, interactive=False)
        try:
            choice: dict[str, Any] = {"limit": int(most or 10)}
            if rows_from == TABLE_ROWS[0]:
                if last is None or not last.sources:
                    raise BadInput(
                        "No answer yet: ask a question in the Chat tab first, or take the papers of a search "
                        "or of the collection."
                    )
                choice["papers"] = [s.paper_id for s in last.sources]
            elif rows_from == TABLE_ROWS[1]:
                choice["about"] = search
            asked = [line for line in columns.splitlines() if line.strip()] or [""]
            stream = table_stream(asked, services=self._answering(collection, llm_label), **choice)
            plan = next(stream)
            assert isinstance(plan, TablePlan)
            cells: list[Cell] = []
            yield table_html(plan, cells), no_file
            for item in stream:
                if isinstance(item, Cell):
                    cells.append(item)
                    yield table_html(plan, cells), gr.skip()
                elif isinstance(item, Table):
                    path = Path(tempfile.mkdtemp(prefix="papercite-table-")) / "papercite-table.csv"
                    path.write_text(item.to_csv(), encoding="utf-8")
                    yield table_html(plan, cells, done=True), gr.DownloadButton(value=str(path), interactive=True)
        except PaperciteError as exc:
            raise gr.Error(page_message(exc, self.settings), print_exception=False) from None
        except Exception:
            log.exception("Making a table failed")
            raise gr.Error("Making the table failed unexpectedly; the details are in the server's log.") from None

    def similar_choices(self, last: Answer | None) -> Any:
        """The "More like this" menu: the papers of the chat's last answer."""
        titles = list(dict.fromkeys(s.title for s in last.sources)) if last else []
        return gr.Dropdown(choices=titles, value=None)

    def downloads(self, last: Answer | None) -> tuple[Any, ...]:
        """The download buttons: the chat's last answer with its references in each format, or disabled."""
        if last is None:
            return tuple(gr.DownloadButton(value=None, interactive=False) for _ in DOWNLOADS)
        folder = Path(tempfile.mkdtemp(prefix="papercite-answer-"))
        buttons = []
        for fmt in DOWNLOADS:
            path = folder / f"papercite-answer{SUFFIX[fmt]}"
            path.write_text(export(last, fmt), encoding="utf-8")
            buttons.append(gr.DownloadButton(value=str(path), interactive=True))
        return tuple(buttons)

    def more_like(self, title: str | None, collection: str | None = None) -> Any:
        """The sources panel showing the papers nearest to ``title`` (no LLM call)."""
        if not title:
            return gr.skip()
        try:
            return similar_html(title, similar(title, services=self.services_for(collection)))
        except PaperciteError as exc:
            raise gr.Error(page_message(exc, self.settings), print_exception=False) from None

    def show_turn(self, turns: dict[int, tuple[str, str]], evt: gr.SelectData) -> tuple[Any, Any]:
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        turn = turns.get(index) or turns.get(index + 1)  # a click on the question shows its answer's sources
        return (turn[0], turn[1]) if turn else (gr.skip(), gr.skip())

    def upload(
        self,
        files: list[str] | None,
        collection: str | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - how Gradio injects a progress bar
    ) -> tuple[Any, ...]:
        """Ingest the uploaded files into ``collection`` (created by its first upload)."""
        try:
            services = self.services_for(collection)
        except PaperciteError as exc:
            raise gr.Error(page_message(exc, self.settings), print_exception=False) from None
        rows = [(display_name(path), self._ingest_upload(path, services, progress)) for path in files or []]
        selector = gr.Dropdown(choices=self.collection_names(), value=services.settings.store.collection)
        return (upload_report_markdown(rows), *self.collection_view(collection), None, selector)

    def _ingest_upload(self, path: str, services: Services, progress: gr.Progress) -> object:
        """Ingest one uploaded file: its report with server paths hidden, or the message saying why not."""
        name = display_name(path)
        size = Path(path).stat().st_size
        # Gradio's max_file_size (see launch) caps the files sent to the server, but not one Gradio downloads
        # itself when a program passes a URL to the /upload endpoint: that one is capped here.
        if size > max_upload_bytes(self.settings):
            return (
                f"{size / 1e6:.1f} MB is over the {self.settings.serve.max_upload_mb:g} MB limit: "
                "ingest it with `papercite ingest FILE`, or raise PAPERCITE_SERVE__MAX_UPLOAD_MB."
            )

        def report_progress(done: int, total: int) -> None:
            progress((done, total), desc=f"Embedding {name}", unit="chunks")

        try:
            report = ingest_path(path, services=services, progress=report_progress)
        except PaperciteError as exc:
            return page_message(exc, self.settings, path)
        report.source = name
        report.skipped = [type(p)(p.location.replace(str(path), name), p.reason) for p in report.skipped]
        return report


def _failed(
    history: list[dict[str, Any]], turns: dict[int, tuple[str, str]], message: str
) -> Iterator[tuple[Any, ...]]:
    """End an answer that failed: the message in the chat and as a ``gr.Error``, no sources."""
    history[-1] = {"role": "assistant", "content": f"⚠️ {message}"}
    yield history, NO_SOURCES, "", turns, gr.skip()
    raise gr.Error(message, print_exception=False) from None


def page_filters(
    since: str | int | None, until: str | int | None, author: str | None, source: str | None
) -> Filters | None:
    """The filter the page's controls describe (blank ones let everything through), or None.

    Raises:
        BadInput: a year is not a year, or ``since`` is after ``until``.
    """

    def year(value: str | int | None, name: str) -> int | None:
        text = str(value if value is not None else "").strip()
        if not text:
            return None
        if not text.isdigit():
            raise BadInput(f"{name} {text!r} is not a year: give four digits, e.g. 2021, or leave it empty.")
        return int(text)

    filters = Filters(year(since, "From year"), year(until, "To year"), (author or "").strip() or None, source or None)
    return filters if filters.active else None


def _api_ask(handlers: Handlers) -> Callable[..., dict[str, Any]]:
    """The function behind the /ask endpoint; its ``top_k`` defaults to the settings' (the API page shows it)."""
    settings = handlers.settings

    def api_ask(
        question: str,
        top_k: int = settings.answer.top_papers,
        collection: str | None = None,
        since: int | None = None,
        until: int | None = None,
        author: str | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        """Answer a question from a collection (the page's when None), only from the papers that pass
        the filters given: the Answer as JSON (text, citations, sources, timings)."""
        try:
            services = handlers.services_for(collection)
            filters = page_filters(since, until, author, source)
            return asdict(ask(question, services=services, top_k=top_k, filters=filters))
        except PaperciteError as exc:
            raise gr.Error(page_message(exc, settings), print_exception=False) from None

    return api_ask


def max_upload_bytes(settings: Settings) -> int:
    """The upload cap in bytes (Gradio's ``max_file_size`` and the page's own check of downloaded files)."""
    return int(settings.serve.max_upload_mb * 1_000_000)
