"""``papercite eval --ablate``: what each step of the answer path is worth, one step off at a time.

Every row answers the same questions through ``rag.ask`` with one step of
``rag.answer.steps`` switched off (``tuning.checks.skip``). Generations go through a
:class:`~evals.replay.ReplayLLM`, so a row generates only the prompts no earlier
row made: switching off a step after generation costs no generation at all, and a
step before it (the gates, context selection) generates only for the questions it
changes. Seconds are what an answer costs, the generation's time taken from when it
was first made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evals.gold import GoldQuestion
from evals.harness import run_answers, summarize
from evals.replay import ReplayLLM
from rag.answer.steps import POST_STEPS, PRE_STEPS
from rag.errors import BadInput
from rag.services import Services
from rag.settings import Settings

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

__all__ = ["ABLATED", "ablation_table", "run_ablation"]

#: The steps switched off in turn (resolve_markers and compose always run; judge is off by default).
ABLATED: tuple[str, ...] = (
    *(s.name for s in PRE_STEPS if not s.required),
    "retry",
    *(s.name for s in POST_STEPS if not s.required and s.name != "judge"),
)
_COLUMNS = (
    ("citation_precision", "precision", "{:.3f}"),
    ("citation_recall", "recall", "{:.3f}"),
    ("wrong_abstention", "wrongful abstention", "{:.3f}"),
    ("abstention", "not-covered abstention", "{:.3f}"),
    ("premise_answered", "false premise answered", "{:.3f}"),
    ("unsupported_numbers", "unsupported numbers shown", "{:.0f}"),
    ("echo", "layout or title echoed", "{:.3f}"),
    ("seconds_mean", "seconds", "{:.1f}"),
)


def run_ablation(
    settings: Settings,
    parts: dict[str, Sequence[GoldQuestion]],
    *,
    replay: Path,
    abstracts: dict[str, str],
    key: Callable[[str, str], str],
    model: LLM | None = None,
    steps: Sequence[str] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Summaries per row ("all steps", then "no <step>") and per part (dev, test).

    ``model`` answers instead of the configured backend (tests pass a scripted one);
    ``steps`` limits the rows to those steps (default: every step in :data:`ABLATED`).

    Raises:
        BadInput: a step that cannot be switched off.
    """
    if unknown := sorted(set(steps or ()) - set(ABLATED)):
        raise BadInput(
            f"--ablate-step {unknown[0]}: not a step that can be switched off; use one of {', '.join(ABLATED)}."
        )
    if model is None:
        backend = Services(settings).backend
        model, label = backend.llm, backend.label
    else:
        label = model.metadata.model_name
    llm = ReplayLLM(model, label, replay)
    rows: dict[str, dict[str, dict[str, float | None]]] = {}
    for off in (None, *(s for s in ABLATED if steps is None or s in steps)):
        row = "all steps" if off is None else f"no {off}"
        skip = (*settings.tuning.checks.skip, off) if off else settings.tuning.checks.skip
        conf = settings.updated(tuning={"checks": {"skip": skip}})
        rows[row] = {}
        for name, questions in parts.items():
            run = run_answers(questions, conf, key=key, llm=llm, abstracts=abstracts, split=name, log=lambda _: None)
            summary = summarize(run.records)
            seconds = [r["seconds"] for r in run.records]
            summary["seconds_mean"] = sum(seconds) / len(seconds) if seconds else None
            rows[row][name] = summary
        hits, misses = llm.counts
        echo(f"{row}: done ({hits} generations replayed, {misses} made so far)")
    return rows


def ablation_table(rows: dict[str, dict[str, dict[str, float | None]]]) -> str:
    """One Markdown table: a row per ablation, a column per metric and part."""
    parts = list(next(iter(rows.values())))
    header = ["step off"] + [f"{label} ({part})" for _, label, _ in _COLUMNS for part in parts]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for row, by_part in rows.items():
        cells = []
        for key, _, pattern in _COLUMNS:
            for part in parts:
                value = by_part[part].get(key)
                cells.append("–" if value is None else pattern.format(value))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
