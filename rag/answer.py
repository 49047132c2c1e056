"""``ask``: the one entry point the page, the CLI and the evals all use."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from rag.citations import MARKER, ResolvedText, attribute, cite_named_papers, is_abstention, resolve_markers
from rag.errors import BadInput, EmptyQuestion, LLMUnavailable
from rag.llms import BackendLLM, stream_chat
from rag.prompt import ABSTAIN_TEXT, build_messages
from rag.retrieve import focus_passages, retrieve_timed
from rag.services import Services, get_services
from rag.settings import Settings
from rag.types import Answer, Source, Timings

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

__all__ = ["MAX_QUESTION_CHARS", "ask", "ask_stream", "clean_question", "names_outside_collection"]

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
        raise EmptyQuestion("The question is empty: type a question about the papers, e.g. "
                            "\"Which papers speed up LLM inference?\"")
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
) -> Iterator[str | Answer]:
    """Answer ``question`` from the collection, yielding text pieces as they come, then the ``Answer``.

    The streamed pieces are the model's raw words; the final ``Answer.text`` is the
    checked version (invalid markers removed, uncited sentences attributed), so a
    page should replace what it streamed with it.

    Args:
        question: the question in plain language.
        settings: defaults to ``Settings()``.
        top_k: how many papers to put in the prompt; defaults to the setting.
        llm: a llama-index LLM to use instead of the configured backend.

    Raises:
        EmptyQuestion, BadInput: the question cannot be used.
        IndexEmpty: nothing has been ingested.
        LLMUnavailable: the backend cannot answer.
    """
    settings = settings or Settings()
    started = time.perf_counter()
    text = clean_question(question)
    sources, retrieval_s = retrieve_timed(text, settings, top_k)
    best = max((s.similarity for s in sources if s.similarity is not None), default=None)
    if best is None or best < settings.retrieval.min_similarity or (
        settings.answer.require_names and names_outside_collection(text, settings)
    ):
        # Nothing in the collection is close: say so without spending a generation.
        yield ABSTAIN_TEXT
        yield Answer(text, ABSTAIN_TEXT, (), tuple(sources), True, "",
                     Timings(retrieval_s, None, time.perf_counter() - started))
        return

    services = get_services(settings)
    if settings.retrieval.passage_budget:
        sources = focus_passages(text, sources, services.embed_model, settings.retrieval.passage_budget)
    backend = services.backend if llm is None else BackendLLM(llm, f"custom:{llm.metadata.model_name}", "the given LLM", "check the LLM passed to ask()")
    attempt = _Attempt(started, backend, may_fall_back=llm is None and settings.llm.backend == "auto")
    yield from attempt.run(build_messages(text, sources), services)
    if best >= settings.answer.retry_similarity and _says_not_covered(attempt.raw):
        # Small models abstain when an abstract plainly answers; a chunk this close
        # means the question is likely covered, so ask once more without the way out.
        attempt.raw = ""
        yield from attempt.run(build_messages(text, sources, insist=True), services)
    answer = finish_answer(
        text, attempt.raw, sources, settings, attempt.backend.label,
        Timings(retrieval_s, attempt.first_token, time.perf_counter() - started), attempt.prompt_tokens,
    )
    yield replace(answer, notice=attempt.notice)


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


_NAME = re.compile(r"(?<![\w-])([A-Za-z][\w\-.]*[A-Za-z0-9])")
_QUESTION_WORDS = frozenset(
    ("What", "Which", "Who", "Whom", "Whose", "When", "Where", "Why", "How", "Does", "Do", "Did", "Is", "Are", "Can",
     "Could", "Should", "Would", "Will")
)


def names_outside_collection(question: str, settings: Settings) -> list[str]:
    """Names in the question that no stored abstract contains.

    A name is a capitalised word after the first ("Adam", "Google") or a word mixing
    letters and digits ("MI300", "GPT-4"). All-capital acronyms are not checked:
    users write "MRI" where an abstract says "MR images". A question about a name the
    collection never mentions is one the collection does not cover, however close its
    other words are (the 1.5B model otherwise answers "Adam's successor" questions
    with whatever optimizer paper was retrieved).
    """
    store = get_services(settings).store
    missing = []
    for i, word in enumerate(_NAME.findall(question)):
        word = word.removesuffix("'s").rstrip(".")
        mixed = any(c.isdigit() for c in word) and any(c.isalpha() for c in word)
        capitalised = i > 0 and word[:1].isupper() and word[1:].islower() and len(word) > 2
        if (mixed or capitalised) and word not in _QUESTION_WORDS and not store.contains_text(word.removesuffix("s") if capitalised else word):
            missing.append(word)
    return missing


def _says_not_covered(raw: str) -> bool:
    bare = MARKER.sub("", raw)
    return ABSTAIN_TEXT.lower() in bare.lower() or (is_abstention(bare) and not MARKER.search(raw))


def finish_answer(
    question: str,
    raw: str,
    sources: list[Source],
    settings: Settings,
    model: str,
    timings: Timings,
    prompt_tokens: int | None = None,
) -> Answer:
    """Turn the model's raw reply into a checked ``Answer`` (markers resolved, attribution, abstention)."""
    named, placed = cite_named_papers(raw, sources)
    resolved = resolve_markers(named, sources)
    if placed:  # citations papercite chose from the paper a sentence names count as attributed
        resolved = ResolvedText(resolved.text, tuple(replace(c, attributed=c.number in placed) for c in resolved.citations),
                                resolved.dropped)
    if _says_not_covered(raw) or (is_abstention(MARKER.sub("", resolved.text)) and not resolved.citations):
        return Answer(question, ABSTAIN_TEXT, (), tuple(sources), True, model, timings, resolved.dropped, prompt_tokens)
    if settings.answer.post_hoc_attribution:
        embed_model = get_services(settings).embed_model
        resolved = attribute(resolved, sources, embed_model.get_text_embedding_batch, settings.answer.attribution_min_similarity)
    if not resolved.citations:
        # Nothing the model wrote can be tied to a retrieved abstract: an uncited
        # answer is exactly what papercite promises never to give.
        return Answer(question, ABSTAIN_TEXT, (), tuple(sources), True, model, timings, resolved.dropped, prompt_tokens)
    return Answer(question, resolved.text, resolved.citations, tuple(sources), False, model, timings,
                  resolved.dropped, prompt_tokens)


def ask(
    question: str,
    *,
    settings: Settings | None = None,
    top_k: int | None = None,
    llm: LLM | None = None,
) -> Answer:
    """Answer ``question`` from the collection's abstracts, citing paper titles.

    Example:
        >>> answer = ask("Which architecture mixes image tokens with a 2D wavelet transform?")
        >>> for c in answer.citations: print(c.number, c.title)

    Args and raises are those of :func:`ask_stream`.
    """
    for item in ask_stream(question, settings=settings, top_k=top_k, llm=llm):
        if isinstance(item, Answer):
            return item
    raise AssertionError("ask_stream ended without an Answer")  # pragma: no cover
