"""Run a gold set through ``rag.ask`` (as users do) or the retrievers alone, and score it.

Each gold set gets its own data directory under ``<data_dir>/evals/<name>``, so an
eval never touches the user's collection; ingest is idempotent, so a second run
reuses the store. Metric definitions are in :mod:`evals.metrics`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from evals.gold import GoldQuestion, title_key
from evals.metrics import (
    citation_precision,
    citation_recall,
    echoes_scaffolding,
    fact_coverage,
    marker_numbers,
    mean,
    mrr,
    ndcg_at_k,
    percentile,
    recall_at_k,
    unsupported_number_sentences,
)
from rag.answer.ask import ask
from rag.answer.citations import split_sentences
from rag.llm.backends import models_dir
from rag.retrieve import group_by_paper, hybrid_retriever, retrieve
from rag.services import Services
from rag.settings import Settings
from rag.store.names import DEFAULT
from rag.types import Answer

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

__all__ = [
    "AT_MOST",
    "THRESHOLDS",
    "EvalRun",
    "check_gate",
    "eval_settings",
    "gated_summary",
    "run_answers",
    "run_retrieval",
    "stratified",
    "summarize",
]

#: The CI gate on the fixed 12-question subsets of the two test sets (3 of each kind), answered
#: in the default mode: each metric must reach its value (those in AT_MOST must stay at or under
#: it). Validity and unsupported numbers are the promises and are absolute. The others are a
#: regression gate about one question below what the subsets measured in per-paper mode at the
#: commit that made it the default (bundled / ASReview: precision 0.741 / 0.667, recall 0.778 /
#: 0.537, not-covered abstention 1 / 2 of 3, wrongful abstention 2 of 9 each, false premises
#: answered 2 / 1 of 3), not the issue's targets. One-prompt measured precision 0.778 and recall
#: 0.833 / 0.667 on the same subsets.
THRESHOLDS: dict[str, float] = {
    "citation_validity": 1.0,
    "unsupported_numbers": 0.0,
    "citation_precision": 0.55,
    "citation_recall": 0.42,
    "abstention": 0.30,
    "wrong_abstention": 0.34,
    "premise_answered": 0.30,
    "recall@5": 0.90,
}
AT_MOST = {"wrong_abstention", "unsupported_numbers", "echo", "premise_abstained"}


@dataclass
class EvalRun:
    """What one eval produced: per-question records and the summary metrics.

    ``summaries`` holds one summary per column of the report: ``dev`` and ``test`` for a
    hand-written gold set, one column for any other set. ``summary`` is the gated one.
    """

    name: str
    records: list[dict[str, Any]] = field(default_factory=list)
    summaries: dict[str, dict[str, float | None]] = field(default_factory=dict)
    retrieval: dict[str, dict[str, float]] = field(default_factory=dict)  # mode -> metric -> value
    settings: dict[str, Any] = field(default_factory=dict)


def eval_settings(base: Settings, name: str, **updates: Any) -> Settings:
    """``base`` with its own data directory for gold set ``name`` (and section updates)."""
    # The eval's own store, but the model file joined once for the user's data directory.
    # Its default collection there: the user's own collections never hold an eval's papers, nor list them.
    own = base.model_copy(update={"data_dir": base.data_dir / "evals" / name}).updated(store={"collection": DEFAULT})
    return own.updated(**{**updates, "llm": {"models_dir": models_dir(base), **updates.get("llm", {})}})


def stratified(questions: Sequence[GoldQuestion], limit: int | None) -> list[GoldQuestion]:
    """The first ``limit`` questions taken round-robin over kinds, so any limit keeps the mix."""
    if limit is None or limit >= len(questions):
        return list(questions)
    by_kind: dict[str, list[GoldQuestion]] = {}
    for q in questions:
        by_kind.setdefault(q.kind, []).append(q)
    picked: list[GoldQuestion] = []
    while len(picked) < limit:
        for kind in list(by_kind):
            if by_kind[kind] and len(picked) < limit:
                picked.append(by_kind[kind].pop(0))
    return sorted(picked, key=questions.index)


def run_answers(
    questions: Sequence[GoldQuestion],
    settings: Settings,
    *,
    key: Callable[[str, str], str] | None = None,
    judge: Callable[[str, Sequence[str]], bool] | None = None,
    llm: LLM | None = None,
    abstracts: dict[str, str] | None = None,
    split: str = "",
    alone: bool = False,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> EvalRun:
    """Ask every question through ``rag.ask`` and score answers, citations and retrieval.

    A question with a ``history`` is a follow-up: its earlier questions are asked first,
    each as a follow-up to the one before, and it is asked with the last answer as
    ``history``. Only the follow-up is scored; the record keeps the first turn's
    first-token seconds beside its own.

    Args:
        questions: the gold set.
        settings: the eval's settings (its own data directory, already ingested).
        key: maps (paper_id, title) to the key gold sets use; by default the normalised title.
        judge: (sentence, cited passages) -> supported?; None skips the support metric.
        llm: a llama-index LLM to answer with instead of the configured backend.
        abstracts: each paper's whole abstract by paper id, for the unsupported-number
            check; papers missing from it are checked against the passages retrieved.
        split: "dev" or "test", recorded with each question.
        alone: ask follow-ups without their earlier turns (the baseline a follow-up is measured against).
        log: receives one progress line per question.
    """
    key = key or (lambda _pid, title: title_key(title))
    run = EvalRun("answers", settings=settings.model_dump(mode="json"))
    for i, q in enumerate(questions, start=1):
        earlier = None
        for asked in () if alone else q.history:
            earlier = ask(asked, settings=settings, llm=llm, history=earlier)
        previous = q.history[-1] if q.history and not alone else None
        ranking = [key(s.paper_id, s.title) for s in retrieve(q.question, 10, previous=previous, settings=settings)]
        answer = ask(q.question, settings=settings, llm=llm, history=earlier)
        record = _score(q, answer, ranking, key, judge, abstracts or {})
        record["split"] = split
        if q.history:
            record |= {"history": list(q.history), "pattern": q.pattern, "alone": alone}
            record["history_first_token"] = earlier.timings.first_token if earlier else None
        if replayed := getattr(llm, "take_replayed_seconds", None):  # a ReplayLLM: add what generation cost
            record["seconds"] += replayed()
        run.records.append(record)
        log(
            f"[{i}/{len(questions)}] {q.id} {q.kind:13} cited={len(answer.citations)} "
            f"{'abstained' if answer.abstained else 'answered':9} {answer.timings.total:5.1f} s"
        )
    run.summaries = {split or "all": summarize(run.records)}
    return run


def _score(
    q: GoldQuestion,
    answer: Answer,
    ranking: list[str],
    key: Callable[[str, str], str],
    judge: Callable[[str, Sequence[str]], bool] | None,
    abstracts: dict[str, str],
) -> dict[str, Any]:
    by_number = {s.number: s for s in answer.sources}
    cited = [key(c.paper_id, c.title) for c in answer.citations]
    answered = q.answerable and not answer.abstained
    whole = {s.number: abstracts.get(s.paper_id) or " ".join(s.passages) for s in answer.sources}
    facts = fact_coverage(answer.text, q.facts) if q.answerable else None
    # Validity, checked apart from rag's parser: every [n] in the text and every listed
    # citation must be a retrieved source, under the same number and title.
    checks = [n in by_number for n in marker_numbers(answer.text)]
    checks += [
        c.number in by_number and by_number[c.number].paper_id == c.paper_id and by_number[c.number].title == c.title
        for c in answer.citations
    ]
    support = _support(answer, judge) if judge and not answer.abstained else []
    similarity = {s.number: s.similarity for s in answer.sources}
    return {
        "id": q.id,
        "kind": q.kind,
        "near_miss": q.near_miss,
        "question": q.question,
        "gold_titles": list(q.gold_titles),
        "facts": list(q.facts),
        "answer": answer.text,
        "abstained": answer.abstained,
        "citations": [{"number": c.number, "title": c.title, "attributed": c.attributed} for c in answer.citations],
        "retrieved": [s.title for s in answer.sources],
        "model": answer.model,
        "seconds": answer.timings.total,
        "first_token": answer.timings.first_token,
        "prompt_tokens": answer.prompt_tokens,
        "cached_tokens": answer.cached_tokens,
        "dropped_markers": answer.dropped_markers,
        **_ranking_scores(q, ranking),
        # An abstention on an answerable question is a miss: it scores 0, not "no answer".
        "citation_precision": (citation_precision(cited, q.gold) or 0.0) if q.answerable else None,
        "citation_recall": citation_recall(cited, q.gold) if q.answerable else None,
        "answered_precision": citation_precision(cited, q.gold) if answered else None,
        "answered_recall": citation_recall(cited, q.gold) if answered else None,
        "valid_citations": sum(checks),
        "checked_citations": len(checks),
        "facts_found": facts,
        "premise_answered": (answered and bool(set(cited) & q.gold)) if q.kind == "false_premise" else None,
        "premise_corrected": (answered and bool(set(cited) & q.gold) and bool(facts))
        if q.kind == "false_premise"
        else None,
        "unsupported_numbers": [] if answer.abstained else unsupported_number_sentences(answer.text, whole),
        "sentences": [asdict(s) for s in answer.sentences],
        "mode": answer.mode,
        "confidence_from": answer.confidence_from,
        "readings": [
            asdict(r) | {"gold": key(r.paper_id, r.title) in q.gold, "similarity": similarity.get(r.number)}
            for r in answer.readings
        ],
        **_corrections(q, answer, key),
        "echo": echoes_scaffolding(answer.text, [c.title for c in answer.citations]) if not answer.abstained else None,
        "support": support,
    }


def _ranking_scores(q: GoldQuestion, ranking: list[str]) -> dict[str, float | None]:
    """Paper-level retrieval scores of one question's ranking; None each for an unanswerable question."""
    if not q.answerable:
        return dict.fromkeys(("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"))
    return {
        "recall@1": recall_at_k(ranking, q.gold, 1),
        "recall@5": recall_at_k(ranking, q.gold, 5),
        "recall@10": recall_at_k(ranking, q.gold, 10),
        "mrr": mrr(ranking, q.gold),
        "ndcg@10": ndcg_at_k(ranking, q.gold, 10),
    }


