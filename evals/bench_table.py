"""``papercite bench table``: how fast a table fills on this machine, cold and warm.

The dev gold table's papers and columns of a collection, filled twice with the model loaded:

- ``cold``: nothing read before: the saved paper states are deleted and the model's prompt
  cache in memory is off, so each paper's abstract is read at its first cell (its later
  cells reuse it: the runtime keeps the last prompt it read).
- ``warm``: the table's papers read ahead under a cell's instructions (what an earlier table
  over the same papers leaves kept), then the same table.

Reported: seconds until the first row is complete, cells per second over the table, and the
median and 95th percentile of one cell. Every figure comes from the real model and store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from evals.metrics import percentile
from rag.answer.cells import CELL_PROMPT, Cell, Column
from rag.llm.backends import chat_once, reading_llms
from rag.services import Services
from rag.settings import Settings
from rag.table import Table, TablePlan, table_stream
from rag.warm import read_ahead

__all__ = ["bench_table", "table_speed"]


def bench_table(
    settings: Settings, titles: Sequence[str], columns: Sequence[Column], echo: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """The cold and warm rows (see the module's docstring) for ``titles`` x ``columns`` on ``settings``' store."""
    cold = Services(settings.updated(llm={"backend": "embedded", "prompt_cache_mib": 0}))
    kept = cold.backend.llm.prefix_store  # type: ignore[attr-defined]
    load = reading_llms(cold.backend, 1, 1).verdict
    chat_once(cold.backend, load, [ChatMessage(role=MessageRole.USER, content="Hello")])  # loaded before timing
    if kept is not None:
        kept.budget_bytes, budget = 0, kept.budget_bytes
        kept.evict()
        kept.budget_bytes = budget
    rows = [_row("cold (nothing read)", cold, titles, columns, echo)]
    warmed = Services(settings.updated(llm={"backend": "embedded"}))
    started = time.perf_counter()
    plan = next(table_stream(columns, papers=list(titles), limit=None, services=warmed))
    assert isinstance(plan, TablePlan)
    llms = reading_llms(warmed.backend, 1, warmed.settings.tuning.reading.top_logprobs)
    for source in plan.papers:  # what an earlier table over these papers leaves kept
        read_ahead(warmed.backend, llms, source, CELL_PROMPT)
    echo(f"  read {len(plan.papers)} papers ahead in {time.perf_counter() - started:.1f} s")
    rows.append(_row("warm (papers read ahead)", warmed, titles, columns, echo))
    return rows


def _row(
    name: str, services: Services, titles: Sequence[str], columns: Sequence[Column], echo: Callable[[str], None]
) -> dict[str, Any]:
    started = time.perf_counter()
    cells: list[Cell] = []
    first_row = None
    for item in table_stream(columns, papers=list(titles), limit=None, services=services):
        if isinstance(item, Cell):
            cells.append(item)
            if first_row is None and len(cells) == len(columns):
                first_row = time.perf_counter() - started
        elif isinstance(item, Table):
            echo(f"  {name}: {len(cells)} cells in {item.seconds:.1f} s")
    total = time.perf_counter() - started
    seconds = [c.seconds for c in cells]
    return {
        "state": name,
        "papers": len(titles),
        "cells": len(cells),
        "first_row": first_row,
        "cells_per_second": len(cells) / total if total else 0.0,
        "cell_p50": percentile(seconds, 50),
        "cell_p95": percentile(seconds, 95),
        "stated": sum(c.status == "stated" for c in cells),
    }


def table_speed(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    head = (
        "| state | papers x columns | first row complete (s) | cells per second | one cell p50 (s) | p95 (s) | stated |"
    )
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['state']} | {r['papers']} x {r['cells'] // max(r['papers'], 1)} | {r['first_row']:.1f} | "
            f"{r['cells_per_second']:.2f} | {r['cell_p50']:.2f} | {r['cell_p95']:.2f} | {r['stated']} of {r['cells']} |"
        )
    return "\n".join(lines)
