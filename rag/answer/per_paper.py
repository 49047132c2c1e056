"""The per-paper answer path (``answer.mode = per_paper``): read each paper on its own, then answer from the readings.

    retrieve -> gate -> name_gate -> choose papers -> read each (verdict, confidence, finding)
             -> verify each finding against its own abstract -> decide what is cited -> compose

Each retrieved paper close enough to the best one is read alone (:mod:`rag.answer.readings`):
a one-token verdict whose log-probabilities give the model's confidence that the
abstract answers, then, when that confidence is high enough to matter, the finding.
A finding is checked against its own abstract like any answer sentence; one that is
not supported is not shown. What is cited is decided from the readings together
(:func:`decide`): a question asking for one finding is answered from the best reading,
one asking for several papers lists every paper that passes. Nothing passes: papercite
says the collection does not cover the question.

``ask_stream`` yields each ``PaperReading`` as it ends, so a page shows the first
finding after one abstract has been read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag.answer.citations import resolve_markers, split_sentences
from rag.answer.context import asks_for_several, best_sentences, continue_numbers
from rag.answer.prompt import ABSTAIN_TEXT
from rag.answer.readings import (
    FIRST_WORD,
    LOGPROBS,
    RESTATED,
    check_finding,
    finding_messages,
    parse_finding,
    parse_verdict,
    prefix_of,
    reading_messages,
)
from rag.answer.verify import VerifyConfig, verify_sentences
from rag.errors import BadInput, LLMUnavailable
from rag.llm.backends import BackendLLM, ReadingLLMs, chat_once, reading_llms
from rag.services import Services
from rag.settings import ReadingSettings
from rag.types import Answer, Citation, PaperReading, Reading, Sentence, Source, Timings, Turn

__all__ = ["Asked", "Reader", "answer_from_readings", "decide", "papers_to_read"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def papers_to_read(sources: Sequence[Source], conf: ReadingSettings, *, several: bool, most: int) -> list[Source]:
    """The retrieved papers worth reading, in rank order: the best one always, then those within
    ``read_margin`` (cosine) of it, or every one when the question asks for several papers; ``most`` at most."""
    best = max((s.similarity for s in sources if s.similarity is not None), default=0.0)
    chosen = [
        s
        for i, s in enumerate(sources)
        if i == 0 or several or (s.similarity is not None and s.similarity >= best - conf.read_margin)
    ]
    return chosen[:most]


class Reader:
    """Reads one paper at a time with the backend's model; falls back to the embedded model when
    Ollama fails in ``auto`` mode, as the one-prompt path does."""

    def __init__(
        self, services: Services, backend: BackendLLM, *, may_fall_back: bool, max_tokens: int | None = None
    ) -> None:
        self.services = services
        self.conf = services.settings.tuning.reading
        self.max_tokens = max_tokens or self.conf.max_tokens  # a table's cells are shorter than findings
        self.backend = backend
        self.may_fall_back = may_fall_back and backend.label.startswith("ollama:")
        self.notice = ""
        self.llms = self._llms(backend)
        checks = services.settings.tuning.checks
        self.verify = VerifyConfig(checks.move_margin, checks.min_support, checks.echo_words)

    def _llms(self, backend: BackendLLM) -> ReadingLLMs:
        return reading_llms(backend, self.max_tokens, self.conf.top_logprobs)

    def read(self, source: Source, question: str, previous: str | None) -> PaperReading:
        """Read ``source`` for ``question``: its verdict and confidence, and its verified finding when asked for.

        Raises:
            LLMUnavailable: the backend (and, in auto mode, the embedded model) cannot answer.
        """
        return self.falling_back(lambda: self._read(source, question, previous))

    def falling_back(self, call: Callable[[], T]) -> T:
        """``call()``; when Ollama fails in ``auto`` mode, ``call()`` again with the embedded model, and the
        notice says so.

        Raises:
            LLMUnavailable: the backend (and, in auto mode, the embedded model) cannot answer.
        """
        try:
            return call()
        except LLMUnavailable as exc:
            if not self.may_fall_back:
                raise
            try:
                self.backend, self.may_fall_back = self.services.embedded_backend, False
            except (LLMUnavailable, BadInput):  # no embedded model either: Ollama's failure is the one to fix
                raise exc from None
            self.llms = self._llms(self.backend)
            self.notice = f"{exc} The embedded model read the papers instead."
            log.warning("%s", self.notice)
            return call()

    def _floor(self) -> float:
        """The least confidence worth a finding: below it the decision cannot cite the paper."""
        if self.conf.finding_floor is not None:
            return self.conf.finding_floor
        return self.conf.accept if self.conf.lead >= 1 else min(self.conf.accept, self.conf.floor)

    def _read(self, source: Source, question: str, previous: str | None) -> PaperReading:
        started = time.perf_counter()
        messages = reading_messages(source, question, previous)
        kept = {"prefix": prefix_of(source)} if self.llms.keeps_prefixes else {}
        response = chat_once(self.backend, self.llms.verdict, messages, **kept)
        verdict = parse_verdict(response)
        wanted = verdict.said == "yes" if verdict.confidence is None else verdict.confidence >= self._floor()
        finding, supported, why = "", False, "the model says its abstract does not answer the question"
        if wanted:
            finding = parse_finding(chat_once(self.backend, self.llms.finding, finding_messages(messages)))
            supported, why = check_finding(
                finding, source, question, self.services.embed_model.get_text_embedding_batch, self.verify
            )
            if not supported and self.conf.quote_restated and RESTATED in why:
                finding, supported, why = _quote(source, question, finding, why)
        extra = response.additional_kwargs or {}
        known = verdict.confidence
        return PaperReading(
            number=source.number,
            paper_id=source.paper_id,
            title=source.title,
            verdict="yes" if (verdict.said == "yes" if known is None else known >= self.conf.accept) else "no",
            confidence=None if verdict.confidence is None else round(verdict.confidence, 4),
            finding=finding,
            supported=supported,
            reason=why,
            seconds=round(time.perf_counter() - started, 3),
            prompt_tokens=extra.get("prompt_tokens"),
            cached_tokens=extra.get("cached_tokens"),
        )


def _quote(source: Source, question: str, finding: str, why: str) -> tuple[str, bool, str]:
    """The abstract's own sentence that best matches the question, in place of a finding that restated it."""
    whole = replace(source, passages=(source.abstract or " ".join(source.passages),))
    quote = best_sentences(question, [whole])[0]
    if not quote:
        return finding, False, why
    return quote, True, "the model's finding restated the question; the abstract's own sentence is shown"


