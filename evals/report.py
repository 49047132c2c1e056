"""The eval's outputs: a table for the terminal, eval-report.md, a JSON of every question, a PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.harness import EvalRun

__all__ = ["metrics_table", "retrieval_table", "write_report"]

# (key in the summary, label, format)
ROWS = [
    ("questions", "questions", "{:.0f}"),
    ("recall@1", "Recall@1", "{:.3f}"),
    ("recall@5", "Recall@5", "{:.3f}"),
    ("recall@10", "Recall@10", "{:.3f}"),
    ("mrr", "MRR", "{:.3f}"),
    ("ndcg@10", "nDCG@10", "{:.3f}"),
    ("citation_precision", "citation precision", "{:.3f}"),
    ("citation_recall", "citation recall", "{:.3f}"),
    ("citation_validity", "citation validity", "{:.3f}"),
    ("support", "support (judged sentences)", "{:.3f}"),
    ("judge_agreement", "judge agreement with hand labels", "{:.3f}"),
    ("facts", "answer facts", "{:.3f}"),
    ("abstention", "abstention (out of scope)", "{:.3f}"),
    ("wrong_abstention", "wrong abstention (answerable)", "{:.3f}"),
    ("seconds_p50", "seconds per answer p50", "{:.1f}"),
    ("seconds_p95", "seconds per answer p95", "{:.1f}"),
    ("first_token_p50", "first token p50 (s)", "{:.1f}"),
    ("prompt_tokens_mean", "prompt tokens (mean)", "{:.0f}"),
]


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def metrics_table(summary: dict[str, float | None], thresholds: dict[str, float] | None = None) -> str:
    """The summary as a Markdown table, with the gate's threshold beside each gated metric."""
    thresholds = thresholds or {}
    lines = ["| metric | value | gate |", "| --- | ---: | ---: |"]
    for key, label, pattern in ROWS:
        if key in summary:
            gate = f"≥ {thresholds[key]:.2f}" if key in thresholds else ""
            lines.append(f"| {label} | {_fmt(summary[key], pattern)} | {gate} |")
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


def write_report(run: EvalRun, out_dir: Path, title: str, command: str, thresholds: dict[str, float],
                 failures: list[str] | None = None) -> list[Path]:
    """Write eval-report.md, eval-report.json and eval-report.png into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js, png = out_dir / "eval-report.md", out_dir / "eval-report.json", out_dir / "eval-report.png"
    parts = [f"# papercite eval: {title}", "", f"Command: `{command}`", ""]
    if run.summary:
        parts += ["## Answers", "", metrics_table(run.summary, thresholds), ""]
        if failures is not None:
            parts += ["Gate: " + ("passed" if not failures else "FAILED: " + "; ".join(failures)), ""]
        parts += _worst(run.records)
    if run.retrieval:
        parts += ["## Retrieval (paper level)", "", retrieval_table(run.retrieval), ""]
    md.write_text("\n".join(parts), encoding="utf-8")
    js.write_text(json.dumps({"summary": run.summary, "retrieval": run.retrieval, "settings": run.settings,
                              "questions": run.records}, indent=1, ensure_ascii=False), encoding="utf-8")
    _plot(run, png, title)
    return [md, js, png]


def _worst(records: list[dict[str, Any]]) -> list[str]:
    misses = [r for r in records if (r["kind"] == "out_of_scope") != r["abstained"]
              or (r["citation_recall"] is not None and r["citation_recall"] < 1)]
    if not misses:
        return []
    lines = ["## Questions the answer missed", "", "| id | kind | question | cited | abstained |",
             "| --- | --- | --- | --- | --- |"]
    for r in misses:
        cited = "; ".join(c["title"][:50] for c in r["citations"]) or "–"
        lines.append(f"| {r['id']} | {r['kind']} | {r['question']} | {cited} | {r['abstained']} |".replace("\n", " "))
    return [*lines, ""]


def _plot(run: EvalRun, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    panels = [p for p in (run.summary, run.retrieval) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    col = 0
    if run.summary:
        keys = [(k, label) for k, label, _ in ROWS if k in run.summary and run.summary[k] is not None
                and not k.startswith(("seconds", "first_token", "prompt", "questions", "judge"))]
        ax = axes[0][col]
        ax.barh([label for _, label in keys][::-1], [run.summary[k] for k, _ in keys][::-1], color="#2563eb")
        ax.set_xlim(0, 1)
        ax.set_title(f"{title}: answers")
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
