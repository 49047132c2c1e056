"""The ``papercite`` command: a thin edge over ``rag`` and ``ingest``.

Errors meant for the user (``rag.errors.PaperciteError``) become one line on stderr
and an exit code; nothing the user typed wrong ever prints a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from ingest import ingest_path, sample_corpus
from ingest.pipeline import ingest_zotero_collections
from ingest.zotero import find_zotero_library
from rag import ask_stream
from rag.errors import BadInput, IndexEmpty, LLMUnavailable, PaperciteError, StoreError
from rag.export import export
from rag.llm.backends import embedded_runtime, models_dir
from rag.llm.runtime import best_variant, build_runtime, cpu_flags, wheel_version, worth_building
from rag.services import Services
from rag.similar import similar as rag_similar
from rag.store.check import check_store
from rag.store.collections import delete_collection, list_collections, rename_collection
from rag.store.names import DEFAULT
from rag.table import Cell, Table, TablePlan, table_stream
from rag.types import Answer, PaperReading
from rag.warm import warm as warm_collection
from ui.measure import bench, eval_command
from ui.options import LLM_BACKENDS, collection_option, filter_options, filters_from, mode_option
from ui.options import command_settings as _settings

EXIT_CODES: dict[type[PaperciteError], int] = {
    BadInput: 3,  # includes EmptyQuestion
    IndexEmpty: 4,
    LLMUnavailable: 5,
    StoreError: 6,
}
EXIT_HELP = """Exit codes: 0 success; 1 unexpected failure; 2 wrong command-line usage;
3 bad input (empty question, unreadable file, invalid setting); 4 the collection is
empty; 5 the LLM backend cannot answer; 6 the store cannot be opened, is busy with
another ingest, does not match the settings, or `check` found a problem; 7 `eval --gate`
found a metric below its threshold."""


def _quiet_libraries() -> None:
    # Model loaders print progress bars and tokenizer warnings meant for developers.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("chromadb").setLevel(logging.ERROR)


class _Group(click.Group):
    """A click group that turns PaperciteError into one line and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PaperciteError as exc:
            code = next((c for kind, c in EXIT_CODES.items() if isinstance(exc, kind)), 1)
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(code)


@click.group(cls=_Group, epilog=EXIT_HELP)
@click.version_option(package_name="papercite")
def cli() -> None:
    """papercite: cited answers from your collection of paper abstracts, on your machine."""
    _quiet_libraries()


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["page", "jsonl", "json", "csv", "bibtex", "zotero"]),
    help="Reader to use instead of guessing from the extension.",
)
@click.option("--sample", is_flag=True, help="Ingest the bundled sample of 84 papers.")
@click.option(
    "--zotero",
    "zotero_dir",
    type=click.Path(path_type=Path),
    help="Zotero's data directory (e.g. ~/Zotero): its library is read directly, read-only.",
)
@click.option(
    "--collection",
    metavar="NAME",
    help="The collection to add to, created when it does not exist (default: default).",
)
@click.option(
    "--zotero-collections",
    is_flag=True,
    help="Also put each paper of a Zotero library into a collection named after each Zotero collection it is in.",
)
def ingest(
    paths: tuple[Path, ...],
    fmt: str | None,
    sample: bool,
    zotero_dir: Path | None,
    collection: str | None,
    zotero_collections: bool,
) -> None:
    """Add the papers in PATHS (page text, JSONL/JSON, CSV, BibTeX, zotero.sqlite) to a collection."""

    settings = _settings(collection=collection)
    targets = list(paths) + ([sample_corpus()] if sample else [])
    targets += [find_zotero_library(zotero_dir)] if zotero_dir else []
    if not targets:
        raise BadInput("Nothing to ingest: give one or more files, e.g. `papercite ingest library.bib`, or --sample.")
    libraries = [t for t in targets if fmt == "zotero" or Path(t).suffix.lower() == ".sqlite"]
    if zotero_collections and not libraries:
        raise BadInput("--zotero-collections needs a Zotero library: give zotero.sqlite or --zotero DIR.")
    for path in targets:
        report = ingest_path(path, settings=settings, format=fmt)
        click.echo(report.summary())
        for problem in report.skipped[:20]:
            click.echo(f"  skipped {problem}", err=True)
        if len(report.skipped) > 20:
            click.echo(f"  ... and {len(report.skipped) - 20} more skipped", err=True)
        if zotero_collections and path in libraries:
            for part in ingest_zotero_collections(path, settings=settings):
                click.echo(part.summary())