def decide(readings: Sequence[PaperReading], conf: ReadingSettings, *, several: bool) -> list[PaperReading]:
    """Every reading with ``cited`` and ``reason`` set: which papers the answer cites, and why or why not.

    With confidences: a reading with a supported finding is cited when its confidence
    reaches ``accept``; below that, the best one still is when it reaches ``floor`` and
    leads every other reading by ``lead``. A question asking for one finding cites only
    the most confident reading, and only when its own finding is supported (the next one
    is not the answer because the best one's finding failed). A question asking for
    several papers cites every passing reading within ``several_margin`` of the best one.
    Without confidences (a backend with no log-probabilities), a supported YES is cited.
    """
    known = [r.confidence for r in readings if r.confidence is not None]
    if len(known) < len(readings):  # first-word verdicts: yes with a supported finding
        passing = [r for r in readings if r.verdict == "yes" and r.supported]
    else:
        ranked = sorted(readings, key=lambda r: -(r.confidence or 0.0))
        best = ranked[0] if ranked else None
        second = ranked[1].confidence or 0.0 if len(ranked) > 1 else 0.0
        if not several and conf.top_only:
            ranked = ranked[:1]
        passing = [r for r in ranked if r.supported and (r.confidence or 0.0) >= conf.accept]
        lone = best is not None and best.supported and (best.confidence or 0.0) >= conf.floor
        if not passing and lone and (best.confidence or 0.0) - second >= conf.lead:  # type: ignore[union-attr]
            passing = [best]  # type: ignore[list-item]
        if several and passing:
            bar = (passing[0].confidence or 0.0) - conf.several_margin
            passing = [r for r in passing if (r.confidence or 0.0) >= bar]
    if not several:
        passing = passing[:1]
    cited = {r.number for r in passing}
    top = passing[0].confidence if passing else None
    return [
        replace(
            r,
            cited=r.number in cited,
            verdict=_verdict(r, r.number in cited, conf),
            reason=_why(r, r.number in cited, top, conf),
        )
        for r in readings
    ]


