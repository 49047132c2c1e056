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
from typing import Any, get_args

import click

from rag.errors import BadInput, IndexEmpty, LLMUnavailable, PaperciteError, StoreError
from rag.settings import LLMBackend

EXIT_CODES: dict[type[PaperciteError], int] = {
    BadInput: 3,  # includes EmptyQuestion
    IndexEmpty: 4,
    LLMUnavailable: 5,
    StoreError: 6,
}
# The --backend choices: the values PAPERCITE_LLM__BACKEND accepts, so the two cannot drift apart.
LLM_BACKENDS = click.Choice(get_args(LLMBackend))
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


def _settings(backend: str | None = None) -> Any:
    from rag.settings import load_settings

    settings = load_settings()
    if backend:
        settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": backend})})
    return settings


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["page", "jsonl", "json", "csv", "bibtex"]),
    help="Reader to use instead of guessing from the extension.",
)
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
@click.option("--backend", type=LLM_BACKENDS, help="LLM backend for this answer.")
@click.option("--judge", is_flag=True, help="Also have the LLM judge each sentence against its abstracts (slow).")
def ask(question: str, as_json: bool, top_k: int | None, backend: str | None, judge: bool) -> None:
    """Answer QUESTION from the collection, citing paper titles; every sentence is checked against its abstract."""
    from rag import ask as rag_ask

    settings = _settings(backend)
    if judge:
        settings = settings.model_copy(update={"answer": settings.answer.model_copy(update={"judge": True})})
    answer = rag_ask(question, settings=settings, top_k=top_k)
    if as_json:
        click.echo(json.dumps(asdict(answer), indent=2, ensure_ascii=False))
        return
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
def stats() -> None:
    """Show how many papers and chunks the collection holds."""
    from rag.services import get_services

    s = get_services(_settings()).store.stats()
    click.echo(
        f"papers: {s.papers}\nchunks: {s.chunks}\nembedding model: {s.embedding_model or '-'}\nstore: {s.location}"
    )


@cli.command()
def check() -> None:
    """Verify the store: every paper has its chunks, BM25 matches Chroma, same embedding model."""
    from rag.services import get_services

    settings = _settings()
    store = get_services(settings).store
    result = store.verify(settings.embedding.model)
    click.echo(f"papers: {result.papers}\nchunks: {result.chunks}\nstore: {store.location}")
    for line in result.problems:
        click.echo(f"problem: {line}")
    if not result.ok:
        raise StoreError(
            f"{len(result.problems)} problem(s) in the store at {store.location}; each line above says how to fix it."
        )
    click.echo("ok: every paper has all its chunks, BM25 matches, and the embedding model is the configured one.")


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
        click.echo(
            f"Warning: the page is open to the network on {conf.host} with no login; "
            "set PAPERCITE_SERVE__AUTH=user:password.",
            err=True,
        )
    app = build_app(settings)
    warm_up(settings)
    click.echo(f"papercite is at http://{conf.host}:{conf.port} (Ctrl+C stops it)", err=True)
    launch(app, settings)


