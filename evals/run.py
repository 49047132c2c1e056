"""``papercite eval``: pick the gold set and store, run it, print and write the report, apply the gate."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from evals.gold import BUNDLED, load_gold, load_scifact, title_key
from evals.harness import THRESHOLDS, EvalRun, check_gate, eval_settings, run_answers, run_retrieval, stratified
from evals.report import metrics_table, retrieval_table, write_report
from rag.errors import BadInput
from rag.settings import Settings

__all__ = ["run_eval"]


def run_eval(
    base: Settings,
    *,
    gold_set: str = "bundled",
    scifact_dir: Path | None = None,
    limit: int | None = None,
    retrieval_only: bool = False,
    support: bool = False,
    gate: bool = False,
    out_dir: Path = Path("."),
    echo: Callable[[str], None] = print,
) -> bool:
    """Run one eval; return False when ``gate`` is set and a threshold is missed.

    Sets: ``bundled`` (the sample corpus and its hand-written questions, in a data
    directory of its own), ``scifact`` (needs ``scifact_dir``; ingested once into its
    own data directory), or a path to a JSONL gold set asked of the user's own store.

    Raises:
        BadInput: an unknown set, or SciFact without its directory.
    """
    command = "papercite " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    key = lambda _pid, title: title_key(title)  # gold sets name papers by title
    if gold_set == "bundled":
        from ingest import ingest_path, sample_corpus

        settings = eval_settings(base, "bundled")
        ingest_path(sample_corpus(), settings=settings, progress=False)
        questions = load_gold(BUNDLED)
    elif gold_set == "scifact":
        if scifact_dir is None:
            raise BadInput("--set scifact needs --scifact DIR: the directory holding corpus.csv and claims_train.csv.")
        from ingest import ingest_papers

        settings = eval_settings(base, "scifact")
        papers, questions = load_scifact(scifact_dir)
        echo(ingest_papers(papers, settings=settings, source="SciFact corpus").summary())
        key = lambda pid, _title: pid  # SciFact names papers by doc id
    elif Path(gold_set).is_file():
        settings, questions = base, load_gold(gold_set)
    else:
        raise BadInput(f"--set {gold_set!r} is not bundled, scifact or a JSONL file of questions.")
    questions = stratified(questions, limit)

    run = EvalRun(gold_set if gold_set in ("bundled", "scifact") else Path(gold_set).name)
    if retrieval_only:
        run.retrieval = run_retrieval(questions, settings, key=key)
        echo(retrieval_table(run.retrieval))
        failures = None
    else:
        judge = None
        if support:
            from evals.judge import judge_agreement, make_judge

            judge = make_judge(settings)
        answered = run_answers(questions, settings, key=key, judge=judge)
        run.records, run.summary, run.settings = answered.records, answered.summary, answered.settings
        if judge is not None:
            agreement = judge_agreement(judge)
            run.summary["judge_agreement"] = agreement["agreement"]
            echo(f"support judge agrees with {agreement['labels']:.0f} hand labels {agreement['agreement']:.0%} of the time")
        echo(metrics_table(run.summary, THRESHOLDS if gate else None))
        failures = check_gate(run.summary) if gate else None
    paths = write_report(run, out_dir, run.name, command, THRESHOLDS if gate else {}, failures)
    echo("wrote " + ", ".join(str(p) for p in paths))
    if failures:
        echo("eval gate FAILED:\n  " + "\n  ".join(failures))
        return False
    if failures is not None:
        echo("eval gate passed")
    return True