def _verdict(reading: PaperReading, cited: bool, conf: ReadingSettings) -> Literal["yes", "no", "unread"]:
    """The verdict a reader is shown: with a confidence, yes when it reaches ``accept`` (the model's own
    0.5 is not calibrated) or the paper is cited; without one, the reply's first word."""
    if reading.confidence is None or reading.verdict == "unread":
        return reading.verdict
    return "yes" if cited or reading.confidence >= conf.accept else "no"


def _why(reading: PaperReading, cited: bool, top: float | None, conf: ReadingSettings) -> str:
    """Why a reading is or is not cited, in words a reader can check."""
    p = f"{reading.confidence:.2f}" if reading.confidence is not None else None
    if cited:
        why = f"cited: the model is {p} sure it answers" if p else "cited: the model says it answers"
        return f"{why}; {reading.reason}" if reading.supported and reading.reason else why
    if reading.verdict == "unread":
        return reading.reason
    if reading.finding and not reading.supported:
        return reading.reason
    if p is None:
        return reading.reason or "the model says it does not answer"
    if top is not None and reading.supported and (reading.confidence or 0.0) >= conf.accept:
        return f"not cited: {p} sure, below the best cited paper's {top:.2f}"
    return f"not cited: the model is only {p} sure it answers (cited from {conf.accept:.2f})"


@dataclass(frozen=True)
class Asked:
    """What :func:`rag.answer.ask.ask_stream` hands either answer path: the model, and when the question came."""

    backend: BackendLLM
    may_fall_back: bool  # auto mode: the embedded model answers when Ollama fails
    started: float  # time.perf_counter() when the question came
    retrieval: float  # seconds retrieval took
    notice: str  # what the filters left out, or ""


@dataclass
class _Run:
    """One per-paper answer on its way: what :func:`answer_from_readings` yields and ends with."""

    question: str
    sources: list[Source]
    started: float
    retrieval: float
    notice: str
    readings: list[PaperReading]
    shown_at: dict[int, float]


def answer_from_readings(
    question: str,
    sources: list[Source],
    services: Services,
    asked: Asked,
    conversation: tuple[Turn, ...],
) -> Iterator[Reading | PaperReading | Answer]:
    """Read the papers worth reading one at a time, yielding each reading as it ends, then the ``Answer``.

    ``sources`` are the retrieved papers after the steps before generation; ``conversation``
    the chat's earlier turns (a follow-up reads the papers the last answer cited as well;
    a paper the chat cited is read with the earlier question beside the new one, so "it"
    resolves, and a paper new to the chat with the new question alone, as a new topic is).
    """
    conf = services.settings.tuning.reading
    several = asks_for_several(question)
    previous = conversation[-1].question if conversation else None
    earlier = [s for t in conversation[-1:] for s in t.shown]
    cited_before = {s.paper_id for t in conversation for s in t.shown}
    to_read = papers_to_read(sources, conf, several=several, most=services.settings.answer.max_papers)
    to_read += [s for s in earlier if s.paper_id not in {r.paper_id for r in to_read}]
    numbered, to_read = continue_numbers(sources, to_read, conversation)
    yield Reading(question, tuple(to_read), tuple(best_sentences(question, to_read)))

    reader = Reader(services, asked.backend, may_fall_back=asked.may_fall_back)
    run = _Run(question, numbered, asked.started, asked.retrieval, asked.notice, [], {})
    for source in to_read:
        reading = reader.read(source, question, previous if source.paper_id in cited_before else None)
        run.readings.append(reading)
        run.shown_at[reading.number] = time.perf_counter() - asked.started
        yield reading
    unread = {s.number for s in to_read}
    run.readings += [
        PaperReading(s.number, s.paper_id, s.title, "unread", reason="not read: far below the best paper in retrieval")
        for s in numbered
        if s.number not in unread
    ]
    decided = decide([r for r in run.readings if r.verdict != "unread"], conf, several=several)
    decided += [r for r in run.readings if r.verdict == "unread"]
    answer = _answer(run, decided, reader, conversation)
    if conf.compose and answer.citations:
        answer = compose(answer, reader, by_number={s.number: s for s in to_read})
    yield answer


