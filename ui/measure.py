"""``papercite eval`` and ``papercite bench``: the measuring commands, apart from the everyday ones.

Each prints Markdown tables; ``eval --gate`` exits with 7 when a test-part metric misses
its threshold.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ingest import ingest_path, read_papers, sample_corpus
from rag.embedding import cpu_has_native_bf16
from rag.errors import BadInput
from ui.options import LLM_BACKENDS
from ui.options import command_settings as _settings


@click.command("eval")
@click.option(
    "--set",
    "gold_set",
    default="bundled",
    show_default=True,
    help="bundled (the sample's hand-written questions), followup (two-turn chats over the sample), asreview "
    "(2,000 ASReview abstracts, with --asreview), scifact (with --scifact), table (the gold tables of papers x "
    "questions: bundled, and ASReview with --asreview), or a JSONL gold set asked of your store.",
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
    "--alone", is_flag=True, help="With --set followup: ask each follow-up without its first turn (the baseline)."
)
@click.option(
    "--collection",
    metavar="NAME",
    help="With a JSONL gold set: the collection it is asked of (the built-in sets have collections of their own).",
)
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
    alone: bool,
    collection: str | None,
    out_dir: Path,
) -> None:
    """Measure retrieval, citation accuracy and abstention against a gold set (dev and test side by side)."""
    from evals.run import run_eval  # deferred: eval and bench only
    from evals.table import run_table_eval  # deferred: eval and bench only

    if gold_set == "table":
        if limit or ablate or ablate_steps or retrieval_only or support or gate or alone or collection:
            raise BadInput("--set table takes --split, --asreview, --replay, --backend and --out only.")
        run_table_eval(
            _settings(backend),
            split=split,
            asreview_path=asreview_path,
            replay=replay,
            out_dir=out_dir,
            echo=click.echo,
        )
        return

    if collection is not None and not Path(gold_set).is_file():
        raise BadInput(
            f"--collection applies to a JSONL gold set asked of your own collection; --set {gold_set} is asked "
            "of its own collection: leave --collection out."
        )
    passed = run_eval(
        _settings(backend, collection),
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
        alone=alone,
        out_dir=out_dir,
        echo=click.echo,
    )
    if not passed:
        sys.exit(7)


@click.group()
def bench() -> None:
    """Measure speed and memory; each command prints a Markdown table (medians of --repeats runs)."""


def _sizes(value: str) -> list[int | None]:
    try:
        return [None if v.strip() == "all" else int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give sizes like 2000,all") from None


def _eval_collection_options(command: Any) -> Any:
    """--set bundled|asreview and --asreview PATH: the eval collection a benchmark runs on."""
    command = click.option(
        "--asreview",
        "asreview_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="With --set asreview: the JSONL(.gz) holding the ASReview records.",
    )(command)
    return click.option(
        "--set", "gold_set", type=click.Choice(["bundled", "asreview"]), default="bundled", show_default=True
    )(command)


def _eval_collection(gold_set: str, asreview_path: Path | None) -> Any:
    """The settings of the eval collection ``gold_set`` names, its papers ingested (nothing is written twice)."""
    from evals.gold import load_asreview  # deferred: eval and bench only
    from evals.run import filled_settings  # deferred: eval and bench only

    if gold_set == "asreview":
        if asreview_path is None:
            raise BadInput("--set asreview needs --asreview PATH: the abstracts.jsonl.gz holding the ASReview records.")
        papers = load_asreview(asreview_path)
    else:
        papers = read_papers(sample_corpus()).papers
    return filled_settings(_settings("embedded"), gold_set, papers, lambda _: None)


@bench.command("table")
@_eval_collection_options
def bench_table_command(gold_set: str, asreview_path: Path | None) -> None:
    """How fast a table fills, cold and warm: the dev gold table's papers and columns, embedded model."""
    from evals.bench_table import bench_table, table_speed  # deferred: eval and bench only
    from evals.table import TABLE_SETS, load_table  # deferred: eval and bench only

    settings = _eval_collection(gold_set, asreview_path)
    gold = load_table(TABLE_SETS[gold_set][0])
    click.echo(
        f"\n{gold_set} dev table: {len(gold.titles)} papers x {len(gold.columns)} columns, {os.cpu_count()} cores:\n"
    )
    click.echo(table_speed(bench_table(settings, gold.titles, gold.columns, echo=click.echo)))


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
    from evals.bench import bench_ingest, ingest_table  # deferred: eval and bench only

    click.echo(f"CPU: {os.cpu_count()} cores, native bfloat16: {'yes' if cpu_has_native_bf16() else 'no'}", err=True)
    results = bench_ingest(
        corpus, _sizes(sizes), repeats=repeats, cases=cases.split(","), echo=lambda m: click.echo(m, err=True)
    )
    for n, rows in results.items():
        click.echo(f"\n{n:,} abstracts, median of {repeats} run(s):\n")
        click.echo(ingest_table(rows))


def _bench_settings(backend: str | None = None) -> Any:
    """The bundled eval's own store (the sample, ingested once), as `papercite eval` uses."""
    from evals.harness import eval_settings  # deferred: eval and bench only

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
    from evals.bench import bench_retrieval, grow_store, scale_settings  # deferred: eval and bench only
    from evals.gold import BUNDLED, load_gold  # deferred: eval and bench only

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


