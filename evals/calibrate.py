"""Choose the per-paper thresholds from dev runs: replay the decision over recorded readings.

A per-paper eval run (``papercite eval ... --out DIR`` with ``PAPERCITE_ANSWER__MODE=per_paper``)
records every paper's reading (confidence, finding, whether the finding was verified)
with whether the paper is gold. Which papers are cited is then only a rule over those
readings (:func:`rag.answer.per_paper.decide`), so every candidate rule is scored here without
generating again::

    python -m evals.calibrate DEV_RUN_1/eval-report.json DEV_RUN_2/eval-report.json

It prints, for each candidate, citation precision and recall (an abstention on an
answerable question scores 0), not-covered abstention and wrongful abstention on each run
and their mean, the objective the issue names. Only dev runs belong here: a test run is
reported, never tuned on. The readings must have been made with a ``finding_floor`` at or
below every threshold tried (a paper under it has no finding and cannot be cited).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag.answer.context import asks_for_several
from rag.answer.per_paper import decide
from rag.answer.readings import RESTATED
from rag.settings import ReadingSettings
from rag.types import PaperReading

__all__ = ["Candidate", "score", "sweep"]

_FIELDS = {f for f in PaperReading.__dataclass_fields__}


@dataclass(frozen=True)
class Candidate:
    """One decision rule: the reading settings that :func:`rag.answer.per_paper.decide` reads."""

    accept: float
    lead: float
    floor: float
    several_margin: float
    read_margin: float
    top_only: bool = True
    quote_restated: bool = False

    def settings(self) -> ReadingSettings:
        return ReadingSettings(
            accept=self.accept,
            lead=self.lead,
            floor=self.floor,
            several_margin=self.several_margin,
            top_only=self.top_only,
            quote_restated=self.quote_restated,
        )


def _readings(record: dict[str, Any], read_margin: float, quote: bool = False) -> tuple[list[PaperReading], set[str]]:
    """The record's readings as ``PaperReading`` (those within ``read_margin`` of the best retrieved
    paper, unless the question asks for several), and the titles of the gold ones among them.

    With ``quote``, a finding rejected for restating the question counts as supported: the
    product then shows the abstract's own sentence instead (``tuning.reading.quote_restated``).
    """
    rows = [r for r in record.get("readings") or [] if r["verdict"] != "unread"]
    best = max((r.get("similarity") or 0.0 for r in rows), default=0.0)
    several = asks_for_several(record["question"])
    kept = [
        r
        for i, r in enumerate(rows)
        if i == 0 or several or r.get("similarity") is None or r["similarity"] >= best - read_margin
    ]
    readings = [PaperReading(**{k: v for k, v in r.items() if k in _FIELDS}) for r in kept]
    if quote:
        readings = [replace(r, supported=True) if RESTATED in r.reason else r for r in readings]
    return readings, {r["title"] for r in kept if r.get("gold")}


def score(records: Sequence[dict[str, Any]], candidate: Candidate) -> dict[str, float]:
    """The metrics ``records`` would have had under ``candidate``."""
    conf = candidate.settings()
    precision, recall, wrong, covered, multi = [], [], [], [], []
    for record in records:
        readings, _ = _readings(record, candidate.read_margin, candidate.quote_restated)
        cited = {r.title for r in decide(readings, conf, several=asks_for_several(record["question"])) if r.cited}
        gold = set(record["gold_titles"])
        if record["kind"] == "out_of_scope":
            covered.append(float(not cited))
            continue
        hits = len(cited & gold)
        precision.append(hits / len(cited) if cited else 0.0)
        recall.append(hits / len(gold))
        wrong.append(float(not cited))
        if record["kind"] == "multi":
            multi.append(hits / len(gold))
    result = {
        "precision": _mean(precision),
        "recall": _mean(recall),
        "abstention": _mean(covered),
        "wrong_abstention": _mean(wrong),
        "multi_recall": _mean(multi),
    }
    result["objective"] = (
        result["precision"] + result["recall"] + result["abstention"] + 1 - result["wrong_abstention"]
    ) / 4
    return result


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def sweep(runs: dict[str, list[dict[str, Any]]], grid: Iterable[Candidate]) -> list[tuple[Candidate, dict[str, Any]]]:
    """Every candidate scored on every run, best mean objective first."""
    rows = []
    for candidate in grid:
        scores = {name: score(records, candidate) for name, records in runs.items()}
        mean = sum(s["objective"] for s in scores.values()) / len(scores)
        rows.append((candidate, {"mean": mean, **scores}))
    return sorted(rows, key=lambda row: -row[1]["mean"])


def _grid() -> Iterable[Candidate]:
    steps = [round(0.2 + 0.025 * i, 3) for i in range(13)]
    for accept, lead, margin, read, top, quote in itertools.product(
        steps, (1.0, 0.1), (1.0, 0.15, 0.1, 0.05), (0.12, 1.0), (True, False), (False, True)
    ):
        yield Candidate(accept, lead, 0.2, margin, read, top, quote)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="eval-report.json of per-paper dev runs")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    runs = {}
    for path in args.reports:
        report = json.loads(path.read_text(encoding="utf-8"))
        runs[path.parent.name] = [r for r in report["questions"] if r.get("split", "dev") == "dev"]
    rows = sweep(runs, _grid())
    names = list(runs)
    head = "| accept | lead | several | read margin | top only | quote | mean | " + " | ".join(
        f"{n} P / R / NC / WA" for n in names
    )
    print(head + " |\n|" + " ---: |" * (7 + len(names)))
    for candidate, s in rows[: args.top]:
        cells = [
            " / ".join(f"{s[n][m]:.3f}" for m in ("precision", "recall", "abstention", "wrong_abstention"))
            for n in names
        ]
        print(
            f"| {candidate.accept} | {candidate.lead} | {candidate.several_margin} | {candidate.read_margin} | "
            f"{candidate.top_only} | {candidate.quote_restated} | {s['mean']:.3f} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