@cli.command()
@click.argument("question")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "bibtex", "ris", "json"]),
    default="text",
    show_default=True,
    help="text for the terminal; markdown (the answer and its references), bibtex or ris (the cited "
    "papers, for a reference manager), or json (the whole answer).",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--top-k", type=click.IntRange(1, 50), help="How many papers to give the model.")
@click.option("--backend", type=LLM_BACKENDS, help="LLM backend for this answer.")
@click.option("--judge", is_flag=True, help="Also have the LLM judge each sentence against its abstracts (slow).")
@mode_option
@collection_option
@filter_options
def ask(
    question: str,
    fmt: str,
    as_json: bool,
    top_k: int | None,
    backend: str | None,
    judge: bool,
    mode: str | None,
    collection: str | None,
    **filter_values: Any,
) -> None:
    """Answer QUESTION from the collection, citing paper titles; every sentence is checked against its abstract."""

    settings = _settings(backend, collection, mode)
    if judge:
        settings = settings.updated(answer={"judge": True})
    fmt = "json" if as_json else fmt
    answer = _answer(question, settings, top_k, filters_from(**filter_values), show_readings=fmt == "text")
    if fmt != "text":
        click.echo(export(answer, fmt), nl=False)
        return
    _print_answer(answer)


@cli.command()
@click.option("--top-k", type=click.IntRange(1, 50), help="How many papers to give the model.")
@click.option("--backend", type=LLM_BACKENDS, help="LLM backend for the answers.")
@mode_option
@collection_option
@filter_options
def chat(
    top_k: int | None, backend: str | None, mode: str | None, collection: str | None, **filter_values: Any
) -> None:
    """Ask questions one per line, each a follow-up to the chat so far; /new starts a new chat, Ctrl-D ends."""
    settings = _settings(backend, collection, mode)
    filters = filters_from(**filter_values)
    last = None
    interactive = sys.stdin.isatty()
    while True:
        try:
            question = input("you> " if interactive else "")
        except EOFError:
            return
        if question.strip() == "/new":
            last = None
            click.echo("(a new chat: the next question follows nothing up)", err=True)
            continue
        if not question.strip():
            continue
        try:
            last = _answer(question, settings, top_k, filters, history=last)
        except (BadInput, LLMUnavailable) as exc:  # this question failed; the chat goes on
            click.echo(f"Error: {exc}", err=True)
            continue
        _print_answer(last)
        click.echo("")