@cli.command("eval")
@click.option(
    "--set",
    "gold_set",
    default="bundled",
    show_default=True,
    help="bundled (the sample's hand-written questions), asreview (2,000 ASReview abstracts, with --asreview), "
    "scifact (with --scifact), or a JSONL gold set asked of your store.",
)
@click.option(
    "--split",
    type=click.Choice(["dev", "test", "both"]),
    default="both",
    show_default=True,
    help="For bundled and asreview: the development part, the frozen test part, or both side by side.",
)
@click.option(
    "--asreview",
    "asreview_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSONL(.gz) holding the ASReview records, e.g. ../shared/benchmarks/scale/abstracts.jsonl.gz.",
)
@click.option(
    "--scifact",
    "scifact_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="SciFact directory (corpus.csv, claims_train.csv), for --set scifact.",
)
@click.option(
    "--limit", type=click.IntRange(1), help="Ask only N questions of each part (taken evenly over the kinds)."
)
@click.option(
    "--replay",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Generation cache (JSONL) for tuning and ablations: a prompt seen before is not generated again.",
)
@click.option("--backend", type=LLM_BACKENDS, help="LLM backend for the answers.")
@click.option(
    "--ablate",
    is_flag=True,
    help="Answer once per answer step switched off and write ablation-<set>.md "
    "(uses --replay, by default OUT/generations.jsonl).",
)
@click.option(
    "--ablate-step",
    "ablate_steps",
    multiple=True,
    metavar="STEP",
    help="With --ablate: only these steps off (repeatable), e.g. the cheap ones after generation.",
)
@click.option("--retrieval-only", is_flag=True, help="No LLM: compare dense, BM25 and hybrid retrieval.")
@click.option("--support", is_flag=True, help="Judge each answer sentence's support with the embedded LLM (slow).")
@click.option("--gate", is_flag=True, help="Exit with 7 when a test-part metric misses the CI threshold.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Where eval-report.md/.json/.png go.",
)
def eval_command(
    gold_set: str,
    split: str,
    asreview_path: Path | None,
    scifact_dir: Path | None,
    limit: int | None,
    replay: Path | None,
    backend: str | None,
    ablate: bool,
    ablate_steps: tuple[str, ...],
    retrieval_only: bool,
    support: bool,
    gate: bool,
    out_dir: Path,
) -> None:
    """Measure retrieval, citation accuracy and abstention against a gold set (dev and test side by side)."""
    from evals.run import run_eval

    passed = run_eval(
        _settings(backend),
        gold_set=gold_set,
        split=split,
        scifact_dir=scifact_dir,  # type: ignore[arg-type]
        asreview_path=asreview_path,
        limit=limit,
        replay=replay,
        ablate=ablate,
        ablate_steps=ablate_steps,
        retrieval_only=retrieval_only,
        support=support,
        gate=gate,
        out_dir=out_dir,
        echo=click.echo,
    )
    if not passed:
        sys.exit(7)


@cli.group()
def bench() -> None:
    """Measure speed and memory; each command prints a Markdown table (medians of --repeats runs)."""


