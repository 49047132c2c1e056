"""The ``papercite`` command: a thin edge over ``rag`` and ``ingest``.

Errors meant for the user (``rag.errors.PaperciteError``) become one line on stderr
and an exit code; nothing the user typed wrong ever prints a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from rag.errors import BadInput, IndexEmpty, LLMUnavailable, PaperciteError, StoreError

EXIT_CODES: dict[type[PaperciteError], int] = {
    BadInput: 3,  # includes EmptyQuestion
    IndexEmpty: 4,
    LLMUnavailable: 5,
    StoreError: 6,
}
EXIT_HELP = """Exit codes: 0 success; 1 unexpected failure; 2 wrong command-line usage;
3 bad input (empty question, unreadable file, invalid setting); 4 the collection is
empty; 5 the LLM backend cannot answer; 6 the store cannot be opened or does not match
the settings; 7 `eval --gate` found a metric below its threshold."""


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


def _settings(backend: str | None = None) -> Any:
    from rag.settings import load_settings

    settings = load_settings()
    if backend:
        settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": backend})})
    return settings


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["page", "jsonl", "json", "csv", "bibtex"]),
              help="Reader to use instead of guessing from the extension.")
@click.option("--sample", is_flag=True, help="Ingest the bundled sample of 84 papers.")
def ingest(paths: tuple[Path, ...], fmt: str | None, sample: bool) -> None:
    """Add the papers in PATHS (page text, JSONL/JSON, CSV or BibTeX) to the collection."""
    from ingest import ingest_path, sample_corpus

    targets = list(paths) + ([sample_corpus()] if sample else [])
    if not targets:
        raise BadInput("Nothing to ingest: give one or more files, e.g. `papercite ingest library.bib`, or --sample.")
    settings = _settings()
    for path in targets:
        report = ingest_path(path, settings=settings, format=fmt)
        click.echo(report.summary())
        for problem in report.skipped[:20]:
            click.echo(f"  skipped {problem}", err=True)
        if len(report.skipped) > 20:
            click.echo(f"  ... and {len(report.skipped) - 20} more skipped", err=True)


@cli.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@click.option("--top-k", type=click.IntRange(1, 50), help="How many papers to give the model.")
@click.option("--backend", type=click.Choice(["auto", "ollama", "embedded", "openai"]), help="LLM backend for this answer.")
def ask(question: str, as_json: bool, top_k: int | None, backend: str | None) -> None:
    """Answer QUESTION from the collection, citing paper titles."""
    from rag import ask as rag_ask

    answer = rag_ask(question, settings=_settings(backend), top_k=top_k)
    if as_json:
        click.echo(json.dumps(asdict(answer), indent=2, ensure_ascii=False))
        return
    click.echo(answer.text)
    if answer.citations:
        click.echo("")
        for c in answer.citations:
            click.echo(f"[{c.number}] {c.title}")
    elif answer.sources:
        click.echo("\nNearest papers (they do not answer the question):")
        for s in answer.sources[:3]:
            click.echo(f"  - {s.title}")
    model = answer.model or "no model: nothing relevant was retrieved"
    click.echo(f"\n({model}; {answer.timings.total:.1f} s)", err=True)


@cli.command()
def stats() -> None:
    """Show how many papers and chunks the collection holds."""
    from rag.services import get_services

    s = get_services(_settings()).store.stats()
    click.echo(f"papers: {s.papers}\nchunks: {s.chunks}\nembedding model: {s.embedding_model or '-'}\nstore: {s.location}")


@cli.command()
def config() -> None:
    """Print the effective settings (environment and defaults), as JSON."""
    click.echo(_settings().model_dump_json(indent=2))


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 7860).")
def serve(host: str | None, port: int | None) -> None:
    """Open the chat page at http://127.0.0.1:7860 (Ctrl+C stops it)."""
    _serve(_serve_settings(host, port))


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 7860).")
def start(host: str | None, port: int | None) -> None:
    """Ingest the bundled sample if the collection is empty, then open the chat page."""
    from ingest import ingest_path, sample_corpus
    from rag.services import get_services

    settings = _serve_settings(host, port)
    if get_services(settings).store.collection.count() == 0:
        click.echo(ingest_path(sample_corpus(), settings=settings).summary())
    _serve(settings)


def _serve_settings(host: str | None, port: int | None) -> Any:
    settings = _settings()
    update = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    return settings.model_copy(update={"serve": settings.serve.model_copy(update=update)}) if update else settings


def _serve(settings: Any) -> None:
    from ui.app import build_app, launch, warm_up

    conf = settings.serve
    conf.credentials()  # a malformed PAPERCITE_SERVE__AUTH fails here, before anything loads
    if conf.host not in ("127.0.0.1", "localhost", "::1") and conf.auth is None:
        click.echo(f"Warning: the page is open to the network on {conf.host} with no login; "
                   "set PAPERCITE_SERVE__AUTH=user:password.", err=True)
    app = build_app(settings)
    warm_up(settings)
    click.echo(f"papercite is at http://{conf.host}:{conf.port} (Ctrl+C stops it)", err=True)
    launch(app, settings)


@cli.command("eval")
@click.option("--set", "gold_set", default="bundled", show_default=True,
              help="bundled (the sample's hand-written questions), scifact, or a JSONL gold set asked of your store.")
@click.option("--scifact", "scifact_dir", type=click.Path(path_type=Path, file_okay=False),
              help="SciFact directory (corpus.csv, claims_train.csv), for --set scifact.")
@click.option("--limit", type=click.IntRange(1), help="Ask only N questions (taken evenly over the kinds).")
@click.option("--backend", type=click.Choice(["auto", "ollama", "embedded", "openai"]), help="LLM backend for the answers.")
@click.option("--retrieval-only", is_flag=True, help="No LLM: compare dense, BM25 and hybrid retrieval.")
@click.option("--support", is_flag=True, help="Judge each answer sentence's support with the embedded LLM (slow).")
@click.option("--gate", is_flag=True, help="Exit with 7 when a metric misses the CI threshold.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
              show_default=True, help="Where eval-report.md/.json/.png go.")
def eval_command(gold_set: str, scifact_dir: Path | None, limit: int | None, backend: str | None,
                 retrieval_only: bool, support: bool, gate: bool, out_dir: Path) -> None:
    """Measure retrieval, citation accuracy and abstention against a gold set."""
    from evals.run import run_eval

    passed = run_eval(_settings(backend), gold_set=gold_set, scifact_dir=scifact_dir, limit=limit,
                      retrieval_only=retrieval_only, support=support, gate=gate, out_dir=out_dir, echo=click.echo)
    if not passed:
        sys.exit(7)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="papercite")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
