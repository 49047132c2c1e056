"""One paper read on its own: does its abstract answer the question, how sure is the model, what does it report.

A small model judges one abstract far better than five at once (PaperQA2's "gather
evidence" step reads each passage alone for the same reason). The prompt puts the fixed
instructions and the abstract first and the question last, so the instructions and
the abstract form a prefix that does not depend on the question: a runtime that keeps
prompts in a cache (llama.cpp's host-memory prompt cache, Ollama's KV cache) reads a
paper once and later questions about it cost only their own tokens.

The reply starts with YES or NO. Where the backend gives log-probabilities
(the embedded llama.cpp, OpenAI-compatible servers, Ollama), the model's confidence is
P(YES) / (P(YES) + P(NO)) over the first token's alternatives, every casing counted; where
it gives none, the first word decides and the confidence is None. After YES comes the
finding: what the paper reports, which is then checked against that one abstract
(:func:`check_finding`) like any answer sentence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, LogProb, MessageRole

from rag.answer.citations import split_sentences
from rag.answer.prompt import _defang
from rag.answer.verify import Embed, VerifyConfig, verify_sentences
from rag.types import Source

__all__ = [
    "FINDING_PREFILL",
    "FIRST_WORD",
    "LOGPROBS",
    "READING_PROMPT",
    "RESTATED",
    "Verdict",
    "check_finding",
    "finding_messages",
    "parse_finding",
    "parse_verdict",
    "prefix_of",
    "reading_messages",
    "warm_messages",
    "yes_probability",
]

#: How :mod:`rag.answer.verify` says a sentence restated the question instead of reporting the abstract.
RESTATED = "restates the question"
#: ``Answer.confidence_from`` values.
LOGPROBS = "log-probabilities"
FIRST_WORD = "first word"

READING_PROMPT = (
    "You read one paper abstract and a question. Decide whether this abstract itself answers the question. "
    "Reply YES or NO first. If NO, stop. If YES, add one sentence stating what the abstract reports that "
    "answers the question, with its numbers."
)


def reading_messages(source: Source, question: str, previous: str | None = None) -> list[ChatMessage]:
    """The chat messages that read ``source`` for ``question``: instructions, abstract, then the question.

    ``previous`` is the chat's earlier question when ``question`` follows it up, so that
    "how much faster is it?" is read with what "it" is.
    """
    asked = f"Earlier question: {previous}\nQuestion: {question}" if previous else f"Question: {question}"
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=READING_PROMPT),
        ChatMessage(
            role=MessageRole.USER,
            content=f"{_abstract_block(source)}\n\n{asked}\nDoes this abstract answer the question?",
        ),
    ]


def prefix_of(source: Source, instructions: str = READING_PROMPT) -> str:
    """The text every request about ``source`` under ``instructions`` starts with, whatever the question: what a
    runtime keeps read. A reading's by default; a table cell's (:data:`rag.answer.cells.CELL_PROMPT`) differ."""
    return f"{instructions}\n{_abstract_block(source)}"


def warm_messages(source: Source, instructions: str = READING_PROMPT) -> list[ChatMessage]:
    """A request with no question under ``instructions`` (a reading's, or a table cell's): what ``papercite warm``
    sends so the runtime caches the paper's prefix."""
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=instructions),
        ChatMessage(role=MessageRole.USER, content=f"{_abstract_block(source)}\n\nQuestion:"),
    ]


def _abstract_block(source: Source) -> str:
    text = source.abstract or " ".join(source.passages)
    return f'Abstract of "{_defang(source.title).strip()}":\n{_defang(text).strip()}'


@dataclass(frozen=True)
class Verdict:
    """A reading's first word: ``yes`` or ``no``, and the model's confidence in yes when the backend tells it."""

    said: str
    confidence: float | None


_VERDICT = re.compile(r"^\W*(yes|no)\b\W*", re.IGNORECASE)
_OPENERS = re.compile(
    r"^(?:the (?:abstract|paper|study|authors?) (?:reports?|states?|shows?|finds?|found|says?)(?: that)?|"
    r"it reports(?: that)?|its finding is(?: that)?)\s*[:,]?\s*",
    re.IGNORECASE,
)
#: What a finding's generation is started with: the model goes on from its own YES.
FINDING_PREFILL = "YES\n"


def parse_verdict(response: ChatResponse) -> Verdict:
    """The verdict of a reading's first token(s): the word said, and P(yes) from the log-probabilities when given.

    Anything but a first word YES reads as no.
    """
    match = _VERDICT.match((response.message.content or "").strip())
    said = match.group(1).lower() if match else "no"
    return Verdict(said, yes_probability(response.logprobs))


def finding_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """A reading's messages with the model's YES already written: it goes on with the finding."""
    return [*messages, ChatMessage(role=MessageRole.ASSISTANT, content=FINDING_PREFILL)]


def parse_finding(response: ChatResponse) -> str:
    """The finding in a reply that goes on from YES: its first two whole sentences, without
    "The abstract reports that" (the reader knows which abstract)."""
    text = (response.message.content or "").strip()
    match = _VERDICT.match(text)  # backends that echo the written YES, and those that do not
    rest = " ".join((text[match.end() :] if match else text).split())
    sentences = split_sentences(rest)
    whole = [s for s in sentences if re.search(r"[.!?]\W*$", s)]
    kept = _OPENERS.sub("", " ".join((whole or sentences)[:2]))
    return kept[:1].upper() + kept[1:] if kept else ""


def yes_probability(logprobs: Sequence[Sequence[LogProb]] | None) -> float | None:
    """P(YES) / (P(YES) + P(NO)) at the first token that is not blank, every casing counted; None without either."""
    for alternatives in logprobs or ():
        if not alternatives or not alternatives[0].token.strip():
            continue
        yes = no = 0.0
        for alt in alternatives:
            word = alt.token.strip().lower()
            if word.startswith("yes"):
                yes += math.exp(alt.logprob)
            elif word.startswith("no"):
                no += math.exp(alt.logprob)
        return yes / (yes + no) if yes + no > 0 else None
    return None


def check_finding(finding: str, source: Source, question: str, embed: Embed, conf: VerifyConfig) -> tuple[bool, str]:
    """Whether ``finding`` is supported by its own abstract (numbers and rare terms literally, meaning as
    :mod:`rag.answer.verify` checks any sentence), and the reason when it is not."""
    if not finding:
        return False, "the model stated no finding"
    checked = verify_sentences(f"{finding} [{source.number}]", [source], embed, conf, question)
    bad = [s for s in checked if s.verdict == "unsupported"]
    if not checked:
        return False, "the finding states nothing to check"
    if bad:
        return False, f"finding not supported: {bad[0].reason}"
    return True, ""
