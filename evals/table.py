"""``papercite eval --set table``: the gold tables, filled by :func:`rag.table`, cell by cell.

Each gold table (``evals/data/table-<collection>-<part>.json``) names its papers and four
columns, and for every cell either the values that count as right or null ("not stated"),
written from the abstracts before any cell was generated. Dev and test parts have
different papers and different columns: a rule tuned on dev's columns meets new ones on test.

A cell is right when what it shows holds one of its gold values (case and hyphens aside,
whole words, so numbers match exactly: "12" is not in "120"). Reported per part:

- cell accuracy: right cells over the cells whose abstract states an answer (a "not stated"
  shown there is a miss, never neutral);
- "not stated" precision (of the cells shown "not stated", how many have no gold answer)
  and recall (of the cells with no gold answer, how many are shown "not stated");
- values shown where the gold says "not stated", and values shown with a number their
  abstract lacks (the table must show none);
- seconds per cell, and until the first row was complete.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.gold import DATA, load_asreview, title_key
from evals.replay import ReplayLLM
from evals.run import filled_settings
from ingest import read_papers, sample_corpus
from ingest.papers import Paper
from rag.answer.cells import Cell, Column, unheld
from rag.answer.verify import evidence_in
from rag.errors import BadInput
from rag.services import Services
from rag.settings import Settings
from rag.table import Table, TablePlan, table_stream
from rag.types import Source

__all__ = ["TABLE_SETS", "GoldTable", "cell_right", "load_table", "run_table_eval", "score_table"]

#: The gold tables, by collection: (development part, frozen test part).
TABLE_SETS: dict[str, tuple[Path, Path]] = {
    name: (DATA / f"table-{name}-dev.json", DATA / f"table-{name}-test.json") for name in ("bundled", "asreview")
}


@dataclass(frozen=True)
class GoldTable:
    """One part of a gold table: its columns, and per paper title each column's accepted values (None: not stated)."""

    collection: str
    part: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, dict[str, tuple[str, ...] | None]], ...]

    @property
    def titles(self) -> list[str]:
        return [title for title, _ in self.rows]


def load_table(path: Path) -> GoldTable:
    """Read a gold table file.

    Raises:
        BadInput: the file is missing, or a row lacks a column's cell.
    """
    if not path.is_file():
        raise BadInput(f"No gold table at {path}: the repository's evals/data holds table-<collection>-<part>.json.")
    raw = json.loads(path.read_text(encoding="utf-8"))
    columns = tuple(Column(c["name"], c["question"]) for c in raw["columns"])
    rows = []
    for row in raw["rows"]:
        cells = {}
        for column in columns:
            if column.name not in row["cells"]:
                raise BadInput(f"{path.name}: the row {row['title']!r} has no cell for {column.name!r}.")
            gold = row["cells"][column.name]
            cells[column.name] = None if gold is None else tuple(gold["accept"])
        rows.append((row["title"], cells))
    return GoldTable(raw["collection"], raw["part"], columns, tuple(rows))


def _folded(text: str) -> str:
    text = text.lower().replace("×", "x").replace("–", "-").replace("—", "-")
    text = re.sub(r"(\d)(times|fold)\b", r"\1 \2", text)  # "1.69times" is "1.69 times"
    return " ".join(re.sub(r"(?<=[a-z0-9])-(?=[a-z])|[\"'()\[\],;]", " ", text).split())


def cell_right(shown: str, accept: Sequence[str]) -> bool:
    """True when ``shown`` holds one of ``accept`` as whole words (case, quotes and a hyphen before a word aside:
    "2-weeks" is "2 weeks")."""
    text = _folded(shown)
    return any(re.search(r"(?<![\w.])" + re.escape(_folded(a)) + r"(?![\w])", text) for a in accept if a.strip())


def score_table(cells: Sequence[Cell], gold: GoldTable, abstracts: dict[str, Source]) -> tuple[dict[str, Any], list]:
    """The part's metrics and one record per cell (what it showed, its gold values, whether it is right)."""
    by_title = {title_key(t): cells for t, cells in gold.rows}
    records = []
    for cell in cells:
        accept = by_title[title_key(cell.title)][cell.column]
        shown_value = cell.status == "stated"
        source = abstracts[title_key(cell.title)]
        lacks = [n for n in unheld(cell.value, source) if n in evidence_in(cell.value).numbers] if shown_value else []
        records.append(
            {
                "part": gold.part,
                "title": cell.title,
                "column": cell.column,
                "shown": cell.shown,
                "status": cell.status,
                "value": cell.value,
                "confidence": cell.confidence,
                "evidence": cell.evidence,
                "reason": cell.reason,
                "gold": list(accept) if accept is not None else None,
                "right": (not shown_value) if accept is None else shown_value and cell_right(cell.value, accept),
                "unsupported_number": bool(lacks),
                "seconds": cell.seconds,
            }
        )
    return _metrics(records), records


