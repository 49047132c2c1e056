"""The eval's outputs: a table for the terminal, eval-report.md, a JSON of every question, a PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.harness import AT_MOST, EvalRun, gated_summary

__all__ = ["metrics_table", "retrieval_table", "write_report"]

# (key in the summary, label, format)
ROWS = [
    ("questions", "questions", "{:.0f}"),
    ("recall@1", "Recall@1", "{:.3f}"),
    ("recall@5", "Recall@5", "{:.3f}"),
    ("recall@10", "Recall@10", "{:.3f}"),
    ("mrr", "MRR", "{:.3f}"),
    ("ndcg@10", "nDCG@10", "{:.3f}"),
    ("citation_precision", "citation precision (abstention on answerable = 0)", "{:.3f}"),
    ("citation_recall", "citation recall (abstention on answerable = 0)", "{:.3f}"),
    ("answered_precision", "precision over answered questions", "{:.3f}"),
    ("answered_recall", "recall over answered questions", "{:.3f}"),
    ("multi_recall", "multi-paper citation recall", "{:.3f}"),
    ("citation_validity", "citation validity", "{:.3f}"),
    ("support", "support (judged sentences)", "{:.3f}"),
    ("judge_agreement", "judge agreement with hand labels", "{:.3f}"),
    ("facts", "answer facts (answerable)", "{:.3f}"),
    ("facts_single", "answer facts (single-paper)", "{:.3f}"),
    ("abstention", "abstention (not covered)", "{:.3f}"),
    ("abstention_near_miss", "abstention (not covered, near misses)", "{:.3f}"),
    ("wrong_abstention", "wrongful abstention (answerable)", "{:.3f}"),
    ("premise_answered", "false premise answered from the right paper (not abstained)", "{:.3f}"),
    ("premise_corrected", "  ... and stating its true value (a gold fact)", "{:.3f}"),
    ("premise_abstained", "false premise abstained", "{:.3f}"),
    ("unsupported_numbers", "shown sentences with a number no cited abstract has", "{:.0f}"),
    ("echo", "answers echoing the prompt's layout or a whole title", "{:.3f}"),
    ("corrected", "citations verification corrected (sentences)", "{:.0f}"),
    ("corrected_right", "  moved onto a gold paper", "{:.0f}"),
    ("corrected_wrong", "  moved off a gold paper", "{:.0f}"),
    ("removed_unsupported", "unsupported sentences removed", "{:.0f}"),
    ("seconds_p50", "seconds per answer p50", "{:.1f}"),
    ("seconds_p95", "seconds per answer p95", "{:.1f}"),
    ("first_token_p50", "first token (per_paper: first cited finding) p50 (s)", "{:.1f}"),
    ("papers_read_mean", "papers read per question (per_paper)", "{:.1f}"),
    ("prompt_tokens_mean", "prompt tokens (mean)", "{:.0f}"),
]


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def metrics_table(summaries: dict[str, dict[str, float | None]], thresholds: dict[str, float] | None = None) -> str:
    """The summaries side by side (dev, test) as a Markdown table, with the gate beside each gated metric.

    The gate applies to the test column (or the only column).
    """
    thresholds = thresholds or {}
    columns = list(summaries)
    lines = ["| metric | " + " | ".join(columns) + " | gate |", "| --- |" + " ---: |" * (len(columns) + 1)]
    for key, label, pattern in ROWS:
        if any(key in s for s in summaries.values()):
            gate = f"{'≤' if key in AT_MOST else '≥'} {thresholds[key]:.2f}" if key in thresholds else ""
            cells = " | ".join(_fmt(s.get(key), pattern) for s in summaries.values())
            lines.append(f"| {label} | {cells} | {gate} |")
    return "\n".join(lines)


def retrieval_table(results: dict[str, dict[str, float]]) -> str:
    """Dense vs BM25 vs hybrid as a Markdown table."""
    if not results:
        return ""
    columns = list(next(iter(results.values())))
    lines = ["| mode | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for mode, values in results.items():
        cells = [f"{values[c]:.1f}" if c.startswith("ms") else f"{values[c]:.3f}" for c in columns]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    run: EvalRun,
    out_dir: Path,
    title: str,
    command: str,
    thresholds: dict[str, float],
    failures: list[str] | None = None,
) -> list[Path]:
    """Write eval-report.md, eval-report.json and eval-report.png into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js, png = out_dir / "eval-report.md", out_dir / "eval-report.json", out_dir / "eval-report.png"
    parts = [f"# papercite eval: {title}", "", f"Command: `{command}`", ""]
    if run.summaries:
        parts += ["## Answers", "", metrics_table(run.summaries, thresholds), ""]
        if failures is not None:
            parts += ["Gate: " + ("passed" if not failures else "FAILED: " + "; ".join(failures)), ""]
        parts += _worst(run.records)
    if run.retrieval:
        parts += ["## Retrieval (paper level)", "", retrieval_table(run.retrieval), ""]
    md.write_text("\n".join(parts), encoding="utf-8")
    report = {
        "summaries": run.summaries,
        "retrieval": run.retrieval,
        "settings": run.settings,
        "questions": run.records,
    }
    js.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    _plot(run, png, title)
    return [md, js, png]


def _worst(records: list[dict[str, Any]]) -> list[str]:
    misses = [
        r
        for r in records
        if (r["kind"] == "out_of_scope") != r["abstained"]
        or (r["citation_recall"] is not None and r["citation_recall"] < 1)
    ]
    if not misses:
        return []
    lines = [
        "## Questions the answer missed",
        "",
        "| part | id | kind | question | cited | abstained |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in misses:
        cited = "; ".join(c["title"][:50] for c in r["citations"]) or "–"
        row = f"| {r.get('split') or '–'} | {r['id']} | {r['kind']} | {r['question']} | {cited} | {r['abstained']} |"
        lines.append(row.replace("\n", " "))
    return [*lines, ""]


def _plot(run: EvalRun, path: Path, title: str) -> None:
    import matplotlib  # heavy: only the report's plot

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt  # heavy: only the report's plot

    summary = gated_summary(run.summaries)
    panels = [p for p in (summary, run.retrieval) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    col = 0
    if summary:
        # Shares only, not counts or seconds.
        keys = [
            (k, label)
            for k, label, pattern in ROWS
            if summary.get(k) is not None and pattern == "{:.3f}" and not k.startswith(("judge", "echo"))
        ]
        ax = axes[0][col]
        ax.barh([label for _, label in keys][::-1], [summary[k] for k, _ in keys][::-1], color="#2563eb")
        ax.set_xlim(0, 1)
        ax.set_title(f"{title}: answers ({next(k for k, v in run.summaries.items() if v is summary)})")
        col += 1
    if run.retrieval:
        ax = axes[0][col]
        metrics = [m for m in next(iter(run.retrieval.values())) if not m.startswith("ms")]
        width = 0.8 / len(run.retrieval)
        for i, (mode, values) in enumerate(run.retrieval.items()):
            ax.bar([x + i * width for x in range(len(metrics))], [values[m] for m in metrics], width, label=mode)
        ax.set_xticks([x + width * (len(run.retrieval) - 1) / 2 for x in range(len(metrics))], metrics)
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title(f"{title}: retrieval")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
