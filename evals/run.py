"""``papercite eval``: pick the collection and gold set, run it, print and write the report, apply the gate."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evals.ablation import ablation_table, run_ablation
from evals.gold import GOLD_SETS, GoldQuestion, load_asreview, load_gold, load_scifact, title_key
from evals.harness import (
    THRESHOLDS,
    EvalRun,
    check_gate,
    eval_settings,
    gated_summary,
    run_answers,
    run_retrieval,
    stratified,
    summarize,
)
from evals.judge import judge_agreement, make_judge
from evals.metrics import normalize
from evals.replay import ReplayLLM
from evals.report import metrics_table, retrieval_table, write_report
from ingest import ingest_papers, read_papers, sample_corpus
from ingest.papers import Paper
from rag.errors import BadInput
from rag.services import Services
from rag.settings import Settings

__all__ = ["Split", "filled_settings", "run_eval"]

Split = Literal["dev", "test", "both"]
Key = Callable[[str, str], str]


@dataclass(frozen=True)
class _Setup:
    """What one eval runs on: its store's settings, its question parts, the gold abstracts, how papers are keyed."""

    settings: Settings
    parts: dict[str, list[GoldQuestion]]
    abstracts: dict[str, str]
    key: Key


def run_eval(
    base: Settings,
    *,
    gold_set: str = "bundled",
    split: Split = "both",
    scifact_dir: Path | None = None,
    asreview_path: Path | None = None,
    limit: int | None = None,
    replay: Path | None = None,
    ablate: bool = False,
    ablate_steps: Sequence[str] = (),
    retrieval_only: bool = False,
    support: bool = False,
    gate: bool = False,
    alone: bool = False,
    out_dir: Path = Path("."),
    echo: Callable[[str], None] = print,
) -> bool:
    """Run one eval; return False when ``gate`` is set and a threshold is missed.

    Sets: ``bundled`` (the sample corpus and its hand-written questions) and ``asreview``
    (2,000 ASReview abstracts read from ``asreview_path``, and their hand-written
    questions), each in a data directory of its own and each with a development and a
    frozen test part, reported side by side (``split`` picks one); ``scifact`` (needs
    ``scifact_dir``); or a path to a JSONL gold set asked of the user's own store.
    ``limit`` takes that many questions of each part, spread evenly over the kinds.
    ``replay`` names a generation cache (:mod:`evals.replay`) for tuning and ablations;
    ``ablate`` answers every question once per step of the answer path switched off
    (:mod:`evals.ablation`; ``ablate_steps``: only those) and writes ``ablation-<set>.md``
    instead of the report. ``followup`` holds two-turn chats over the bundled collection;
    ``alone`` asks their follow-ups without the first turn, the baseline.
    The gate applies to the test part.

    Raises:
        BadInput: an unknown set, or a third-party set without its path.
    """
    command = "papercite " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    settings, parts, papers, key = _load(base, gold_set, split, scifact_dir, asreview_path, echo)
    parts = {name: stratified(questions, limit) for name, questions in parts.items()}
    setup = _Setup(settings, parts, {p.id: p.abstract for p in papers}, key)

    run = EvalRun(gold_set if gold_set in (*GOLD_SETS, "scifact") else Path(gold_set).name)
    if ablate or ablate_steps:
        _ablate(setup, run.name, command, replay or out_dir / "generations.jsonl", ablate_steps, out_dir, echo)
        return True
    if retrieval_only:
        run.retrieval = run_retrieval([q for qs in parts.values() for q in qs], settings, key=key)
        echo(retrieval_table(run.retrieval))
        failures = None
    else:
        _answer(run, setup, replay, support, echo, alone)
        echo(metrics_table(run.summaries, THRESHOLDS if gate else None))
        failures = check_gate(gated_summary(run.summaries)) if gate else None
    return _report(run, out_dir, command, gate, failures, echo)