def _metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in records if r["gold"] is not None]
    unstated = [r for r in records if r["gold"] is None]
    shown_unstated = [r for r in records if r["status"] != "stated"]
    return {
        "cells": len(records),
        "answerable": len(answerable),
        "not_stated_gold": len(unstated),
        "cell_accuracy": _share(sum(r["right"] for r in answerable), len(answerable)),
        "not_stated_precision": _share(sum(r["gold"] is None for r in shown_unstated), len(shown_unstated)),
        "not_stated_recall": _share(sum(r["status"] != "stated" for r in unstated), len(unstated)),
        "values_where_not_stated": sum(r["status"] == "stated" for r in unstated),
        "unsupported_numbers_shown": sum(r["unsupported_number"] for r in records),
        "seconds_per_cell": _share(sum(r["seconds"] for r in records), len(records)),
    }


def _share(part: float, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


METRICS = (
    ("cell_accuracy", "cell accuracy (answerable cells)"),
    ("not_stated_precision", '"not stated" precision'),
    ("not_stated_recall", '"not stated" recall'),
    ("values_where_not_stated", 'values shown where gold is "not stated"'),
    ("unsupported_numbers_shown", "values shown with a number their abstract lacks"),
    ("seconds_per_cell", "seconds per cell"),
    ("first_row_seconds", "seconds until the first row was complete"),
    ("cells", "cells (answerable / not stated)"),
)


def report_table(summaries: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A Markdown table: one column per collection and part, one row per metric."""
    heads = [f"{collection} {part}" for collection, parts in summaries.items() for part in parts]
    lines = ["| | " + " | ".join(heads) + " |", "| --- |" + " ---: |" * len(heads)]
    for key, label in METRICS:
        values = []
        for parts in summaries.values():
            for m in parts.values():
                if key == "cells":
                    values.append(f"{m['cells']} ({m['answerable']} / {m['not_stated_gold']})")
                else:
                    values.append("n/a" if m.get(key) is None else str(m[key]))
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def run_table_eval(
    base: Settings,
    *,
    split: str = "both",
    asreview_path: Path | None = None,
    replay: Path | None = None,
    out_dir: Path = Path("."),
    echo: Callable[[str], None] = print,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Fill every gold table (bundled; ASReview too when ``asreview_path`` is given), print and write the report."""
    command = "papercite " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    collections: dict[str, Sequence[Paper]] = {"bundled": read_papers(sample_corpus()).papers}
    if asreview_path is not None:
        collections["asreview"] = load_asreview(asreview_path)
    parts = ("dev", "test") if split == "both" else (split,)
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    records: list[dict[str, Any]] = []
    for name, papers in collections.items():
        settings = filled_settings(base, name, papers, echo)
        services = Services(settings)
        if replay is not None:
            services = Services(settings, llm=ReplayLLM(services.backend.llm, services.backend.label, replay))
        for part in parts:
            gold = load_table(TABLE_SETS[name][0 if part == "dev" else 1])
            _check(gold, papers)
            summary, cells = _fill(gold, services, echo)
            summaries.setdefault(name, {})[part] = summary
            records += [{"collection": name, **r} for r in cells]
    text = report_table(summaries)
    echo(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table-report.md").write_text(f"# Table eval\n\nCommand: `{command}`\n\n{text}\n", encoding="utf-8")
    with (out_dir / "table-cells.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    echo(f"wrote {out_dir / 'table-report.md'}, {out_dir / 'table-cells.jsonl'}")
    return summaries


def _fill(gold: GoldTable, services: Services, echo: Callable[[str], None]) -> tuple[dict[str, Any], list]:
    """Fill one gold part's table; its metrics (with the first row's seconds) and per-cell records."""
    started = time.perf_counter()
    cells: list[Cell] = []
    first_row = None
    plan = None
    for item in table_stream(gold.columns, papers=gold.titles, limit=None, services=services):
        if isinstance(item, TablePlan):
            plan = item
        elif isinstance(item, Cell):
            cells.append(item)
            if first_row is None and len(cells) == len(gold.columns):
                first_row = round(time.perf_counter() - started, 2)
        elif isinstance(item, Table):
            echo(f"{gold.collection} {gold.part}: {len(cells)} cells in {item.seconds:.0f} s")
    assert plan is not None
    summary, records = score_table(cells, gold, {title_key(s.title): s for s in plan.papers})
    summary["first_row_seconds"] = first_row
    return summary, records


def _check(gold: GoldTable, papers: Sequence[Paper]) -> None:
    """Refuse a gold table naming a paper its collection lacks.

    Raises:
        BadInput: names the part and the title.
    """
    known = {title_key(p.title) for p in papers}
    if missing := [t for t in gold.titles if title_key(t) not in known]:
        raise BadInput(
            f"The {gold.collection} {gold.part} gold table names a paper its collection lacks: {missing[0]!r}."
        )