def _corrections(q: GoldQuestion, answer: Answer, key: Callable[[str, str], str]) -> dict[str, int]:
    """What verification did to this answer's citations, judged against the gold papers.

    A correction is right when it moved a sentence onto a gold paper it did not cite,
    wrong when it moved a sentence off a gold paper onto none; removed sentences are
    the unsupported ones left out of the text.
    """
    gold = {s.number for s in answer.sources if key(s.paper_id, s.title) in q.gold}
    right = wrong = 0
    for s in answer.sentences:
        if s.verdict == "corrected":
            right += bool(set(s.citations) & gold) and not set(s.written) & gold
            wrong += bool(set(s.written) & gold) and not set(s.citations) & gold
    removed = sum(1 for s in answer.sentences if not s.shown and s.verdict == "unsupported")
    return {
        "corrected": sum(s.verdict == "corrected" for s in answer.sentences),
        "corrected_right": right,
        "corrected_wrong": wrong,
        "removed_unsupported": removed,
    }


def _support(answer: Answer, judge: Callable[[str, Sequence[str]], bool]) -> list[dict[str, Any]]:

    by_number = {s.number: s for s in answer.sources}
    judged = []
    for sentence in split_sentences(answer.text):
        numbers = [n for n in marker_numbers(sentence) if n in by_number]
        passages = [p for n in numbers for p in by_number[n].passages]
        supported = bool(passages) and judge(sentence, passages)
        judged.append({"sentence": sentence, "cited": numbers, "supported": supported})
    return judged


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The run's metrics: means over the questions each metric applies to."""
    answerable = [r for r in records if r["kind"] != "out_of_scope"]
    uncovered = [r for r in records if r["kind"] == "out_of_scope"]
    checked = sum(r["checked_citations"] for r in records)
    sentences = [s for r in records for s in r["support"]]
    seconds = [r["seconds"] for r in records if r["model"]]
    firsts = [r["first_token"] for r in records if r["first_token"] is not None]
    tokens = [r["prompt_tokens"] for r in records if r["prompt_tokens"]]
    summary: dict[str, float | None] = {"questions": float(len(records))}
    for metric in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"):
        summary[metric] = mean(r[metric] for r in answerable)
    summary["citation_precision"] = mean(r["citation_precision"] for r in answerable)
    summary["citation_recall"] = mean(r["citation_recall"] for r in answerable)
    summary["answered_precision"] = mean(r["answered_precision"] for r in answerable)
    summary["answered_recall"] = mean(r["answered_recall"] for r in answerable)
    summary["multi_recall"] = mean(r["citation_recall"] for r in answerable if r["kind"] == "multi")
    summary["citation_validity"] = sum(r["valid_citations"] for r in records) / checked if checked else None
    summary["support"] = sum(s["supported"] for s in sentences) / len(sentences) if sentences else None
    summary["facts"] = mean(r["facts_found"] for r in answerable)
    summary["facts_single"] = mean(r["facts_found"] for r in answerable if r["kind"] == "single")
    summary["abstention"] = mean(float(r["abstained"]) for r in uncovered)
    summary["abstention_near_miss"] = mean(float(r["abstained"]) for r in uncovered if r.get("near_miss"))
    summary["wrong_abstention"] = mean(float(r["abstained"]) for r in answerable)
    premises = [r for r in records if r["kind"] == "false_premise"]
    summary["premise_answered"] = mean(float(r["premise_answered"]) for r in premises)
    summary["premise_corrected"] = mean(float(r["premise_corrected"]) for r in premises)
    summary["premise_abstained"] = mean(float(r["abstained"]) for r in premises)
    summary["unsupported_numbers"] = float(sum(len(r["unsupported_numbers"]) for r in records))
    summary["echo"] = mean(float(r["echo"]) for r in records if r["echo"] is not None)
    for count in ("corrected", "corrected_right", "corrected_wrong", "removed_unsupported"):
        summary[count] = float(sum(r.get(count, 0) for r in records))
    summary["seconds_p50"] = percentile(seconds, 50)
    summary["seconds_p95"] = percentile(seconds, 95)
    summary["first_token_p50"] = percentile(firsts, 50)
    read = [sum(x["verdict"] != "unread" for x in r["readings"]) for r in records if r.get("readings")]
    if read:
        summary["papers_read_mean"] = sum(read) / len(read)
    summary["prompt_tokens_mean"] = mean(tokens)
    return summary