def _ablate(
    setup: _Setup,
    name: str,
    command: str,
    replay: Path,
    steps: Sequence[str],
    out_dir: Path,
    echo: Callable[[str], None],
) -> None:
    """Answer every part once per step switched off (``steps``: only those); print and write ``ablation-<name>.md``."""

    rows = run_ablation(
        setup.settings,
        setup.parts,
        replay=replay,
        abstracts=setup.abstracts,
        key=setup.key,
        steps=steps or None,
        echo=echo,
    )
    table = ablation_table(rows)
    echo(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ablation-{name}.md"
    path.write_text(f"# Ablation: {name}\n\nCommand: `{command}`\n\n{table}\n", encoding="utf-8")
    echo(f"wrote {path}")


def _answer(
    run: EvalRun, setup: _Setup, replay: Path | None, support: bool, echo: Callable[[str], None], alone: bool = False
) -> None:
    """Answer every part into ``run``: its records, a summary per part, the settings the answers used.

    ``replay`` answers through that generation cache; ``support`` judges each sentence's
    support and adds the judge's agreement with the hand labels to every summary.
    """
    llm = None
    if replay is not None:
        backend = Services(setup.settings).backend
        llm = ReplayLLM(backend.llm, backend.label, replay)
    judge = None
    if support:
        judge = make_judge(setup.settings)
    for name, questions in setup.parts.items():
        answered = run_answers(
            questions,
            setup.settings,
            key=setup.key,
            judge=judge,
            llm=llm,
            abstracts=setup.abstracts,
            split=name,
            alone=alone,
        )
        run.records += answered.records
        run.summaries[name] = summarize(answered.records)
        run.settings = answered.settings
    if judge is not None:
        agreement = judge_agreement(judge)
        for summary in run.summaries.values():
            summary["judge_agreement"] = agreement["agreement"]
        echo(
            f"support judge agrees with {agreement['labels']:.0f} hand labels {agreement['agreement']:.0%} of the time"
        )


def _report(
    run: EvalRun, out_dir: Path, command: str, gate: bool, failures: list[str] | None, echo: Callable[[str], None]
) -> bool:
    """Write the report files and say what the gate decided; False when it failed."""
    paths = write_report(run, out_dir, run.name, command, THRESHOLDS if gate else {}, failures)
    echo("wrote " + ", ".join(str(p) for p in paths))
    if failures:
        echo("eval gate FAILED:\n  " + "\n  ".join(failures))
        return False
    if failures is not None:
        echo("eval gate passed")
    return True


def _load(
    base: Settings,
    gold_set: str,
    split: Split,
    scifact_dir: Path | None,
    asreview_path: Path | None,
    echo: Callable[[str], None],
) -> tuple[Settings, dict[str, list[GoldQuestion]], Sequence[Paper], Key]:
    """The eval's settings (its own store, filled), its question parts, its papers and how papers are keyed."""
    by_title: Key = lambda _pid, title: title_key(title)  # gold sets name papers by title
    if gold_set in GOLD_SETS:
        if gold_set == "asreview":
            if asreview_path is None:
                raise BadInput(
                    "--set asreview needs --asreview PATH: the abstracts.jsonl.gz holding the ASReview records."
                )
            papers: Sequence[Paper] = load_asreview(asreview_path)
        else:
            papers = read_papers(sample_corpus()).papers
        dev, test = GOLD_SETS[gold_set]
        names = ("dev", "test") if split == "both" else (split,)
        parts = {name: load_gold(dev if name == "dev" else test) for name in names}
        _check_gold(parts, papers)
        store = "asreview" if gold_set == "asreview" else "bundled"  # follow-ups are asked of the bundled store
        return filled_settings(base, store, papers, echo), parts, papers, by_title
    if gold_set == "scifact":
        if scifact_dir is None:
            raise BadInput("--set scifact needs --scifact DIR: the directory holding corpus.csv and claims_train.csv.")
        papers, questions = load_scifact(scifact_dir)
        return filled_settings(base, "scifact", papers, echo), {"all": questions}, papers, lambda pid, _title: pid
    if Path(gold_set).is_file():
        return base, {"all": load_gold(gold_set)}, [], by_title
    raise BadInput(f"--set {gold_set!r} is not bundled, followup, asreview, scifact or a JSONL file of questions.")


def _check_gold(parts: dict[str, list[GoldQuestion]], papers: Sequence[Paper]) -> None:
    """Refuse a gold set that names a paper the collection lacks or a fact its gold abstracts lack.

    Raises:
        BadInput: names the question and what is missing (a wrong collection file, or a gold error).
    """

    by_key = {title_key(p.title): p for p in papers}
    for name, questions in parts.items():
        for q in questions:
            if missing := sorted(q.gold - by_key.keys()):
                raise BadInput(
                    f"{name} question {q.id} cites a paper this collection lacks ({missing[0]!r}): "
                    "check the collection file given, or fix the gold set."
                )
            text = normalize(" ".join(by_key[k].abstract for k in q.gold))
            if absent := [f for f in q.facts if normalize(f) not in text]:
                raise BadInput(f"{name} question {q.id}: fact {absent[0]!r} is in none of its gold abstracts.")


def filled_settings(base: Settings, name: str, papers: Sequence[Paper], echo: Callable[[str], None]) -> Settings:
    """Settings for the eval's own data directory, with ``papers`` ingested (idempotent: a rerun writes nothing)."""

    settings = eval_settings(base, name)
    report = ingest_papers(papers, settings=settings, source=f"{name} collection", progress=False)
    if report.added or report.updated:
        echo(report.summary())
    return settings
