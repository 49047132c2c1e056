"""``ask`` and ``ask_stream``: the one entry point the page, the CLI and the evals all use.

What ``ask_stream`` yields, in order (``answer.mode = one_prompt``):

- one ``Reading``: the papers the model will read, numbered as the prompt numbers
  them, each with its sentence that best matches the question. It comes once
  retrieval and the steps before generation are done, before the model is asked
  (a page shows the sources while the model reads). Not yielded when papercite
  abstains without asking a model: then the abstention comes at once.
- ``str`` pieces: the model's raw words as they come.
- the ``Answer``, last. Its ``text`` is the checked version (invalid markers
  removed, uncited sentences attributed), so a page should replace what it
  streamed with it.

With ``answer.mode = per_paper`` (:mod:`rag.answer.per_paper`): the ``Reading`` (the papers
about to be read, one at a time), then one ``PaperReading`` as each paper's reading
ends (its verdict, confidence and verified finding), then the ``Answer``. No ``str``
pieces: a page shows each finding as it comes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from rag.answer.context import best_sentences, continue_numbers
from rag.answer.judge import make_judge
from rag.answer.per_paper import Asked, answer_from_readings
from rag.answer.prompt import ABSTAIN_TEXT, build_messages
from rag.answer.steps import POST_STEPS, PRE_STEPS, Draft, Parts, run_steps, says_not_covered
from rag.errors import BadInput, EmptyQuestion, LLMUnavailable
from rag.llm.backends import BackendLLM, stream_chat
from rag.retrieve import retrieve_timed
from rag.services import Services
from rag.settings import Settings
from rag.store.filters import Filters
from rag.types import Answer, PaperReading, Reading, Source, Timings, Turn

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

__all__ = ["MAX_QUESTION_CHARS", "ask", "ask_stream", "clean_question"]

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_question(question: str) -> str:
    """Remove control characters and collapse whitespace.

    Raises:
        EmptyQuestion: nothing is left.
        BadInput: the question is longer than ``MAX_QUESTION_CHARS``.
    """
    if not isinstance(question, str):
        raise BadInput(f"The question must be text, not {type(question).__name__}.")
    text = " ".join(_CONTROL.sub(" ", question).split())
    if not text:
        raise EmptyQuestion(
            'The question is empty: type a question about the papers, e.g. "Which papers speed up LLM inference?"'
        )
    if len(text) > MAX_QUESTION_CHARS:
        raise BadInput(
            f"The question is {len(text):,} characters long; keep it under {MAX_QUESTION_CHARS:,} "
            "characters (ask about one thing at a time)."
        )
    return text


def ask_stream(
    question: str,
    *,
    settings: Settings | None = None,
    top_k: int | None = None,
    llm: LLM | None = None,
    services: Services | None = None,
    history: Answer | None = None,
    filters: Filters | None = None,
) -> Iterator[str | Reading | PaperReading | Answer]:
    """Answer ``question`` from the collection, yielding what is known as soon as it is known
    (a ``Reading``, then ``str`` pieces or one ``PaperReading`` per paper read, then the ``Answer``:
    see this module's docstring). :func:`ask` returns only the ``Answer``.

    Args:
        question: the question in plain language.
        settings: defaults to ``Settings()``.
        top_k: how many papers to put in the prompt; defaults to the setting.
        llm: a llama-index LLM to use instead of the configured backend.
        services: the store, encoder and LLM to answer with; built from ``settings`` when
            None (pass one to reuse its loaded store, or to swap any part, e.g. in a test).
        history: the previous answer in the same chat: ``question`` is then a follow-up
            ("and which of them needs less memory?"). It is retrieved both alone and after
            the chat's last question the model read, and the prompt continues the chat's earlier turns word
            for word (``Answer.conversation``), so a runtime that keeps its KV cache reads
            only what is new. No extra LLM call.
        filters: only papers that pass are read (years, author, source file). The answer's
            ``notice`` says how many papers a year filter left out for having no year.

    Raises:
        EmptyQuestion, BadInput: the question cannot be used.
        NoMatch: no paper passes ``filters``; nothing is answered from the rest.
        UnknownCollection: the collection in ``settings`` does not exist.
        IndexEmpty: nothing has been ingested.
        LLMUnavailable: the backend cannot answer.
    """
    services = services or Services(settings or Settings())
    settings = services.settings
    started = time.perf_counter()
    text = clean_question(question)
    conversation = history.conversation if history else ()
    # The question a follow-up follows is the chat's last one the model read (not one refused before it).
    previous = conversation[-1].question if conversation else None
    sources, retrieval_s, filtered = retrieve_timed(text, services, top_k, previous=previous, filters=filters)
    parts = Parts(settings, services.embed_model, services.store)
    per_paper = settings.answer.mode == "per_paper"
    pre = [s for s in PRE_STEPS if not (per_paper and s.name == "select_context")]  # per_paper picks its own
    draft = run_steps(pre, Draft(text, sources, context=list(sources), conversation=conversation), parts)
    if draft.abstained:  # nothing in the collection is close: say so without spending a generation
        yield ABSTAIN_TEXT
        answer = _answer(draft, Timings(retrieval_s, None, time.perf_counter() - started), notice=filtered)
        yield replace(answer, mode=settings.answer.mode)
        return
    backend = services.backend if llm is None else BackendLLM.given(llm)
    asked = Asked(backend, llm is None and settings.llm.backend == "auto", started, retrieval_s, filtered)
    if per_paper:
        yield from answer_from_readings(text, draft.sources, services, asked, conversation)
    else:
        yield from _one_prompt(draft, sources, parts, services, asked)


def _one_prompt(
    draft: Draft,
    retrieved: list[Source],
    parts: Parts,
    services: Services,
    asked: Asked,
) -> Iterator[str | Reading | Answer]:
    """The one-prompt path after the steps before generation: the shown papers, the model's words, the answer.

    ``retrieved`` is what retrieval returned (the retry looks at how close it came).
    """
    text, conversation, settings = draft.question, draft.conversation, services.settings
    backend, started, retrieval_s, filtered = asked.backend, asked.started, asked.retrieval, asked.notice
    numbered, context = continue_numbers(draft.sources, draft.context, conversation)
    draft = replace(draft, sources=numbered, context=context)
    yield Reading(text, tuple(draft.context), tuple(best_sentences(text, draft.context)))

    if settings.answer.judge:
        parts.judge = make_judge(backend)
    attempt = _Attempt(started, backend, may_fall_back=asked.may_fall_back)
    yield from attempt.run(build_messages(text, draft.context, conversation=conversation), services)
    if _should_retry(attempt.raw, retrieved, settings):
        attempt.raw = ""
        yield from attempt.run(build_messages(text, draft.context, insist=True, conversation=conversation), services)
    draft = run_steps(POST_STEPS, replace(draft, raw=attempt.raw), parts)
    if draft.abstained:
        log.info("Abstained on %r: %s", text, draft.why)
    timings = Timings(retrieval_s, attempt.first_token, time.perf_counter() - started)
    shown = {s.paper_id for turn in conversation for s in turn.shown}
    turn = Turn(text, tuple(s for s in draft.context if s.paper_id not in shown), attempt.raw)
    draft = replace(draft, conversation=(*conversation, turn))
    yield _answer(draft, timings, attempt, notice=filtered)


def _should_retry(raw: str, sources: list[Source], settings: Settings) -> bool:
    """Small models abstain when an abstract plainly answers; a chunk this close means the
    question is likely covered, so it is asked once more without the way out."""
    best = max((s.similarity for s in sources if s.similarity is not None), default=0.0)
    checks = settings.tuning.checks
    return "retry" not in checks.skip and best >= checks.retry_similarity and says_not_covered(raw)


def _answer(draft: Draft, timings: Timings, attempt: _Attempt | None = None, *, notice: str = "") -> Answer:
    """The answer ``draft`` became; ``attempt`` is the generation, None when no model was asked;
    ``notice`` is what the filter left out (see :func:`rag.store.filters.check_filters`)."""
    return Answer(
        question=draft.question,
        text=draft.text,
        citations=draft.citations(),
        sources=tuple(draft.sources),
        abstained=draft.abstained,
        model=attempt.backend.label if attempt else "",
        timings=timings,
        dropped_markers=draft.dropped,
        prompt_tokens=attempt.prompt_tokens if attempt else None,
        cached_tokens=attempt.cached_tokens if attempt else None,
        notice=" ".join(n for n in (notice, attempt.notice if attempt else "") if n),
        sentences=tuple(draft.sentences),
        conversation=draft.conversation,
    )


class _Attempt:
    """One streamed generation: yields pieces, keeps the raw text, first-token time and prompt size.

    Pieces that could be the start of the abstention sentence are held back until
    it is clear they are not, so a retried abstention never flashes on a page. In
    ``auto`` mode, when Ollama fails (down, timed out, garbled or cut off), the
    generation starts again on the embedded model and ``notice`` says so.
    """

    def __init__(self, started: float, backend: BackendLLM, *, may_fall_back: bool) -> None:
        self.started = started
        self.backend = backend
        self.may_fall_back = may_fall_back and backend.label.startswith("ollama:")
        self.notice = ""
        self.raw = ""
        self.first_token: float | None = None
        self.prompt_tokens: int | None = None
        self.cached_tokens: int | None = None

    def run(self, messages: list, services: Services) -> Iterator[str]:
        try:
            yield from self._stream(messages)
        except LLMUnavailable as exc:
            if not self.may_fall_back:
                raise
            try:
                self.backend, self.may_fall_back = services.embedded_backend, False
            except (LLMUnavailable, BadInput):  # no embedded model either: Ollama's failure is the one to fix
                raise exc from None
            self.notice = f"{exc} The embedded model answered instead."
            log.warning("%s", self.notice)
            self.raw = ""
            yield from self._stream(messages)

    def _stream(self, messages: list) -> Iterator[str]:
        held = ""
        for response in stream_chat(self.backend, messages):
            self.prompt_tokens = response.additional_kwargs.get("prompt_tokens") or self.prompt_tokens
            cached = response.additional_kwargs.get("cached_tokens")
            self.cached_tokens = cached if cached is not None else self.cached_tokens
            if not response.delta:
                continue
            self.raw += response.delta
            held += response.delta
            if not ABSTAIN_TEXT.startswith(self.raw.strip()) or not self.raw.strip():
                if self.first_token is None:  # the first words a reader sees
                    self.first_token = time.perf_counter() - self.started
                yield held
                held = ""
        # A complete abstention stays held: the caller retries or yields the final Answer.


def ask(
    question: str,
    *,
    settings: Settings | None = None,
    top_k: int | None = None,
    llm: LLM | None = None,
    services: Services | None = None,
    history: Answer | None = None,
    filters: Filters | None = None,
) -> Answer:
    """Answer ``question`` from the collection's abstracts, citing paper titles.

    Example:
        >>> answer = ask("Which architecture mixes image tokens with a 2D wavelet transform?")
        >>> for c in answer.citations: print(c.number, c.title)
        >>> ask("Which of them needs the least memory?", history=answer)  # a follow-up
        >>> ask("How is attention made cheaper?", filters=Filters(since=2023, author="Han"))

    Args and raises are those of :func:`ask_stream`.
    """
    stream = ask_stream(
        question, settings=settings, top_k=top_k, llm=llm, services=services, history=history, filters=filters
    )
    for item in stream:
        if isinstance(item, Answer):  # the Reading and the streamed pieces are for pages
            return item
    raise AssertionError("ask_stream ended without an Answer")  # pragma: no cover