def gated_summary(summaries: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    """The summary the gate applies to: the test column when there is one, else the only one."""
    return summaries.get("test") or next(iter(summaries.values()), {})


def check_gate(summary: dict[str, float | None], thresholds: dict[str, float] = THRESHOLDS) -> list[str]:
    """The thresholds ``summary`` misses, one line each (empty: the gate passes)."""
    failures = []
    for metric, bound in thresholds.items():
        value = summary.get(metric)
        if value is None:
            failures.append(f"{metric}: not measured (needs at least one question of the right kind)")
        elif metric in AT_MOST and value > bound + 1e-9:
            failures.append(f"{metric} = {value:.3f}, above the limit {bound:.2f}")
        elif metric not in AT_MOST and value < bound - 1e-9:
            failures.append(f"{metric} = {value:.3f}, below the threshold {bound:.2f}")
    return failures


def run_retrieval(
    questions: Sequence[GoldQuestion],
    settings: Settings,
    *,
    depth: int = 100,
    key: Callable[[str, str], str] = lambda pid, _title: pid,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, dict[str, float]]:
    """Dense, BM25 and hybrid rankings side by side: Recall@k, MRR, nDCG@10 per mode.

    ``settings`` must point at a store that already holds the corpus; papers are
    keyed by ``key(paper_id, title)`` (the paper id by default). Each retriever returns 3x ``depth`` chunks so that at
    least ``depth`` papers are ranked.
    """
    services = Services(settings.updated(tuning={"retrieval": {"candidates": depth * 3}}))
    hybrid = hybrid_retriever(services)
    modes = {"dense": hybrid.dense, "bm25": hybrid.sparse, "hybrid": hybrid}
    results: dict[str, dict[str, float]] = {}
    for mode, retriever in modes.items():
        if retriever is None:
            continue
        started = time.perf_counter()
        rows = []
        for q in questions:
            chunks = [c for c in retriever.retrieve(q.question) if mode != "bm25" or (c.score or 0) > 0]
            ranking = [key(s.paper_id, s.title) for s in group_by_paper(chunks, depth, 1)]
            rows.append((ranking, q.gold))
        results[mode] = {
            "nDCG@10": mean(ndcg_at_k(r, g, 10) for r, g in rows) or 0.0,
            "Recall@1": mean(recall_at_k(r, g, 1) for r, g in rows) or 0.0,
            "Recall@10": mean(recall_at_k(r, g, 10) for r, g in rows) or 0.0,
            "Recall@100": mean(recall_at_k(r, g, 100) for r, g in rows) or 0.0,
            "MRR": mean(mrr(r, g) for r, g in rows) or 0.0,
            "ms/query": 1000 * (time.perf_counter() - started) / max(1, len(rows)),
        }
        log(f"{mode}: nDCG@10 {results[mode]['nDCG@10']:.3f} over {len(rows)} claims")
    return results