@cli.command()
@click.argument("title")
@click.option("--top-k", type=click.IntRange(1, 50), default=5, show_default=True, help="How many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@collection_option
def similar(title: str, top_k: int, as_json: bool, collection: str | None) -> None:
    """The papers of the collection nearest to the one titled TITLE (no LLM call)."""

    papers = rag_similar(title, top_k, settings=_settings(collection=collection))
    if as_json:
        click.echo(json.dumps([asdict(p) for p in papers], indent=2, ensure_ascii=False))
        return
    for p in papers:
        year = f", {p.year}" if p.year else ""
        click.echo(f"[{p.number}] {p.title}{year} (similarity {p.similarity:.2f})")


@cli.command("table")
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar='"NAME: QUESTION"',
    help='A column: its name, a colon, the question asked of every paper (repeatable), e.g. "Dataset: Which dataset '
    'is evaluated on?".',
)
@click.option("--paper", "papers", multiple=True, metavar="TITLE", help="A row: a title or words from it (repeatable).")
@click.option("--about", metavar="QUESTION", help="The rows are the papers this question retrieves, best first.")
@click.option(
    "--limit",
    type=click.IntRange(0),
    help="Most rows (default: 50 of the collection, 10 for --about, every --paper); 0 for every paper.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "csv", "json"]),
    default="text",
    show_default=True,
    help="text: a table in the terminal, row by row as each is read; markdown (GitHub), csv (a spreadsheet), or "
    "json (each cell's status, confidence and the abstract sentence it rests on).",
)
@click.option("--backend", type=LLM_BACKENDS, help="LLM backend for the cells.")
@collection_option
@filter_options
def table_command(
    columns: tuple[str, ...],
    papers: tuple[str, ...],
    about: str | None,
    limit: int | None,
    fmt: str,
    backend: str | None,
    collection: str | None,
    **filter_values: Any,
) -> None:
    """A table of papers: every column's question asked of every paper's abstract, each cell checked against it
    (or "not stated"). Rows: --paper, --about, or the collection (narrowed by the filters)."""
    settings = _settings(backend, collection)
    stream = table_stream(
        list(columns),
        papers=list(papers) or None,
        about=about,
        filters=filters_from(**filter_values),
        limit=limit,
        settings=settings,
    )
    plan = next(stream)
    assert isinstance(plan, TablePlan)
    if plan.notice:
        click.echo(plan.notice, err=True)
    widths = _widths(plan) if fmt == "text" else []
    if widths:
        click.echo(_grid_line(["Paper", *(c.name for c in plan.columns)], widths))
    cells: list[Cell] = []
    with tqdm(total=plan.cells, desc="cells", unit="cell", disable=fmt == "text" or not sys.stderr.isatty()) as bar:
        for item in stream:
            if isinstance(item, Cell):
                cells.append(item)
                bar.update(1)
                if widths and len(cells) % len(plan.columns) == 0:
                    row = cells[-len(plan.columns) :]
                    click.echo(_grid_line([f"[{item.row}] {item.title}", *(c.shown for c in row)], widths))
            elif isinstance(item, Table):
                if fmt != "text":
                    click.echo(
                        {"markdown": item.to_markdown, "csv": item.to_csv, "json": item.to_json}[fmt](), nl=False
                    )
                if item.notice and item.notice != plan.notice:  # e.g. Ollama failed and the embedded model read
                    click.echo(item.notice, err=True)