def _answer(run: _Run, readings: list[PaperReading], reader: Reader, conversation: tuple[Turn, ...]) -> Answer:
    """The answer the decided readings make: the cited findings, most confident first, or an abstention."""
    cited = sorted((r for r in readings if r.cited), key=lambda r: -(r.confidence or 0.0))
    by_number = {s.number: s for s in run.sources}
    sentences = [Sentence(_marked(r), (r.number,), "supported", "", True, (r.number,)) for r in cited]
    sentences += [
        Sentence(_marked(r), (r.number,), "unsupported", r.reason, False, (r.number,))
        for r in readings
        if r.finding and not r.supported
    ]
    text = " ".join(s.text for s in sentences if s.shown) or ABSTAIN_TEXT
    first = min((run.shown_at[r.number] for r in cited if r.number in run.shown_at), default=None)
    shown = {s.paper_id for turn in conversation for s in turn.shown}
    turn = Turn(run.question, tuple(by_number[r.number] for r in cited if r.paper_id not in shown), text)
    order = {s.number: i for i, s in enumerate(run.sources)}
    return Answer(
        question=run.question,
        text=text,
        citations=tuple(Citation(r.number, r.title, r.paper_id) for r in cited),
        sources=tuple(run.sources),
        abstained=not cited,
        model=reader.backend.label,
        timings=Timings(run.retrieval, first, time.perf_counter() - run.started),
        prompt_tokens=sum(r.prompt_tokens or 0 for r in readings) or None,
        cached_tokens=sum(r.cached_tokens or 0 for r in readings)
        if any(r.cached_tokens is not None for r in readings)
        else None,
        notice=" ".join(n for n in (run.notice, reader.notice) if n),
        sentences=tuple(sentences),
        conversation=(*conversation, turn),
        readings=tuple(sorted(readings, key=lambda r: order.get(r.number, len(order)))),
        mode="per_paper",
        confidence_from=_confidence_from(readings),
    )


def _marked(reading: PaperReading) -> str:
    """The reading's finding with its paper's marker after every sentence, so each claim carries its citation."""
    return " ".join(f"{s} [{reading.number}]" for s in split_sentences(reading.finding or ""))


COMPOSE_PROMPT = (
    "Write a short answer to the question from the numbered findings only. End every sentence with the "
    "number of the finding it uses, like [2]. Do not add anything the findings do not say."
)


def compose(answer: Answer, reader: Reader, *, by_number: dict[int, Source]) -> Answer:
    """The answer rewritten from its cited findings by one more short generation (``reading.compose``).

    The model sees the findings, not the abstracts; its sentences are verified against the
    cited abstracts like any answer's, and the listed findings stay when the rewrite
    drops a paper or states something they do not support.
    """

    by_reading = {r.number: r.finding for r in answer.readings}
    findings = "\n".join(f"[{c.number}] {by_reading[c.number]}" for c in answer.citations)
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content=COMPOSE_PROMPT),
        ChatMessage(role=MessageRole.USER, content=f"Question: {answer.question}\nFindings:\n{findings}"),
    ]
    reply = chat_once(reader.backend, reader.llms.finding, messages)
    cited = [by_number[c.number] for c in answer.citations if c.number in by_number]
    text = resolve_markers(reply.message.content or "", cited).text
    checked = verify_sentences(
        text, cited, reader.services.embed_model.get_text_embedding_batch, reader.verify, answer.question
    )
    kept = {n for s in checked if s.verdict != "unsupported" for n in s.citations}
    if not checked or any(s.verdict == "unsupported" for s in checked) or kept != {c.number for c in answer.citations}:
        return answer
    return replace(answer, text=" ".join(s.text for s in checked), sentences=tuple(checked))


def _confidence_from(readings: Sequence[PaperReading]) -> str:
    """``Answer.confidence_from``: log-probabilities when every reading had them, else the first word."""
    read = [r for r in readings if r.verdict != "unread"]
    if not read:
        return ""
    return LOGPROBS if all(r.confidence is not None for r in read) else FIRST_WORD
