"""What the page shows, as plain functions from ``rag`` values to HTML or Markdown.

Every piece of text that came from a paper or a model is escaped here before it is
wrapped in markup, so a title like ``<script>...`` is shown, never run. Nothing in
this module imports Gradio, so it is tested without a browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from rag.answer.citations import CITE
from rag.answer.context import question_words
from rag.answer.policy import stem
from rag.table import Cell, TablePlan
from rag.types import Answer, PaperReading, Reading, Sentence, Source

__all__ = [
    "answer_markdown",
    "collection_markdown",
    "example_questions",
    "highlight",
    "reading_html",
    "reading_markdown",
    "readings_markdown",
    "similar_html",
    "sources_html",
    "streaming_markdown",
    "table_html",
    "upload_report_markdown",
]

_WORD = re.compile(r"(\w+)")


def highlight(passage: str, question: str) -> str:
    """The passage as escaped HTML with the question's content words in ``<mark>``."""
    stems = question_words(question)
    out = []
    for i, piece in enumerate(_WORD.split(passage)):
        escaped = html.escape(piece)
        out.append(f"<mark>{escaped}</mark>" if i % 2 and stem(piece) in stems else escaped)
    return "".join(out)


def streaming_markdown(text: str) -> str:
    """The model's words so far, escaped, with a cursor: what the chat shows mid-answer."""
    return html.escape(text) + " ▌"


def answer_markdown(answer: Answer) -> str:
    """The checked answer for the chat: each sentence with its verdict, ``[n]`` markers as badges.

    A badge names its paper when hovered. A dashed badge is a citation papercite moved
    or added (hover: why). A sentence no retrieved abstract supports is shown struck
    through with a warning sign, saying why when hovered (``PAPERCITE_ANSWER__UNSUPPORTED=mark``),
    or left out and listed, folded, under the answer (the default).
    """
    removed = [s for s in answer.sentences if not s.shown and s.verdict == "unsupported"]
    if answer.abstained:
        return (
            f"**{html.escape(answer.text)}** The nearest papers papercite found are listed "
            f"under Sources, marked as not answering it.{_removed(removed)}\n\n{_meta_line(answer)}"
        )
    titles = {c.number: c.title for c in answer.citations}
    if not answer.sentences:  # an Answer built by hand, without verification
        body = _badges(
            html.escape(answer.text, quote=False), titles, dashed={c.number for c in answer.citations if c.attributed}
        )
        return f"{body}\n\n{_meta_line(answer)}"
    parts = []
    for sentence in (s for s in answer.sentences if s.shown):
        dashed = set(sentence.citations) - set(sentence.written)
        text = _badges(html.escape(sentence.text, quote=False), titles, dashed, sentence.reason)
        if sentence.verdict == "unsupported":
            why = html.escape(f"Unsupported: {sentence.reason}", quote=True)
            text = f'<span class="pc-unsupported" title="{why}">⚠ {text}</span>'
        parts.append(text)
    return f"{' '.join(parts)}{_removed(removed)}\n\n{_meta_line(answer)}"


