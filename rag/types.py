"""The values ``rag`` hands out: retrieved sources, citations and answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Answer", "Citation", "PaperReading", "Reading", "Sentence", "Source", "Timings", "Turn", "Verdict"]

#: What verification concluded about one answer sentence (see :mod:`rag.answer.verify`).
Verdict = Literal["supported", "corrected", "unsupported"]


@dataclass(frozen=True)
class Source:
    """One retrieved paper, as numbered in the prompt.

    Attributes:
        number: the ``[n]`` the LLM saw for this paper (1-based, in rank order).
        paper_id: the paper's stable id in the store.
        title: the paper's title.
        passages: the paper's best chunks that went into the prompt, in abstract order.
        score: the fused (reciprocal rank) score of the paper's best chunk.
        similarity: the best cosine similarity of any of its chunks to the question,
            or None when only BM25 found it.
        authors: author names, when known.
        year: publication year, when known.
        url: a link, when known.
        abstract: the paper's whole abstract (all its chunks), which answers are
            checked against; empty when unknown.
    """

    number: int
    paper_id: str
    title: str
    passages: tuple[str, ...]
    score: float
    similarity: float | None = None
    authors: tuple[str, ...] = ()
    year: int | None = None
    url: str | None = None
    abstract: str = ""


@dataclass(frozen=True)
class Reading:
    """The papers the model is about to read: what ``rag.ask_stream`` yields before it asks the model.

    A page shows these at once, seconds before the first words of the answer. Not
    yielded when papercite abstains without asking a model.

    Attributes:
        question: the question as asked (control characters removed).
        sources: the papers the prompt shows, numbered and cut as the prompt shows them.
        best_sentences: for each of ``sources``, in the same order, the sentence of its
            passages that best matches the question (the one sharing the question's
            rarest words); empty when no sentence shares a content word with it.
    """

    question: str
    sources: tuple[Source, ...]
    best_sentences: tuple[str, ...]


@dataclass(frozen=True)
class PaperReading:
    """What the model found when it read one retrieved paper's abstract on its own (``answer.mode = per_paper``).

    ``rag.ask_stream`` yields one as each reading ends; ``Answer.readings`` keeps them all,
    so a reader sees why a paper was or was not cited.

    Attributes:
        number: the paper's ``[n]`` among the answer's sources.
        paper_id: the paper's stable id.
        title: the paper's title.
        verdict: ``yes`` (this abstract answers the question: the model's confidence reaches
            ``tuning.reading.accept``, or, from a backend with no log-probabilities, its reply's first
            word is YES), ``no``, or ``unread`` (too far below the best paper in retrieval).
        confidence: the model's probability that the abstract answers (its YES against its NO,
            from the first token's log-probabilities); None when the backend gives none
            (then the verdict is the reply's first word).
        finding: what the paper reports that answers the question, in one or two
            sentences, as the model wrote it; empty when none was asked for (a confident no).
        supported: the finding passed verification against its own abstract.
        cited: True when the answer cites this paper.
        reason: why it is or is not cited, in words, e.g. "finding not supported: 76.5% is not in the abstract".
        seconds: how long the reading took.
        prompt_tokens: tokens in the reading's prompt, when the backend reports them.
        cached_tokens: of those, the tokens taken from the runtime's prompt cache (the
            abstract read before), when the backend reports them.
    """

    number: int
    paper_id: str
    title: str
    verdict: Literal["yes", "no", "unread"]
    confidence: float | None = None
    finding: str = ""
    supported: bool = False
    cited: bool = False
    reason: str = ""
    seconds: float = 0.0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass(frozen=True)
class Citation:
    """A source the answer cites.

    Attributes:
        number: the ``[n]`` marker in the answer; the same number as the cited Source.
        title: the cited paper's title.
        paper_id: the cited paper's stable id.
        attributed: True when papercite attached this citation to a sentence the
            model left uncited (post-hoc attribution), False when the model wrote it.
    """

    number: int
    title: str
    paper_id: str
    attributed: bool = False


@dataclass(frozen=True)
class Sentence:
    """One sentence the model wrote, with what verification found.

    Attributes:
        text: the sentence as shown, with its ``[n]`` markers.
        citations: the source numbers it cites after verification.
        verdict: ``supported`` (its cited abstract holds its numbers and terms and is
            the closest in meaning), ``corrected`` (papercite moved or added its
            citation to the abstract that holds them), or ``unsupported`` (no
            retrieved abstract does).
        reason: why, in words a reader can check, e.g. "72% is not in [2]; it is in [1]".
        shown: False when the sentence was left out of ``Answer.text``.
        written: the source numbers the model itself wrote after the sentence.
    """

    text: str
    citations: tuple[int, ...]
    verdict: Verdict
    reason: str = ""
    shown: bool = True
    written: tuple[int, ...] = ()


@dataclass(frozen=True)
class Timings:
    """Seconds spent on each part of an answer."""

    retrieval: float = 0.0
    first_token: float | None = None
    total: float = 0.0


@dataclass(frozen=True)
class Turn:
    """One question of a chat as the model read and answered it: what a follow-up's prompt repeats.

    A follow-up's prompt repeats every earlier turn word for word, so a runtime that
    keeps the previous prompt's KV cache (llama.cpp, Ollama) reads only the new question.

    Attributes:
        question: the question as asked.
        shown: the papers this turn's message showed for the first time, numbered and
            cut as shown (papers an earlier turn showed keep their number and are not shown again).
        reply: the model's reply as generated.
    """

    question: str
    shown: tuple[Source, ...]
    reply: str


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What ``rag.ask`` returns.

    Attributes:
        question: the question as asked (control characters removed).
        text: the answer, with ``[n]`` markers that refer to ``citations``.
        citations: the cited sources, in order of first citation; never a paper
            outside ``sources``.
        sources: every retrieved paper, ranked, whether cited or not.
        abstained: True when the collection does not cover the question; then
            ``citations`` is empty.
        model: which backend and model wrote the text, e.g. ``embedded:qwen2.5-coder-1.5b``;
            empty when papercite abstained without asking a model.
        timings: retrieval, first token and total seconds.
        dropped_markers: ``[n]`` markers the model wrote that point outside
            ``sources``; they were removed from ``text``.
        prompt_tokens: tokens in the prompt, when the backend reports them.
        cached_tokens: of those, the tokens the runtime took from its KV cache instead of
            reading them (a follow-up's earlier turns), when it reports them (the embedded model does).
        notice: what the reader should know about how the answer was made; set when
            Ollama failed in ``auto`` mode and the embedded model answered instead.
        sentences: every sentence the model wrote, with its verdict, whether it is
            shown, and why; unsupported sentences stay here when left out of ``text``.
        conversation: the chat's turns up to this answer, oldest first (only turns that
            asked a model); pass this answer as ``history`` to ask a follow-up.
        readings: in ``per_paper`` mode, each retrieved paper's reading in source order
            (verdict, confidence, finding, and why it is or is not cited); empty in ``one_prompt`` mode.
        mode: how the answer was made: ``per_paper`` (each paper read on its own) or ``one_prompt``.
        confidence_from: where the readings' verdicts came from: ``log-probabilities`` (the
            model's own probability of YES), ``first word`` (the backend gives none, so the
            reply's first word decides), or empty when no paper was read.
    """

    question: str
    text: str
    citations: tuple[Citation, ...]
    sources: tuple[Source, ...]
    abstained: bool
    model: str
    timings: Timings = field(default_factory=Timings)
    dropped_markers: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    notice: str = ""
    sentences: tuple[Sentence, ...] = ()
    conversation: tuple[Turn, ...] = ()
    readings: tuple[PaperReading, ...] = ()
    mode: str = "one_prompt"
    confidence_from: str = ""

    def cited_titles(self) -> list[str]:
        """Titles of the cited papers, in citation order."""
        return [c.title for c in self.citations]

    def with_references(self) -> str:
        """The answer followed by a numbered list of the cited papers' full titles."""
        if not self.citations:
            return self.text
        refs = "\n".join(f"[{c.number}] {c.title}" for c in self.citations)
        return f"{self.text}\n\nReferences:\n{refs}"