@bench.command("bm25")
@click.option(
    "--source",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="A data directory whose default collection is copied to grow the store (e.g. an eval's).",
)
@click.option(
    "--sizes", default="100000,200000,400000,1000000", show_default=True, help="Chunk counts, comma-separated."
)
def bench_bm25_command(source: Path, sizes: str) -> None:
    """BM25 build time and peak memory as a store grows (under <source>/../grown): linear in the chunks?"""
    from evals.bench_retrieve import bench_bm25_growth  # deferred: eval and bench only

    counts = [int(s) for s in sizes.split(",") if s.strip()]
    echo = lambda m: click.echo(m, err=True)
    rows = bench_bm25_growth(_settings().model_copy(update={"data_dir": source}), counts, echo=echo)
    click.echo("| chunks | build (s) | chunks/s | peak RSS (MB) |\n| ---: | ---: | ---: | ---: |")
    for r in rows:
        click.echo(
            f"| {r['chunks']:,.0f} | {r['seconds']:.0f} | {r['chunks'] / r['seconds']:,.0f} | {r['peak_mb']:,.0f} |"
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
    from evals.bench import bench_answers, bench_cold_ask, bench_concurrency  # deferred: eval and bench only
    from evals.gold import BUNDLED, load_gold  # deferred: eval and bench only
    from evals.harness import stratified  # deferred: eval and bench only

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


@bench.command("readings")
@_eval_collection_options
@click.option(
    "--limit", type=click.IntRange(1), default=24, show_default=True, help="Dev questions, taken evenly over the kinds."
)
def bench_readings_command(gold_set: str, asreview_path: Path | None, limit: int) -> None:
    """Per-paper against one-prompt: first cited finding and whole answer, cold (nothing read) and warm (read ahead)."""
    from evals.bench_readings import bench_modes, modes_table  # deferred: eval and bench only
    from evals.gold import GOLD_SETS, load_gold  # deferred: eval and bench only
    from evals.harness import stratified  # deferred: eval and bench only

    settings = _eval_collection(gold_set, asreview_path)
    questions = [q.question for q in stratified(load_gold(GOLD_SETS[gold_set][0]), limit)]
    rows = bench_modes(settings, questions, echo=lambda m: click.echo(m, err=True))
    click.echo(f"\n{len(questions)} {gold_set} dev questions, embedded model, {os.cpu_count()} cores:\n")
    click.echo(modes_table(rows))


@bench.command("serve")
@click.option("--questions", type=click.IntRange(1), default=5, show_default=True)
def bench_serve_command(questions: int) -> None:
    """Peak memory of a real `papercite serve` with the embedded model, after answering bundled questions (Linux)."""
    from evals.bench import bench_serve_memory  # deferred: eval and bench only
    from evals.gold import BUNDLED, load_gold  # deferred: eval and bench only

    settings = _bench_settings("embedded")
    asked = [q.question for q in load_gold(BUNDLED) if q.kind == "single"][:questions]
    r = bench_serve_memory(settings, asked)
    click.echo(
        "| `papercite serve`, embedded model | questions answered | peak RSS (MB) | RSS after (MB) |\n"
        "| --- | ---: | ---: | ---: |"
    )
    click.echo(f"| this machine | {r['questions']:.0f} | {r['peak_mb']:,.0f} | {r['rss_mb']:,.0f} |")


@bench.command("encoders")
@click.option(
    "--corpus",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="JSONL(.gz) of title and abstract, e.g. ../shared/benchmarks/scale/abstracts.jsonl.gz.",
)
@click.option(
    "--abstracts", type=click.IntRange(1), default=300, show_default=True, help="Time over the chunks of the first N."
)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
@click.option(
    "--cases",
    default="torch-fp32,torch-bf16,onnx-fp32,onnx-int8,openvino-fp32,openvino-bf16,openvino-int8",
    show_default=True,
    help="Which encoder backends to time (ONNX and OpenVINO need `pip install -e '.[encoders]'`).",
)
@click.option(
    "--scifact",
    "scifact_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="SciFact directory (corpus.csv, claims_train.csv), e.g. ../shared/benchmarks/scifact: adds dense nDCG@10.",
)
@click.option(
    "--scifact-claims",
    type=click.IntRange(1),
    help="Score only the first N claims, against their papers and others up to 10N (default: all of SciFact).",
)
def bench_encoders_command(
    corpus: Path, abstracts: int, repeats: int, cases: str, scifact_dir: Path | None, scifact_claims: int | None
) -> None:
    """Chunks per second and SciFact nDCG@10 of MiniLM under torch, ONNX Runtime and OpenVINO, fp32/bf16/int8."""
    from evals.bench_encoders import bench_encoders, encoder_table  # deferred: eval and bench only

    click.echo(f"CPU: {os.cpu_count()} cores, native bfloat16: {'yes' if cpu_has_native_bf16() else 'no'}", err=True)
    rows = bench_encoders(
        _settings(None),
        corpus,
        abstracts=abstracts,
        repeats=repeats,
        cases=cases.split(","),
        scifact_dir=scifact_dir,
        scifact_claims=scifact_claims,
        echo=lambda m: click.echo(m, err=True),
    )
    click.echo(f"\n{rows[0].chunks:,} chunks of the first {abstracts:,} abstracts, median of {repeats} run(s):\n")
    click.echo(encoder_table(rows))