def _badges(escaped: str, titles: dict[int, str], dashed: set[int], reason: str = "") -> str:
    def badge(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in titles:  # cannot happen after resolve_markers; shown plain if it did
            return match.group(0)
        tip = titles[n] + (f" (papercite's citation: {reason})" if n in dashed and reason else "")
        kind = "pc-cite pc-attributed" if n in dashed else "pc-cite"
        return f'<span class="{kind}" title="{html.escape(tip, quote=True)}">[{n}]</span>'

    return CITE.sub(badge, escaped)


def _removed(sentences: Sequence[Sentence]) -> str:
    if not sentences:
        return ""
    items = "".join(
        f"<li>{html.escape(CITE.sub('', s.text).strip())} <i>({html.escape(s.reason)})</i></li>" for s in sentences
    )
    label = f"{len(sentences)} sentence{'s' if len(sentences) > 1 else ''} left out: no retrieved abstract supports"
    them = "them" if len(sentences) > 1 else "it"
    return f'\n\n<details class="pc-removed"><summary>{label} {them}</summary><ul>{items}</ul></details>'


def _meta_line(answer: Answer) -> str:
    parts = [html.escape(answer.model or "no model asked: nothing in the collection is close to the question")]
    if answer.timings.first_token is not None:
        first = "first finding" if answer.mode == "per_paper" else "first words"
        parts.append(f"{first} after {answer.timings.first_token:.1f} s")
    if answer.readings:
        read = sum(r.verdict != "unread" for r in answer.readings)
        parts.append(
            f"{read} abstract{'s' if read != 1 else ''} read one at a time (verdicts by {answer.confidence_from})"
        )
    parts.append(f"{answer.timings.total:.1f} s in all")
    if answer.notice:
        parts.append(html.escape(answer.notice))
    if any(c.attributed for c in answer.citations) or any(
        s.verdict == "corrected" for s in answer.sentences if s.shown
    ):
        parts.append("dashed badges: citations papercite checked and moved or added (hover for why)")
    return f'<span class="pc-meta">{" · ".join(parts)}</span>'


def sources_html(answer: Answer) -> str:
    """The sources panel: cited papers first, then those retrieved but not cited; in per-paper
    mode each with what its reading found (verdict, confidence, finding, why it is or is not cited)."""
    by_number = {s.number: s for s in answer.sources}
    found = {r.number: r for r in answer.readings}
    if answer.abstained:
        cards = "".join(_card(s, answer.question, "pc-nearest", reading=found.get(s.number)) for s in answer.sources)
        return (
            '<div class="pc-sources"><p class="pc-notice">The collection does not cover this '
            "question. Nearest papers found; <b>they do not answer it</b>:</p>"
            f"{cards or '<p>No papers at all.</p>'}</div>"
        )
    cited = [by_number[c.number] for c in answer.citations if c.number in by_number]
    cited_numbers = {s.number for s in cited}
    others = [s for s in answer.sources if s.number not in cited_numbers]
    parts = [f'<div class="pc-sources"><h4>Cited ({len(cited)})</h4>']
    parts += [_card(s, answer.question, "pc-cited", reading=found.get(s.number)) for s in cited]
    if others:
        parts.append(f"<h4>Retrieved, not cited ({len(others)})</h4>")
        parts += [_card(s, answer.question, "pc-uncited", reading=found.get(s.number)) for s in others]
    parts.append("</div>")
    return "".join(parts)


def reading_markdown(reading: Reading) -> str:
    """The chat's status line while the model reads, until its first words replace it."""
    n = len(reading.sources)
    return f"*Reading {n} abstract{'s' if n != 1 else ''}…*"


def reading_html(reading: Reading, done: Sequence[PaperReading] = ()) -> str:
    """The sources panel while the model reads: the papers it was given, each one's best sentence marked,
    and (per-paper mode) what each reading found as it ends.

    The final answer's panel (:func:`sources_html`) replaces it.
    """
    found = {r.number: r for r in done}
    cards = "".join(
        _card(s, reading.question, "pc-reading", best, reading=found.get(s.number))
        for s, best in zip(reading.sources, reading.best_sentences, strict=True)
    )
    return (
        f'<div class="pc-sources"><h4>Reading ({len(reading.sources)})</h4>'
        '<p class="pc-note">The model is reading these abstracts; in each, the sentence '
        f"that best matches the question is marked.</p>{cards}</div>"
    )


def readings_markdown(reading: Reading, done: Sequence[PaperReading]) -> str:
    """The chat's message while papers are read one at a time: each finding so far, most confident first.

    Which of them the answer cites is settled when every paper has been read; the final
    answer (:func:`answer_markdown`) replaces this.
    """
    status = f"*Read {len(done)} of {len(reading.sources)} abstracts…*"
    found = sorted((r for r in done if r.finding and r.supported), key=lambda r: -(r.confidence or 0.0))
    lines = []
    for r in found:
        badge = f'<span class="pc-cite" title="{html.escape(r.title, quote=True)}">[{r.number}]</span>'
        sure = f" <i>({r.confidence:.2f})</i>" if r.confidence is not None else ""
        lines.append(f"- {html.escape(r.finding)} {badge}{sure}")
    return "\n".join([status, *lines])


def similar_html(title: str, sources: Sequence[Source]) -> str:
    """The sources panel for "more like this": the papers nearest to ``title``'s, no LLM involved."""
    cards = "".join(_card(s, "", "pc-similar") for s in sources)
    return (
        f'<div class="pc-sources"><h4>More like “{html.escape(title)}” ({len(sources)})</h4>'
        '<p class="pc-note">The papers of the collection nearest to it in meaning, closest first.</p>'
        f"{cards or '<p>No other papers in the collection.</p>'}</div>"
    )


def table_html(plan: TablePlan, cells: Sequence[Cell], *, done: bool = False) -> str:
    """The Table tab: a progress bar, then the table filled so far. A stated cell opens (click) to the
    abstract sentence it rests on; a "not stated" one to why; a cell not read yet shows an ellipsis."""
    total = plan.cells
    status = "Done" if done else "Reading"
    head = "".join(f"<th>{html.escape(c.name)}</th>" for c in plan.columns)
    by_place = {(c.row, c.column): c for c in cells}
    rows = []
    for paper in plan.papers:
        year = f' <span class="pc-why">({paper.year})</span>' if paper.year else ""
        tds = "".join(_table_cell(by_place.get((paper.number, c.name))) for c in plan.columns)
        rows.append(f'<tr><td class="pc-paper">{html.escape(paper.title)}{year}</td>{tds}</tr>')
    notice = f'<p class="pc-notice">{html.escape(plan.notice)}</p>' if plan.notice else ""
    return (
        f'<div class="pc-table">{notice}<p class="pc-progress">'
        f'<progress value="{len(cells)}" max="{total}"></progress> {status}: {len(cells)} of {total} cells</p>'
        f"<table><thead><tr><th>Paper</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _table_cell(cell: Cell | None) -> str:
    if cell is None:
        return '<td class="pc-cell pc-pending">…</td>'
    sure = f"{cell.confidence:.2f} sure the abstract answers this. " if cell.confidence is not None else ""
    if cell.status == "stated":
        return (
            f'<td class="pc-cell pc-stated"><details><summary>{html.escape(cell.value)}</summary>'
            f"<blockquote>{html.escape(cell.evidence)}</blockquote>"
            f'<span class="pc-why">{html.escape(sure)}From the abstract of “{html.escape(cell.title)}”.</span>'
            "</details></td>"
        )
    said = f" The model wrote “{html.escape(cell.value)}”, which the abstract does not hold." if cell.value else ""
    return (
        f'<td class="pc-cell pc-none"><details><summary>not stated</summary>'
        f'<span class="pc-why">{html.escape(cell.reason)}.{said}</span></details></td>'
    )


def _card(source: Source, question: str, kind: str, best: str = "", *, reading: PaperReading | None = None) -> str:
    title = html.escape(source.title)
    if source.url and source.url.startswith(("https://", "http://")):
        title = f'<a href="{html.escape(source.url, quote=True)}" target="_blank" rel="noopener noreferrer">{title}</a>'
    byline = []
    if source.authors:
        names = ", ".join(source.authors[:3]) + (" et al." if len(source.authors) > 3 else "")
        byline.append(html.escape(names))
    if source.year:
        byline.append(str(source.year))
    if source.similarity is not None:
        byline.append(f"similarity {source.similarity:.2f}")
    if kind != "pc-similar":  # a similar paper's score is its similarity
        byline.append(f"fused score {source.score:.4f}")
    passages = "".join(f"<blockquote>{_passage(p, question, best)}</blockquote>" for p in source.passages)
    if kind not in ("pc-cited", "pc-reading"):  # the evidence, and what the model reads, show; the rest stay folded
        passages = f"<details><summary>passage</summary>{passages}</details>"
    return (
        f'<div class="pc-source {kind}" data-number="{source.number}">'
        f'<div class="pc-title"><span class="pc-cite">[{source.number}]</span> {title}</div>'
        f'<div class="pc-byline">{" · ".join(byline)}</div>{_verdict(reading)}{passages}</div>'
    )


def _verdict(reading: PaperReading | None) -> str:
    """One paper's reading beside its card: the verdict, how sure, the finding, and why it is or is not cited."""
    if reading is None:
        return ""
    sure = f", {reading.confidence:.2f} sure" if reading.confidence is not None else ""
    head = {"yes": "Read: answers", "no": "Read: does not answer", "unread": "Not read"}[reading.verdict]
    # An unsupported finding is not shown, here either: only why it was left out.
    finding = f" “{html.escape(reading.finding)}”" if reading.finding and reading.supported else ""
    why = reading.reason.removeprefix("not read: ") if reading.verdict == "unread" else reading.reason
    note = f' <span class="pc-why">{html.escape(why)}</span>' if why else ""
    return (
        f'<div class="pc-verdict pc-{reading.verdict}" data-verdict="{reading.verdict}">'
        f"<b>{head}{sure}</b>{finding}{note}</div>"
    )


def _passage(passage: str, question: str, best: str) -> str:
    """The passage highlighted, with ``best`` (one of its sentences) also marked whole."""
    at = passage.find(best) if best else -1
    if at < 0:
        return highlight(passage, question)
    end = at + len(best)
    return (
        f'{highlight(passage[:at], question)}<mark class="pc-best">{highlight(best, question)}</mark>'
        f"{highlight(passage[end:], question)}"
    )


def collection_markdown(papers: int, chunks: int, embedding_model: str | None, llm: str) -> str:
    """The collection panel's summary."""
    if not papers:
        return (
            "**The collection is empty.** Upload a JSONL, CSV, BibTeX or page-text file below, "
            "or run `papercite ingest --sample` for the bundled 84 papers."
        )
    return (
        f"**{papers:,} papers** in {chunks:,} chunks  \n"
        f"Embedding model: `{html.escape(embedding_model or '-')}`  \n"
        f"LLM: `{html.escape(llm)}`"
    )


def upload_report_markdown(rows: Sequence[tuple[str, object | str]], max_reasons: int = 10) -> str:
    """A per-file table of what an upload did.

    Args:
        rows: (file name, IngestReport) for files that were ingested, or
            (file name, error message) for files refused whole.
        max_reasons: skipped records listed per file.
    """
    lines = ["| file | added | updated | unchanged | skipped |", "| --- | --- | --- | --- | --- |"]
    notes = []
    for name, result in rows:
        safe = _cell(name)
        if isinstance(result, str):
            lines.append(f"| {safe} | – | – | – | refused |")
            notes.append(f"- **{safe}** refused: {_cell(result)}")
            continue
        report = result
        lines.append(
            f"| {safe} | {len(report.added)} | {len(report.updated)} | "  # type: ignore[attr-defined]
            f"{len(report.unchanged)} | {len(report.skipped)} |"  # type: ignore[attr-defined]
        )
        skipped = report.skipped  # type: ignore[attr-defined]
        for problem in skipped[:max_reasons]:
            notes.append(f"- {_cell(str(problem))}")
        if len(skipped) > max_reasons:
            notes.append(f"- ... and {len(skipped) - max_reasons} more skipped in {safe}")
    return "\n".join(lines + ([""] + notes if notes else []))


def _cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def example_questions(titles: Sequence[str], limit: int = 4) -> list[str]:
    """Questions a new user could ask of this collection, made from its titles.

    Titles that name a method ("WaveMix: ...") make the best questions, so they are
    preferred, spread over the collection; plain titles fill in when there are few.
    """
    titles = [" ".join(t.split()) for t in titles]
    named, plain = [], []
    for title in titles:
        name, sep, rest = title.partition(":")
        if sep and 1 <= len(name.split()) <= 3 and rest.strip():
            named.append(f"What is {name.strip()}, and what problem does it address?")
        elif 4 <= len(title.split()) <= 10:
            first = title.split()[0]
            keep_case = len(first) > 1 and not first[1:].islower()  # an acronym or a name: "LLMs", "BERT"
            plain.append(f"Which papers address {title if keep_case else title[0].lower() + title[1:]}?")
    pool = named if len(named) >= limit else named + plain
    step = max(1, len(pool) // limit)
    return pool[::step][:limit]


def display_name(path: str | Path) -> str:
    """A file's name without the server's directories (which must never reach the page)."""
    return Path(path).name
