"""Reader for a saved "trending papers" web page: a title line, then its abstract.

The bundled corpus ``data/trending-papers.txt`` is the text of such a page, copied
from a browser. It opens with a few lines of page chrome (``Subscribe``, a date
such as ``Mar 12``) and then holds one paper per title paragraph, each followed by
its abstract paragraph, with blank lines in between.

There is no markup to lean on, so the paragraphs are classified by shape: a title
is short and does not end in a sentence period; anything else is abstract prose.
Prose that follows prose is appended to the same abstract, so an abstract split
into several paragraphs stays one paper instead of being reported as orphaned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ingest.papers import ReadResult
from ingest.records import Collector

__all__ = ["TITLE_MAX_CHARS", "parse_page"]

#: A paragraph longer than this is prose even if it does not end with a period;
#: the longest title in the bundled page is ~130 characters, the shortest abstract ~1,400.
TITLE_MAX_CHARS = 300

# Known page chrome, compared casefolded. Matching known lines (rather than skipping
# a fixed number of leading lines) keeps working when the site adds or drops a line.
_CHROME_LINES = frozenset(
    {
        "new",
        "get trending papers in your email inbox!",
        "subscribe",
        "byak and the research community",
        "trending papers",
        "daily papers",
    }
)

# The page's date heading: "Mar 12", "March 12", "Mar 12, 2025".
_DATE_LINE = re.compile(
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:,?\s+\d{4})?",
    re.IGNORECASE,
)


def _paragraphs(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(first_line, text)`` for each run of non-blank lines, whitespace collapsed."""
    start = 0
    lines: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line)
        elif lines:
            yield start, " ".join(" ".join(lines).split())
            lines = []
    if lines:
        yield start, " ".join(" ".join(lines).split())


def _is_chrome(paragraph: str) -> bool:
    """Tell whether a paragraph is page chrome (header lines, the date) rather than content."""
    return paragraph.casefold() in _CHROME_LINES or _DATE_LINE.fullmatch(paragraph) is not None


def _is_title(paragraph: str) -> bool:
    """Tell whether a paragraph has the shape of a title: short, not ending in a sentence period."""
    return len(paragraph) <= TITLE_MAX_CHARS and not paragraph.endswith(".")


def _quote(title: str, limit: int = 60) -> str:
    """Shorten a title for a problem message so the message stays on one readable line."""
    return repr(title if len(title) <= limit else title[: limit - 1] + "…")


def parse_page(text: str, name: str) -> ReadResult:
    """Read papers from the text of a saved trending-papers page.

    Args:
        text: the page text, newlines already normalized to ``\\n``.
        name: the file name used in each paper's ``origin`` and each problem's location.

    Returns:
        The papers in page order, with ``origin`` pointing at the title line, and a
        problem for each title without an abstract, each abstract without a title and
        each repeated paper.
    """
    collector = Collector(name)
    # The title waiting for its abstract: (line, title, abstract paragraphs so far).
    current: tuple[int, str, list[str]] | None = None
    for line, paragraph in _paragraphs(text):
        if _is_chrome(paragraph):
            continue
        if _is_title(paragraph):
            if current is not None:
                _add_paper(collector, *current)
            current = (line, paragraph, [])
        elif current is not None:
            current[2].append(paragraph)
        else:
            collector.problem(line, "abstract paragraph has no title before it")
    if current is not None:
        _add_paper(collector, *current)
    return collector.result


def _add_paper(collector: Collector, line: int, title: str, abstract_parts: list[str]) -> None:
    """Hand a title and its abstract to the collector, or report the title if no abstract followed it."""
    if abstract_parts:
        collector.add(line, {"title": title, "abstract": " ".join(abstract_parts)})
    else:
        collector.problem(line, f"title {_quote(title)} has no abstract after it")
