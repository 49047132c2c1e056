"""From the model's raw text to sentences whose every citation is a retrieved paper.

- :func:`resolve_markers` reads ``[n]`` markers (also ``[1, 2]``, ``[1-3]``, ``[1][2]``),
  keeps those that name a retrieved source and drops the rest from the text,
  counting them. A hostile abstract can make the model write ``[9]``; it can
  never make papercite show paper 9.
- :func:`tidy_layout` turns the prompt's layout, when the model copies it
  ("Abstract [2], from the paper \"...\", shows"), into a plain sentence.
- :func:`split_sentences` splits answer and abstract text alike, a sentence keeping
  the markers that follow it.
- :func:`is_abstention` recognises a reply that says the abstracts do not cover
  the question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.types import Citation, Source

__all__ = [
    "CITE",
    "MARKER",
    "ResolvedText",
    "is_abstention",
    "marker_numbers",
    "resolve_markers",
    "split_sentences",
    "tidy_layout",
]

#: A citation marker as a model may write it: [1], [1, 2], [1-3], [1; 2], [1 and 2].
MARKER = re.compile(r"\[\s*(\d+(?:\s*(?:,|;|-|–|and)\s*\d+)*)\s*\]")
#: A marker in an answer's final text, where :func:`resolve_markers` wrote each as [n].
CITE = re.compile(r"\[(\d+)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])((?:\s*\[[^\]]{1,40}\])*)\s+(?=[A-Z0-9\"'(])")
_ABSTAIN = re.compile(
    r"(does not cover|do not cover|doesn't cover|don't cover|not covered|"
    r"(do|does) not (contain|mention|provide|discuss|address|include|answer)|"
    r"(don't|doesn't) (contain|mention|provide|discuss|address|include|answer)|"
    r"no (information|abstract|mention)|not (mentioned|discussed|addressed|provided)|"
    r"cannot (be )?answer|can't answer|unable to answer)",
    re.IGNORECASE,
)
_MAX_RANGE = 20


@dataclass(frozen=True)
class ResolvedText:
    """Answer text with valid markers only, the citations they make, and what was dropped."""

    text: str
    citations: tuple[Citation, ...]
    dropped: int


def _numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*(?:,|;|and)\s*", group):
        bounds = re.split(r"\s*[-–]\s*", part)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            lo, hi = int(bounds[0]), int(bounds[1])
            numbers.extend(range(lo, hi + 1) if 0 <= hi - lo < _MAX_RANGE else [lo, hi])
        elif part.isdigit():
            numbers.append(int(part))
    return numbers


def marker_numbers(text: str) -> list[int]:
    """The source numbers the ``[n]`` markers of ``text`` name, in first-use order, each once."""
    return list(dict.fromkeys(n for group in MARKER.findall(text) for n in _numbers(group)))


def resolve_markers(text: str, sources: Sequence[Source]) -> ResolvedText:
    """Keep the ``[n]`` markers that name a source, drop (and count) the others."""
    by_number = {s.number: s for s in sources}
    cited: dict[int, Citation] = {}
    dropped = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal dropped
        kept = []
        for n in _numbers(match.group(1)):
            if n in by_number:
                if n not in kept:
                    kept.append(n)
                source = by_number[n]
                cited.setdefault(n, Citation(n, source.title, source.paper_id))
            else:
                dropped += 1
        return "".join(f"[{n}]" for n in kept)

    cleaned = MARKER.sub(replace, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)  # "word [9]." -> "word."
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned).strip()
    return ResolvedText(cleaned, tuple(cited.values()), dropped)


def short_name(title: str) -> str | None:
    """What an answer calls a paper: the method name before a colon ("WaveMix"), when the title has one."""
    head, sep, _ = title.partition(":")
    return head.strip() if sep and 1 <= len(head.split()) <= 4 and len(head.strip()) >= 3 else None


_FROM_PAPER = re.compile(r",?\s*(?:from|in) the (?:paper|study|article)\s*\"[^\"]{3,300}\"\s*,?", re.IGNORECASE)
_ABSTRACT_REF = re.compile(r"\b(?:the\s+)?abstracts?\s*((?:\[\s*\d+\s*\](?:\s*(?:,|and|&)?\s*)?)+)", re.IGNORECASE)


def tidy_layout(text: str, sources: Sequence[Source]) -> str:
    """Rewrite the prompt's layout that small models copy into their answers.

    ``Abstract [2] from the paper "INT2.1: ..." reduces memory`` becomes
    ``INT2.1 [2] reduces memory`` (or ``The study [2] ...`` for a title without a
    method name), and a full title with a method name becomes that name. The markers
    stay where the model put them; verification moves them to the sentence's end.
    """
    by_number = {s.number: s for s in sources}
    text = _FROM_PAPER.sub(" ", text)

    def subject(match: re.Match[str]) -> str:
        numbers = marker_numbers(match.group(1))
        markers = "".join(f"[{n}]" for n in numbers)
        if len(numbers) != 1 or numbers[0] not in by_number:
            return f"these studies {markers} "
        return f"{short_name(by_number[numbers[0]].title) or 'the study'} {markers} "

    text = _ABSTRACT_REF.sub(subject, text)
    text = re.sub(r"\b(study|paper|work|article|authors|review|trial)\s+(?:by|in|of|from)\s+(\[\d+\])", r"\1 \2", text)
    for source in sources:
        if (name := short_name(source.title)) and source.title in text:
            text = text.replace(source.title, name)
    text = re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)  # sentence starts
    return re.sub(r"[ \t]{2,}", " ", text).strip()


_ABBREVIATION = re.compile(r"(?:\b(?:vs|cf|ca|approx|resp|Fig|Figs|Eq|No|Ref|al|e\.g|i\.e)|\b[A-Z])\.$")


def split_sentences(text: str) -> list[str]:
    """Split answer or abstract text into sentences, keeping each sentence's trailing markers with it.

    A full stop ends a sentence when a capital, digit, quote or bracket follows, except
    after an abbreviation ("vs. 61 percent", "et al. 2019", "J. Smith").
    """
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if _ABBREVIATION.search(text[start : match.start(1)]) and not match.group(1):
            continue
        end = match.end(1)
        pieces.append(text[start:end].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def is_abstention(text: str) -> bool:
    """True when the reply says the abstracts do not answer the question."""
    return bool(_ABSTAIN.search(text))
