"""From the model's raw text to an answer whose every citation is a retrieved paper.

Three steps, each a plain function so the evals can test them alone:

1. :func:`resolve_markers` reads ``[n]`` markers (also ``[1, 2]``, ``[1-3]``, ``[1][2]``),
   keeps those that name a retrieved source and drops the rest from the text,
   counting them. A hostile abstract can make the model write ``[9]``; it can
   never make papercite show paper 9.
2. :func:`attribute` gives a sentence the model left uncited the source whose
   passages are most similar to it, when they are similar enough (small models
   forget to cite).
3. :func:`is_abstention` recognises a reply that says the abstracts do not cover
   the question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.types import Citation, Source

__all__ = ["ResolvedText", "attribute", "cite_named_papers", "is_abstention", "resolve_markers", "split_sentences"]

MARKER = re.compile(r"\[\s*(\d+(?:\s*(?:,|;|-|–|and)\s*\d+)*)\s*\]")
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


def _name(title: str) -> str:
    """What an answer calls a paper: the method name before a colon ("WaveMix"), else the title."""
    head, sep, _ = title.partition(":")
    return head.strip() if sep and 1 <= len(head.split()) <= 4 and len(head.strip()) >= 3 else title.strip()


def cite_named_papers(text: str, sources: Sequence[Source]) -> tuple[str, set[int]]:
    """Point each sentence that names exactly one retrieved paper at that paper.

    Small models copy the prompt's ``[1] Title:`` layout and then write another
    paper's title after the ``[1]``, or name a paper and cite its neighbour. When a
    sentence (or line) names one source by title or method name and none of its
    markers is that source's, its markers are replaced by that source's number at
    the sentence's end (or the number is added when it has none). Sentences naming zero or several sources
    are left alone.

    Returns:
        The text, and the source numbers this placed where the model had not.
    """
    names = [(s.number, re.compile(r"(?<!\w)" + re.escape(_name(s.title)) + r"(?!\w)", re.IGNORECASE)) for s in sources]
    out_lines = []
    placed: set[int] = set()
    for line in text.split("\n"):
        sentences = []
        for sentence in split_sentences(line) if line.strip() else [line]:
            named = {n for n, pattern in names if pattern.search(sentence)}
            cited = {m for group in MARKER.findall(sentence) for m in _numbers(group)}
            if len(named) == 1 and not named & cited:
                (number,) = named
                sentence = " ".join(MARKER.sub("", sentence).split())
                body, end = (sentence[:-1], sentence[-1]) if sentence[-1:] in ".!?" else (sentence, "")
                sentence = f"{body} [{number}]{end}"
                placed.add(number)
            sentences.append(sentence)
        out_lines.append(" ".join(sentences))
    model_cited = {m for group in MARKER.findall(text) for m in _numbers(group)}
    return "\n".join(out_lines), placed - model_cited


def split_sentences(text: str) -> list[str]:
    """Split answer text into sentences, keeping each sentence's trailing markers with it."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end(1)
        pieces.append(text[start:end].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def attribute(
    resolved: ResolvedText,
    sources: Sequence[Source],
    embed: Callable[[list[str]], list[list[float]]],
    min_similarity: float,
) -> ResolvedText:
    """Give each uncited sentence the most similar source, when similar enough.

    Args:
        resolved: the text after :func:`resolve_markers`.
        sources: the retrieved sources.
        embed: maps texts to unit-length vectors (the store's embedding model).
        min_similarity: cosine a sentence needs with a source's passage to be attributed.
    """
    sentences = split_sentences(resolved.text)
    uncited = [i for i, s in enumerate(sentences) if not MARKER.search(s) and len(s.split()) >= 4]
    if not uncited or not sources:
        return resolved
    passages = [(s, p) for s in sources for p in s.passages]
    vectors = embed([sentences[i] for i in uncited] + [p for _, p in passages])
    sentence_vecs, passage_vecs = vectors[: len(uncited)], vectors[len(uncited) :]
    citations = {c.number: c for c in resolved.citations}
    for i, vec in zip(uncited, sentence_vecs):
        scores = [sum(a * b for a, b in zip(vec, pv)) for pv in passage_vecs]
        best = max(range(len(scores)), key=scores.__getitem__)
        if scores[best] < min_similarity:
            continue
        source = passages[best][0]
        sentence = sentences[i]
        body, end = (sentence[:-1], sentence[-1]) if sentence[-1] in ".!?" else (sentence, "")
        sentences[i] = f"{body} [{source.number}]{end}"
        citations.setdefault(source.number, Citation(source.number, source.title, source.paper_id, attributed=True))
    ordered = _first_use_order(" ".join(sentences), citations)
    return ResolvedText(" ".join(sentences), ordered, resolved.dropped)


def _first_use_order(text: str, citations: dict[int, Citation]) -> tuple[Citation, ...]:
    order: list[int] = []
    for match in MARKER.finditer(text):
        for n in _numbers(match.group(1)):
            if n in citations and n not in order:
                order.append(n)
    return tuple(citations[n] for n in order)


def is_abstention(text: str) -> bool:
    """True when the reply says the abstracts do not answer the question."""
    return bool(_ABSTAIN.search(text))