def _sizes(value: str) -> list[int | None]:
    try:
        return [None if v.strip() == "all" else int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give sizes like 2000,all") from None


@bench.command("ingest")
@click.option(
    "--corpus",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="JSONL(.gz) of title and abstract, e.g. ../shared/benchmarks/scale/abstracts.jsonl.gz.",
)
@click.option(
    "--sizes", default="2000,all", show_default=True, help="Abstracts per run, comma-separated; all = every one."
)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
@click.option(
    "--cases",
    default="papercite,papercite-fp32,plain,encoder-bfloat16,encoder-float32",
    show_default=True,
    help="Which pipelines to time.",
)
def bench_ingest_command(corpus: Path, sizes: str, repeats: int, cases: str) -> None:
    """Abstracts per second end to end, against the plain LlamaIndex pipeline and the bare encoder."""
    from evals.bench import bench_ingest, ingest_table
    from rag.embedding import cpu_has_native_bf16

    click.echo(f"CPU: {os.cpu_count()} cores, native bfloat16: {'yes' if cpu_has_native_bf16() else 'no'}", err=True)
    results = bench_ingest(
        corpus, _sizes(sizes), repeats=repeats, cases=cases.split(","), echo=lambda m: click.echo(m, err=True)
    )
    for n, rows in results.items():
        click.echo(f"\n{n:,} abstracts, median of {repeats} run(s):\n")
        click.echo(ingest_table(rows))


def _bench_settings(backend: str | None = None) -> Any:
    """The bundled eval's own store (the sample, ingested once), as `papercite eval` uses."""
    from evals.harness import eval_settings
    from ingest import ingest_path, sample_corpus

    settings = eval_settings(_settings(backend), "bundled")
    ingest_path(sample_corpus(), settings=settings, progress=False)
    return settings


@bench.command("retrieve")
@click.option(
    "--corpus",
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSONL(.gz) of the 22k-abstract scale corpus; without it only the 84-paper sample is timed.",
)
@click.option(
    "--million", is_flag=True, help="Also grow the scale store synthetically to 1,000,000 chunks and time it."
)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
def bench_retrieve_command(corpus: Path | None, million: bool, repeats: int) -> None:
    """p50/p95 latency of hybrid retrieve() with a warm store, at 84 papers, 22k papers and 1M chunks."""
    from evals.bench import bench_retrieval, grow_store, scale_settings
    from evals.gold import BUNDLED, load_gold

    questions = [q.question for q in load_gold(BUNDLED)]
    stores = [("sample", _bench_settings())]
    if corpus:
        stores.append(("scale corpus", scale_settings(_settings(), corpus, echo=lambda m: click.echo(m, err=True))))
        if million:
            stores.append(
                ("scale corpus grown", grow_store(stores[-1][1], 1_000_000, echo=lambda m: click.echo(m, err=True)))
            )
    click.echo(f"\nhybrid retrieve(), {len(questions)} bundled questions x {repeats}, warm store:\n")
    click.echo(
        "| store | papers | chunks | queries | p50 (ms) | p95 (ms) |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    )
    for name, settings in stores:
        r = bench_retrieval(settings, questions, repeats=repeats)
        click.echo(
            f"| {name} | {r['papers']:,} | {r['chunks']:,} | {r['queries']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |"
        )


@bench.command("answer")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=40,
    show_default=True,
    help="Bundled questions to answer (taken evenly over the kinds).",
)
@click.option(
    "--askers", default="1,4,16", show_default=True, help="Concurrent askers to time, comma-separated; empty to skip."
)
@click.option("--backend", type=LLM_BACKENDS, default="embedded", show_default=True)
def bench_answer_command(limit: int, askers: str, backend: str) -> None:
    """Time to first token and full answer (p50/p95) with the model loaded, a cold `papercite ask`, and concurrency."""
    from evals.bench import bench_answers, bench_cold_ask, bench_concurrency
    from evals.gold import BUNDLED, load_gold
    from evals.harness import stratified

    settings = _bench_settings(backend)
    gold = stratified(load_gold(BUNDLED), limit)
    r = bench_answers(settings, [q.question for q in gold], echo=lambda m: click.echo(m, err=True))
    click.echo(
        f"\nanswers with {backend} model loaded: {r['questions']} bundled questions, {r['generated']} generated, "
        f"{r['abstained_early']} abstained before generating\n"
    )
    click.echo(
        "| first token p50 (s) | p95 (s) | full answer p50 (s) | p95 (s) | prompt tokens p50 |\n"
        "| ---: | ---: | ---: | ---: | ---: |"
    )
    click.echo(
        f"| {r['first_p50']:.1f} | {r['first_p95']:.1f} | {r['total_p50']:.1f} | {r['total_p95']:.1f} | "
        f"{r['prompt_tokens_p50']:.0f} |"
    )
    answerable = [q.question for q in gold if q.kind in ("single", "multi")]
    cold = bench_cold_ask(settings, answerable[0])
    click.echo(
        f"\ncold `papercite ask` in a fresh process: {cold['seconds']:.1f} s, peak RSS {cold['peak_mb']:,.0f} MB, "
        f"heavy modules imported: {', '.join(cold['heavy']) or 'none'}"
    )
    counts = [int(n) for n in askers.split(",") if n.strip()]
    if counts:
        click.echo(
            "\n| concurrent askers | completed | reached the model | served in order | seconds | answers per minute |\n"
            "| ---: | ---: | ---: | --- | ---: | ---: |"
        )
        offset = 1
        for n in counts:  # fresh questions for each run, so no answer comes from the previous prompt's cache
            c = bench_concurrency(settings, (answerable * n)[offset : offset + n], n)
            offset += n
            click.echo(
                f"| {n} | {c['completed']}/{n} | {c['generated']} | {'yes' if c['in_order'] else 'no'} | "
                f"{c['seconds']:.1f} | {c['per_minute']:.1f} |" + (f" errors: {c['errors']}" if c["errors"] else "")
            )


@bench.command("serve")
@click.option("--questions", type=click.IntRange(1), default=5, show_default=True)
def bench_serve_command(questions: int) -> None:
    """Peak memory of a real `papercite serve` with the embedded model, after answering bundled questions (Linux)."""
    from evals.bench import bench_serve_memory
    from evals.gold import BUNDLED, load_gold

    settings = _bench_settings("embedded")
    asked = [q.question for q in load_gold(BUNDLED) if q.kind == "single"][:questions]
    r = bench_serve_memory(settings, asked)
    click.echo(
        "| `papercite serve`, embedded model | questions answered | peak RSS (MB) | RSS after (MB) |\n"
        "| --- | ---: | ---: | ---: |"
    )
    click.echo(f"| this machine | {r['questions']:.0f} | {r['peak_mb']:,.0f} | {r['rss_mb']:,.0f} |")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="papercite")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