def _widths(plan: TablePlan) -> list[int]:
    """Column widths that fit the terminal: the paper a third, the columns sharing the rest."""
    total = max(shutil.get_terminal_size((120, 24)).columns, 60)
    paper = max(20, total // 3)
    rest = max(12, (total - paper - 3 * len(plan.columns)) // len(plan.columns))
    return [paper, *([rest] * len(plan.columns))]


def _grid_line(texts: Sequence[str], widths: Sequence[int]) -> str:
    """One row of the terminal table, each text wrapped to its column's width, a rule below."""
    wrapped = [textwrap.wrap(t, w) or [""] for t, w in zip(texts, widths, strict=True)]
    lines = [
        " | ".join((col[i] if i < len(col) else "").ljust(w) for col, w in zip(wrapped, widths, strict=True)).rstrip()
        for i in range(max(map(len, wrapped)))
    ]
    return "\n".join(lines) + "\n" + "-" * (sum(widths) + 3 * (len(widths) - 1))


def _answer(
    question: str,
    settings: Any,
    top_k: int | None,
    filters: Any,
    *,
    history: Answer | None = None,
    show_readings: bool = True,
) -> Answer:
    """Answer through ``rag.ask_stream``; in per-paper mode each paper's reading is printed on stderr as it ends."""

    for item in ask_stream(question, settings=settings, top_k=top_k, history=history, filters=filters):
        if isinstance(item, PaperReading) and show_readings:
            click.echo(_reading_line(item), err=True)
        elif isinstance(item, Answer):
            return item
    raise AssertionError("ask_stream ended without an Answer")  # pragma: no cover


def _reading_line(reading: PaperReading) -> str:
    """One reading as it ends, for a terminal: "[2] yes 0.83  Title: finding"."""
    sure = f" {reading.confidence:.2f}" if reading.confidence is not None else ""
    found = f": {reading.finding}" if reading.finding and reading.supported else ""
    unsupported = " (finding not supported by its abstract)" if reading.finding and not reading.supported else ""
    return f"  read [{reading.number}] {reading.verdict}{sure}  {reading.title}{found}{unsupported}"


def _print_answer(answer: Answer) -> None:
    """An answer for a terminal: the text and its references on stdout, what was left out and how on stderr."""
    click.echo(answer.text)
    for sentence in answer.sentences:
        if sentence.verdict == "unsupported":
            state = "left out" if not sentence.shown else "shown, unsupported"
            click.echo(f"  ({state}: {sentence.text} -- {sentence.reason})", err=True)
    if answer.citations:
        click.echo("")
        for c in answer.citations:
            click.echo(f"[{c.number}] {c.title}")
    elif answer.sources:
        click.echo("\nNearest papers (they do not answer the question):")
        for s in answer.sources[:3]:
            click.echo(f"  - {s.title}")
    model = answer.model or "no model: nothing relevant was retrieved"
    if answer.notice:
        click.echo(f"\nNote: {answer.notice}", err=True)
    click.echo(f"\n({model}; {answer.timings.total:.1f} s)", err=True)


@cli.command()
@collection_option
def stats(collection: str | None) -> None:
    """Show how many papers and chunks the collection holds."""

    store = Services(_settings(collection=collection)).store
    s = store.stats()
    click.echo(
        f"collection: {store.name}\npapers: {s.papers}\nchunks: {s.chunks}\n"
        f"embedding model: {s.embedding_model or '-'}\nstore: {s.location}"
    )


@cli.group(invoke_without_command=True)
@click.pass_context
def collections(ctx: click.Context) -> None:
    """List the collections with their papers and chunks; `delete` and `rename` manage them."""
    if ctx.invoked_subcommand is None:
        for info in list_collections(_settings()):
            click.echo(f"{info.name}\t{info.papers} papers\t{info.chunks} chunks")


@collections.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def collections_delete(name: str, yes: bool) -> None:
    """Delete collection NAME: its papers, vectors and BM25 index (the files ingested from are untouched)."""

    settings = _settings()
    held = next((c for c in list_collections(settings) if c.name == name), None)
    if held is not None and not yes:
        click.confirm(f"Delete collection {name!r} and its {held.papers} papers?", abort=True, err=True)
    info = delete_collection(settings, name)
    click.echo(f"deleted collection {info.name!r} ({info.papers} papers, {info.chunks} chunks)")


@collections.command("rename")
@click.argument("old")
@click.argument("new")
def collections_rename(old: str, new: str) -> None:
    """Give collection OLD the name NEW."""

    rename_collection(_settings(), old, new)
    click.echo(f"renamed collection {old!r} to {new!r}")


@cli.command()
@collection_option
def check(collection: str | None) -> None:
    """Verify the store: every paper has its chunks, BM25 matches Chroma, same embedding model."""

    settings = _settings(collection=collection)
    store = Services(settings).store
    result = check_store(store, settings.embedding.model)
    click.echo(f"papers: {result.papers}\nchunks: {result.chunks}\nstore: {store.location}")
    for line in result.problems:
        click.echo(f"problem: {line}")
    if not result.ok:
        raise StoreError(
            f"{len(result.problems)} problem(s) in the store at {store.location}; each line above says how to fix it."
        )
    click.echo("ok: every paper has all its chunks, BM25 matches, and the embedding model is the configured one.")


@cli.command()
@collection_option
@click.option("--tables", is_flag=True, help="Read the papers as a table's cells start, for tables (not questions).")
def warm(collection: str | None, tables: bool) -> None:
    """Read every paper of a collection ahead of questions (per-paper mode), so a question costs only its own tokens.

    What is read is kept on disk under the data directory (PAPERCITE_LLM__PREFIX_DISK_MIB), for
    every later command and page; stopping it (Ctrl-C) keeps what was read. With --tables the
    papers are read as a table's cells start instead, so a table's columns cost only their questions.
    """

    services = Services(_settings(backend="embedded", collection=collection))
    with tqdm(total=services.store.stats().papers, unit="paper", desc="Reading", disable=None) as bar:

        def advance(done: int, total: int) -> None:
            bar.update(done - bar.n)

        report = warm_collection(services, tables=tables, progress=advance)
    click.echo(report.summary())


@cli.command()
@click.option("--build", is_flag=True, help="Build xllamacpp for this CPU now (12-15 minutes on two cores).")
def runtime(build: bool) -> None:
    """Show which llama.cpp runtime the embedded model loads, or build one for this CPU.

    The xllamacpp wheel runs AVX2 kernels on every CPU. On a CPU with AVX-512 or AVX-VNNI a
    build for it reads prompts about 1.4x faster; papercite keeps using the wheel until the
    build has finished, and loads the build only on a CPU with every flag it was built for.
    """

    settings = _settings()
    flags, version = cpu_flags(), wheel_version()
    if build:
        if version is None:
            raise BadInput("no xllamacpp to build: run pip install 'papercite[embedded]' first.")
        if not worth_building(flags):
            raise BadInput(
                f"this CPU runs ggml's {best_variant(flags)} kernels, which the wheel already has: "
                "a build would not be faster."
            )
        click.echo(f"building xllamacpp {version} for this CPU ({best_variant(flags)}); the wheel serves meanwhile")
        try:
            built = build_runtime(models_dir(settings), version, flags)
        except RuntimeError as exc:
            click.echo(str(exc), err=True)
            message = f"building xllamacpp {version} failed (output above); the wheel stays in use."
            raise LLMUnavailable(message) from exc
        click.echo(f"built in {built.seconds:.0f} s")
    choice = embedded_runtime(settings)
    click.echo(f"embedded runtime: {'built for this CPU' if choice.path else 'the xllamacpp wheel'} ({choice.reason})")
    if choice.path is None and worth_building(flags) and settings.llm.native_runtime:
        click.echo(f"this CPU ({best_variant(flags)}) would gain from a build: papercite runtime --build")


@cli.command()
def config() -> None:
    """Print the effective settings (environment and defaults), as JSON."""
    click.echo(_settings().model_dump_json(indent=2))


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 7860).")
@collection_option
def serve(host: str | None, port: int | None, collection: str | None) -> None:
    """Open the chat page at http://127.0.0.1:7860 (Ctrl+C stops it)."""

    settings = _serve_settings(host, port, collection)
    services = Services(settings)
    services.store  # noqa: B018 - an unknown collection fails here, before the page starts
    _serve(settings, services)


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 7860).")
@collection_option
def start(host: str | None, port: int | None, collection: str | None) -> None:
    """Ingest the bundled sample if the default collection is empty, then open the chat page."""

    settings = _serve_settings(host, port, collection)
    services = Services(settings)
    store = services.store  # an unknown collection fails here; default is made when missing
    if store.name == DEFAULT and store.collection.count() == 0:
        click.echo(ingest_path(sample_corpus(), services=services).summary())
    _serve(settings, services)


def _serve_settings(host: str | None, port: int | None, collection: str | None) -> Any:
    settings = _settings(collection=collection)
    update = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    return settings.updated(serve=update) if update else settings


def _serve(settings: Any, services: Any) -> None:
    from ui.app import build_app, launch, warm_up  # heavy: gradio, for serve and start

    conf = settings.serve
    conf.credentials()  # a malformed PAPERCITE_SERVE__AUTH fails here, before anything loads
    if conf.host not in ("127.0.0.1", "localhost", "::1") and conf.auth is None:
        click.echo(
            f"Warning: the page is open to the network on {conf.host} with no login; "
            "set PAPERCITE_SERVE__AUTH=user:password.",
            err=True,
        )
    app = build_app(settings, services)
    warm_up(services)
    click.echo(f"papercite is at http://{conf.host}:{conf.port} (Ctrl+C stops it)", err=True)
    launch(app, settings)


# `eval` and `bench` live in ui/measure.py.

cli.add_command(eval_command)
cli.add_command(bench)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="papercite")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
