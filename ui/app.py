"""The papercite page: ask in plain language, read cited answers, make tables of papers, manage the collection.

``build_app(settings)`` builds the page and wires it to ``rag.ask_stream`` and
``ingest.ingest_path``, the same calls the CLI makes; ``launch(app, settings)``
serves it. They are apart so tests can start the page on a free port.

Each ``PaperciteError`` becomes one ``gr.Error`` message on the page, with paths on
the server left out; any other failure is logged on the server and shown as one
line. Answers go through Gradio's queue, ``settings.serve.concurrency`` at a time
(1 by default: the embedded model runs one generation at a time), so questions
from several users wait their turn in order.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a private tool reports to nobody

import gradio as gr

from rag.errors import PaperciteError
from rag.llm.backends import llm_choices
from rag.services import Services
from rag.settings import LLMSettings, Settings
from rag.warm import warm
from ui.handlers import DOWNLOADS, NO_SOURCES, TABLE_ROWS, Handlers, max_upload_bytes, page_message

__all__ = ["CSS", "UPLOAD_TYPES", "build_app", "launch", "page_message", "warm_up"]

log = logging.getLogger(__name__)

UPLOAD_TYPES = [".jsonl", ".json", ".csv", ".tsv", ".bib", ".txt", ".gz", ".sqlite"]  # .sqlite: a Zotero library
CSS = """
.pc-cite { display: inline-block; padding: 0 .35em; margin: 0 .1em; border-radius: .6em;
  background: #dbeafe; color: #1e3a8a; font-size: .85em; font-weight: 600; cursor: help; }
.pc-attributed { background: transparent; border: 1px dashed #1e3a8a; }
.pc-unsupported { text-decoration: line-through wavy #b91c1c; color: #7f1d1d; cursor: help; }
.pc-removed { margin-top: .4em; color: #6b7280; font-size: .85em; }
.pc-meta { display: block; margin-top: .4em; color: #6b7280; font-size: .8em; }
.pc-sources h4 { margin: .6em 0 .3em; }
.pc-source { border: 1px solid #e5e7eb; border-radius: 8px; padding: .5em .7em; margin: .4em 0; }
.pc-cited { border-left: 4px solid #2563eb; }
.pc-uncited, .pc-nearest { opacity: .8; border-left: 4px solid #9ca3af; }
.pc-title { font-weight: 600; }
.pc-byline { color: #6b7280; font-size: .85em; margin: .15em 0 .3em; }
.pc-source blockquote { margin: .2em 0; padding-left: .6em; border-left: 2px solid #e5e7eb; font-size: .9em; }
.pc-source summary { cursor: pointer; color: #6b7280; font-size: .85em; }
.pc-source mark { background: #fef08a; padding: 0 .1em; }
.pc-source mark.pc-best { background: #fefce8; padding: 0; box-shadow: inset 0 -2px #facc15; }
.pc-reading { border-left: 4px solid #facc15; }
.pc-verdict { font-size: .85em; margin: .2em 0 .3em; padding: .2em .4em; border-radius: 4px; background: #f3f4f6; }
.pc-verdict.pc-yes { background: #ecfdf5; }
.pc-why { color: #6b7280; }
.pc-note { color: #6b7280; font-size: .85em; margin: .2em 0; }
.pc-notice { font-weight: 600; color: #92400e; }
.pc-table table { border-collapse: collapse; width: 100%; font-size: .9em; }
.pc-table th, .pc-table td { border: 1px solid #e5e7eb; padding: .3em .5em; vertical-align: top; text-align: left; }
.pc-table .pc-paper { font-weight: 600; max-width: 22em; }
.pc-table .pc-none summary { color: #9ca3af; font-style: italic; }
.pc-table .pc-pending { color: #9ca3af; }
.pc-table summary { cursor: pointer; }
.pc-table blockquote { margin: .3em 0; padding-left: .5em; border-left: 2px solid #facc15; font-size: .9em; }
.pc-progress progress { width: 16em; vertical-align: middle; }
"""


def build_app(settings: Settings, services: Services | None = None) -> gr.Blocks:
    """Build the page for the collection and backends ``settings`` describe (does not serve it).

    Args:
        settings: the collection, backends and serving options.
        services: the store, encoder and LLM to answer with (the ones :func:`warm_up` loads);
            built from ``settings`` when None (a test passes one holding a scripted LLM).
    """
    handlers = Handlers(settings, services or Services(settings), llm_choices(settings))
    with gr.Blocks(title="papercite", fill_width=True) as app:
        gr.Markdown(
            "## papercite\nAnswers from your collection of paper abstracts, every claim cited. Runs on this machine."
        )
        turns = gr.State({})  # chat message index -> (its sources panel, its answer with references)
        pending = gr.State("")  # the checked question, handed from check_question to respond
        last = gr.State(None)  # the chat's last Answer: the next question is asked as its follow-up
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                chat = _chat_column()
                side = _side_column(settings, handlers.choices, handlers.default_llm, handlers.collection_names())
            with gr.Tab("Table", id="table", elem_id="pc-table-tab"):
                table = _table_tab()
        _wire_events(app, chat, side, _States(turns, pending, last), handlers)
        table.button.click(
            handlers.make_table,
            inputs=[table.rows_from, table.search, table.columns, table.most, last, side.llm, side.selector],
            outputs=[table.view, table.download],
            concurrency_limit=settings.serve.concurrency,
            concurrency_id="answer",  # the same model as the chat's answers: they wait in one queue
            api_visibility="private",
        )
    return app


@dataclass(frozen=True)
class _States:
    """What the page remembers per browser session between events."""

    turns: gr.State
    pending: gr.State
    last: gr.State


@dataclass(frozen=True)
class _Chat:
    """The left column: the conversation and the question box, with what goes beside them."""

    chatbot: gr.Chatbot
    question: gr.Textbox
    ask_button: gr.Button
    examples: gr.Dataset
    copy_button: gr.Button
    clear_button: gr.Button
    copy_box: gr.Textbox
    downloads: tuple[gr.DownloadButton, ...]  # the last answer as Markdown, BibTeX, RIS
    filters: tuple[gr.Textbox, gr.Textbox, gr.Textbox, gr.Dropdown]  # since, until, author, source


@dataclass(frozen=True)
class _Side:
    """The right column: the sources of the answer shown, the collection and its uploads, the settings."""

    sources: gr.HTML
    similar: gr.Dropdown
    selector: gr.Dropdown  # which collection is asked and uploaded to
    collection: gr.Markdown
    files: gr.File
    report: gr.Markdown
    top_k: gr.Slider
    llm: gr.Dropdown


@dataclass(frozen=True)
class _TableTab:
    """The Table tab: which papers, which columns, the table as it fills, its CSV."""

    rows_from: gr.Radio
    search: gr.Textbox
    columns: gr.Textbox
    most: gr.Number
    button: gr.Button
    view: gr.HTML
    download: gr.DownloadButton


def _table_tab() -> _TableTab:
    gr.Markdown(
        "Ask the same short questions of every paper. Each cell is answered from that paper's abstract and checked "
        "against it, or reads *not stated*; click a cell to see the sentence it rests on."
    )
    with gr.Row():
        rows_from = gr.Radio(list(TABLE_ROWS), value=TABLE_ROWS[0], label="Papers", elem_id="pc-table-rows")
        search = gr.Textbox(
            label="Search (for the papers a search finds)",
            placeholder="e.g. pipeline parallelism",
            max_lines=1,
            elem_id="pc-table-search",
        )
        most = gr.Number(value=10, minimum=1, maximum=500, precision=0, label="Most papers", elem_id="pc-table-most")
    columns = gr.Textbox(
        label="Columns, one per line: Name: question",
        value="Dataset: Which dataset or benchmark is it evaluated on?\nResult: What is its main quantitative result?",
        lines=4,
        elem_id="pc-table-columns",
    )
    with gr.Row():
        button = gr.Button("Make table", variant="primary", elem_id="pc-table-make", scale=1)
        download = gr.DownloadButton(
            "Download CSV", value=None, interactive=False, elem_id="pc-table-csv", size="sm", scale=1
        )
    view = gr.HTML("", elem_id="pc-table")
    return _TableTab(rows_from, search, columns, most, button, view, download)


def _chat_column() -> _Chat:
    with gr.Column(scale=3):
        chatbot = gr.Chatbot(
            label="Chat",
            elem_id="pc-chat",
            height=520,
            buttons=["copy"],
            feedback_options=None,
            group_consecutive_messages=False,
            placeholder="Ask about the papers in your collection. Every sentence of an answer "
            "cites the abstract it comes from. Ask follow-ups in the same chat; Clear chat starts a new one.",
        )
        with gr.Row():
            question = gr.Textbox(
                show_label=False,
                placeholder="e.g. Which papers make LLM inference cheaper?",
                elem_id="pc-question",
                scale=6,
                max_lines=4,
                submit_btn=False,
            )
            ask_button = gr.Button("Ask", variant="primary", elem_id="pc-ask", scale=1)
        with gr.Accordion("Filter papers", open=False, elem_id="pc-filters"), gr.Row():
            since = gr.Textbox(label="From year", placeholder="any, e.g. 2021", max_lines=1, elem_id="pc-since")
            until = gr.Textbox(label="To year", placeholder="any, e.g. 2023", max_lines=1, elem_id="pc-until")
            author = gr.Textbox(label="Author", placeholder="e.g. Han or Müller", max_lines=1, elem_id="pc-author")
            source = gr.Dropdown(
                choices=[], value=None, label="From file", allow_custom_value=False, elem_id="pc-source"
            )
        examples = gr.Dataset(components=[question], samples=[], label="Try", elem_id="pc-examples")
        with gr.Row():
            copy_button = gr.Button("Copy answer with references", elem_id="pc-copy", size="sm")
            clear_button = gr.Button("Clear chat", elem_id="pc-clear", size="sm")
        with gr.Row():
            downloads = tuple(
                gr.DownloadButton(label, value=None, interactive=False, elem_id=f"pc-download-{fmt}", size="sm")
                for fmt, label in DOWNLOADS.items()
            )
        copy_box = gr.Textbox(
            label="Answer with references",
            lines=4,
            interactive=False,
            buttons=["copy"],
            elem_id="pc-copy-text",
        )
    filters = (since, until, author, source)
    return _Chat(chatbot, question, ask_button, examples, copy_button, clear_button, copy_box, downloads, filters)


def _side_column(
    settings: Settings, choices: dict[str, LLMSettings], default_llm: str | None, collections: list[str]
) -> _Side:
    with gr.Column(scale=2):
        gr.Markdown("### Sources")
        sources = gr.HTML(NO_SOURCES, elem_id="pc-sources")
        similar = gr.Dropdown(
            choices=[],
            value=None,
            label="More like this: pick a paper of the answer to see the collection's papers nearest to it",
            elem_id="pc-similar",
        )
        with gr.Accordion("Collection", open=True):
            selector = gr.Dropdown(
                choices=collections,
                value=settings.store.collection,
                allow_custom_value=True,
                label="Collection: questions are answered from it and uploads go to it (type a new name to start one)",
                elem_id="pc-collection-select",
            )
            collection = gr.Markdown(elem_id="pc-collection")
            files = gr.File(
                label="Add papers: JSONL, CSV, BibTeX, page text or zotero.sqlite "
                f"(up to {settings.serve.max_upload_mb:g} MB each)",
                file_count="multiple",
                file_types=UPLOAD_TYPES,
                elem_id="pc-upload",
            )
            report = gr.Markdown(elem_id="pc-report")
        with gr.Accordion("Settings", open=False):
            top_k = gr.Slider(
                1,
                15,
                value=settings.answer.top_papers,
                step=1,
                label="Papers to retrieve",
                elem_id="pc-top-k",
            )
            llm = gr.Dropdown(
                choices=list(choices),
                value=default_llm,
                label="Model",
                visible=len(choices) > 1,
                elem_id="pc-llm",
            )
    return _Side(sources, similar, selector, collection, files, report, top_k, llm)


def _wire_events(app: gr.Blocks, chat: _Chat, side: _Side, state: _States, handlers: Handlers) -> None:
    """Connect the components to the handlers (in this order: Gradio numbers the events as they come)."""
    concurrency = handlers.settings.serve.concurrency
    view = [side.collection, chat.examples, chat.filters[3]]  # the panel, example questions, the files to filter by
    new_chat = [chat.chatbot, state.turns, state.last, side.sources, chat.copy_box]
    app.load(handlers.collection_view, inputs=side.selector, outputs=view, api_visibility="private")
    side.selector.input(
        handlers.switch_collection, inputs=side.selector, outputs=view + new_chat, api_visibility="private"
    )
    chat.examples.click(lambda sample: sample[0], inputs=chat.examples, outputs=chat.question, api_visibility="private")
    gr.on(
        [chat.question.submit, chat.ask_button.click],
        handlers.check_question,
        inputs=chat.question,
        outputs=[chat.question, state.pending],
        concurrency_limit=None,
        api_visibility="private",
    ).success(
        handlers.respond,
        inputs=[
            state.pending,
            chat.chatbot,
            state.turns,
            state.last,
            side.top_k,
            side.llm,
            side.selector,
            *chat.filters,
        ],
        outputs=[chat.chatbot, side.sources, chat.copy_box, state.turns, state.last],
        concurrency_limit=concurrency,
        concurrency_id="answer",
        api_visibility="private",  # programs use the /ask endpoint below
    )
    chat.chatbot.select(
        handlers.show_turn, inputs=state.turns, outputs=[side.sources, chat.copy_box], api_visibility="private"
    )
    state.last.change(handlers.similar_choices, inputs=state.last, outputs=side.similar, api_visibility="private")
    state.last.change(handlers.downloads, inputs=state.last, outputs=list(chat.downloads), api_visibility="private")
    side.similar.input(
        handlers.more_like, inputs=[side.similar, side.selector], outputs=side.sources, api_visibility="private"
    )
    chat.clear_button.click(  # a new chat: the next question follows nothing up
        lambda: ([], {}, None, NO_SOURCES, ""), outputs=new_chat, api_visibility="private"
    )
    chat.copy_button.click(
        None, inputs=chat.copy_box, js="(text) => { if (text) navigator.clipboard.writeText(text); }"
    )
    side.files.upload(
        handlers.upload,
        inputs=[side.files, side.selector],
        outputs=[side.report, *view, side.files, side.selector],
        concurrency_limit=1,
        concurrency_id="ingest",
        api_name="upload",
    )
    # The same answers for programs (gradio_client, curl): waits in the same queue as the chat.
    gr.api(handlers.api_ask, api_name="ask", concurrency_limit=concurrency, concurrency_id="answer")


def launch(app: gr.Blocks, settings: Settings, *, port: int | None = None, block: bool = True) -> str:
    """Serve the page as ``settings.serve`` says; return its URL.

    Args:
        app: from :func:`build_app`.
        settings: host, port, auth, upload cap and queue size come from ``settings.serve``.
        port: overrides ``settings.serve.port`` (tests pass a free one).
        block: False returns once the server is up (tests, notebooks).

    Raises:
        BadInput: ``settings.serve.auth`` is not ``user:password``.
    """
    conf = settings.serve
    app.queue(max_size=conf.queue_size)
    app.launch(
        server_name=conf.host,
        server_port=port or conf.port,
        auth=conf.credentials(),
        share=False,
        max_file_size=max_upload_bytes(settings),
        prevent_thread_lock=not block,
        show_error=False,
        ssr_mode=False,
        quiet=True,
        css=CSS,
        theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]),
    )
    return app.local_url or f"http://{conf.host}:{port or conf.port}/"


def warm_up(services: Services, *, read_papers: bool = True) -> threading.Thread:
    """Load the page's embedding model, BM25 and LLM in the background, so the first question is not slow.

    In per-paper mode, with the embedded model, a collection of at most ``answer.warm_on_serve``
    papers is then read ahead of questions (``papercite warm``), unless ``read_papers`` is False.
    """

    def run() -> None:
        try:
            services.store.bm25()
            services.embed_model.get_query_embedding("warm up")
            services.backend  # noqa: B018 - building it loads the model
            if read_papers and _reads_ahead(services):
                log.info("Reading the collection ahead of questions: %s", warm(services).summary())
        except PaperciteError as exc:  # the first question will show the same error on the page
            log.warning("Warm-up: %s", exc)

    thread = threading.Thread(target=run, name="papercite-warm-up", daemon=True)
    thread.start()
    return thread


def _reads_ahead(services: Services) -> bool:
    """Whether the page reads its collection ahead: per-paper mode, a model that keeps what it reads,
    and a collection small enough to read in minutes (``answer.warm_on_serve``)."""
    conf = services.settings
    if conf.answer.mode != "per_paper" or getattr(services.backend.llm, "prefix_store", None) is None:
        return False
    return 0 < services.store.stats().papers <= conf.answer.warm_on_serve
