"""``papercite bench readings``: the per-paper path's speed against the one-prompt path's, cold and warm.

Three rows over the same questions, each with the model loaded (as the page runs):

- ``one_prompt``: today's path, every question new to the model.
- ``per_paper, cold``: nothing read before: before each question the saved paper states
  are deleted and the model's prompt cache in memory is off, so every paper is read anew.
- ``per_paper, warm``: the collection read ahead (``papercite warm``), then the questions.

The per-paper rows' first time is the first *cited* finding: when the first paper that the
answer ends up citing had been read (what a page shows first that stays). An abstention has
none and is left out of that column. Every figure comes from the real model and store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from evals.metrics import percentile
from rag.answer.ask import ask
from rag.services import Services
from rag.settings import Settings
from rag.warm import warm

__all__ = ["bench_modes", "modes_table"]


def bench_modes(
    settings: Settings, questions: Sequence[str], echo: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """The three rows (see the module's docstring) over ``questions`` on ``settings``' collection."""
    one = Services(settings.updated(answer={"mode": "one_prompt"}))
    cold = Services(settings.updated(answer={"mode": "per_paper"}, llm={"prompt_cache_mib": 0}))
    warmed = Services(settings.updated(answer={"mode": "per_paper"}))
    ask("Which of these papers make neural networks cheaper to run?", services=one)  # load and warm the model
    rows = [_row("one_prompt", one, questions, echo)]
    kept = cold.backend.llm.prefix_store  # type: ignore[attr-defined]

    def forget() -> None:
        kept.budget_bytes, budget = 0, kept.budget_bytes
        kept.evict()
        kept.budget_bytes = budget

    rows.append(_row("per_paper, cold", cold, questions, echo, before_each=forget))
    started = time.perf_counter()
    report = warm(warmed)
    echo(f"  warm: {report.summary()}")
    rows.append(_row("per_paper, warm", warmed, questions, echo) | {"warm_seconds": time.perf_counter() - started})
    return rows


def _row(
    name: str,
    services: Services,
    questions: Sequence[str],
    echo: Callable[[str], None],
    *,
    before_each: Callable[[], None] | None = None,
) -> dict[str, Any]:
    first, total, evaluated, read, abstained = [], [], [], [], 0
    for i, question in enumerate(questions, start=1):
        if before_each is not None:
            before_each()
        answer = ask(question, services=services)
        total.append(answer.timings.total)
        if answer.timings.first_token is None:
            abstained += 1
        else:
            first.append(answer.timings.first_token)
        if answer.prompt_tokens:
            evaluated.append(answer.prompt_tokens - (answer.cached_tokens or 0))
        read.append(sum(r.verdict != "unread" for r in answer.readings))
        echo(f"  {name} [{i}/{len(questions)}] {answer.timings.total:5.1f} s  {question[:60]}")
    return {
        "mode": name,
        "questions": len(questions),
        "no_first": abstained,
        "first_p50": percentile(first, 50),
        "first_p95": percentile(first, 95),
        "total_p50": percentile(total, 50),
        "total_p95": percentile(total, 95),
        "evaluated_p50": percentile(evaluated, 50),
        "read_mean": sum(read) / len(read) if read else 0.0,
    }


def modes_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""

    def cell(value: float | None, spec: str = ".1f") -> str:
        return "–" if value is None else format(value, spec)

    head = (
        "| path | first cited finding / first word p50 (s) | p95 (s) | whole answer p50 (s) | p95 (s) | "
        "prompt tokens evaluated p50 | papers read per question | questions without one |"
    )
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {cell(r['first_p50'])} | {cell(r['first_p95'])} | {cell(r['total_p50'])} | "
            f"{cell(r['total_p95'])} | {cell(r['evaluated_p50'], '.0f')} | {r['read_mean']:.1f} | "
            f"{r['no_first']} of {r['questions']} |"
        )
    return "\n".join(lines)
