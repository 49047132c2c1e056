"""The answer path as a short list of named steps, each with one job.

    retrieve -> gate -> select_context -> generate (-> retry) -> resolve_markers -> tidy -> verify -> judge
    -> decide -> compose

``rag.answer.ask.ask_stream`` runs them in that order on one :class:`Draft`. Retrieval
and generation live in ``rag.retrieve`` and ``rag.answer.ask`` (generation streams); the
other steps are here. Every step can be switched off by name
(``PAPERCITE_TUNING__CHECKS__SKIP='["gate"]'``) except ``resolve_markers`` and ``compose``,
without which a citation could name an unretrieved paper or an answer cite nothing.
Switching steps off in turn is how the ablation table in ``docs/eval/`` measures what
each one is worth. ``judge`` does nothing unless asked for (``PAPERCITE_ANSWER__JUDGE=true``):
it costs seconds per sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rag.answer.citations import MARKER, is_abstention, marker_numbers, resolve_markers, split_sentences, tidy_layout
from rag.answer.context import choose_context
from rag.answer.judge import Judge
from rag.answer.policy import NAME, QUESTION_WORDS, is_name
from rag.answer.prompt import ABSTAIN_TEXT
from rag.answer.verify import VerifyConfig, verify_sentences
from rag.settings import Settings
from rag.types import Citation, Sentence, Source, Turn

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from rag.store.chroma import Store

__all__ = ["POST_STEPS", "PRE_STEPS", "STEP_NAMES", "Draft", "Parts", "Step", "run_steps", "says_not_covered"]


@dataclass
class Parts:
    """What the steps work with, built once by the caller and passed in."""

    settings: Settings
    embed_model: BaseEmbedding
    store: Store
    judge: Judge | None = None


@dataclass
class Draft:
    """An answer on its way: what each step reads and writes.

    Attributes:
        question: the cleaned question.
        sources: the retrieved papers, numbered as the prompt numbers them (those shown first).
        context: the papers the prompt shows, as it shows them (``select_context``).
        raw: the model's reply, as generated.
        text: the answer text after the steps so far.
        sentences: the verified sentences (``verify``), or the text's sentences unverified.
        dropped: ``[n]`` markers the model wrote that name no retrieved source.
        abstained: the answer is that the collection does not cover the question.
        why: what made it abstain, for logs and the eval report.
        conversation: the chat's earlier turns when this question follows them up.
    """

    question: str
    sources: list[Source]
    context: list[Source] = field(default_factory=list)
    raw: str = ""
    text: str = ""
    sentences: list[Sentence] = field(default_factory=list)
    dropped: int = 0
    abstained: bool = False
    why: str = ""
    conversation: tuple[Turn, ...] = ()

    def read(self) -> list[Source]:
        """Every paper the model reads: this question's context and the papers earlier turns showed."""
        here = {s.paper_id for s in self.context}
        return self.context + [s for t in self.conversation for s in t.shown if s.paper_id not in here]

    def abstain(self, why: str) -> Draft:
        """This draft, now an abstention for the reason given."""
        return replace(self, abstained=True, why=why, text=ABSTAIN_TEXT)

    def citations(self) -> tuple[Citation, ...]:
        """The cited sources in order of first use; ``attributed`` when papercite, not the model, chose them."""
        if self.abstained:
            return ()
        by_number = {s.number: s for s in self.sources}
        written = {n for s in self.sentences if s.shown for n in s.written}
        return tuple(
            Citation(n, by_number[n].title, by_number[n].paper_id, attributed=n not in written)
            for n in marker_numbers(self.text)
            if n in by_number
        )


@dataclass(frozen=True)
class Step:
    """One named step: a function from draft to draft that can be switched off."""

    name: str
    run: Callable[[Draft, Parts], Draft]
    required: bool = False


# -- before generation ----------------------------------------------------------------


def gate(draft: Draft, parts: Parts) -> Draft:
    """Abstain without generating when no retrieved chunk is close to the question at all."""
    best = max((s.similarity for s in draft.sources if s.similarity is not None), default=None)
    floor = parts.settings.tuning.retrieval.min_similarity
    if best is None or best < floor:
        return draft.abstain(f"no chunk reaches cosine {floor:.2f} (best {best if best is None else round(best, 2)})")
    return draft


def name_gate(draft: Draft, parts: Parts) -> Draft:
    """Abstain without generating when the question names something no stored abstract contains.

    A name is a capitalised word after the first ("Adam") or a word mixing letters and
    digits ("MI300"). All-capital acronyms are not checked: users write "MRI" where an
    abstract says "MR images". A name is found under any of its spellings: without its
    hyphen or with one ("CIFAR10", "CIFAR-10"), with a space, or by its letter-digit
    part alone ("H2-blocker" describes a drug an abstract calls an "H2-receptor antagonist").
    """
    missing = []
    for i, word in enumerate(NAME.findall(draft.question)):
        word = word.removesuffix("'s").rstrip(".")
        capitalised = i > 0 and word[:1].isupper() and word[1:].islower() and len(word) > 2
        if not (is_name(word) or capitalised) or word in QUESTION_WORDS:
            continue
        spellings = [word.removesuffix("s") if capitalised else word]
        if "-" in word:
            spellings += [word.replace("-", ""), word.replace("-", " "), *filter(is_name, word.split("-"))]
        elif boundary := re.search(r"(?<=[A-Za-z])(?=\d)", word):  # "CIFAR10" written "CIFAR-10"
            spellings += [word[: boundary.start()] + gap + word[boundary.start() :] for gap in ("-", " ")]
        if not any(parts.store.contains_text(s) for s in spellings):
            missing.append(word)
    return draft.abstain(f"no stored abstract names {', '.join(missing)}") if missing else draft


def select_context(draft: Draft, parts: Parts) -> Draft:
    """The papers and text the prompt shows, chosen for this question (``rag.answer.context``)."""
    sources, context = choose_context(draft.question, draft.sources, parts.embed_model, parts.settings.tuning.retrieval)
    return replace(draft, sources=sources, context=context)


# -- after generation -----------------------------------------------------------------


def resolve(draft: Draft, parts: Parts) -> Draft:
    """Keep the markers that name a paper the prompt showed; drop and count the rest.

    Also drops what a small model adds without meaning to: a sentence it repeats word
    for word, and a last sentence cut off by the token limit.
    """
    resolved = resolve_markers(draft.raw, draft.read())  # the model saw these numbers and no others
    lines, seen = [], set()
    for line in resolved.text.splitlines():
        kept = []
        for sentence in split_sentences(line):
            if (key := " ".join(MARKER.sub("", sentence).lower().split())) not in seen:
                seen.add(key)
                kept.append(sentence)
        lines.append(" ".join(kept))
    text = "\n".join(line for line in lines if line)
    last = split_sentences(text.splitlines()[-1])[-1] if text.strip() else ""
    if last and not re.search(r"[.!?]\W*$", MARKER.sub("", last)) and len(split_sentences(text)) > 1:
        text = text[: text.rfind(last)].rstrip()  # cut off mid-sentence by max_tokens
        text = re.sub(r"\n?\s*\d{1,2}[.)]$", "", text).rstrip()  # and the list number it was under
    return replace(draft, text=text, dropped=resolved.dropped)


def tidy(draft: Draft, parts: Parts) -> Draft:
    """Plain sentences instead of the prompt's layout ("Abstract [2] from the paper ...")."""
    return replace(draft, text=tidy_layout(draft.text, draft.sources))


def verify(draft: Draft, parts: Parts) -> Draft:
    """Check every sentence against the abstract it cites; move or reject citations (``rag.answer.verify``)."""
    conf = parts.settings.tuning.checks
    # Checked against the papers the model was shown: it can have read nothing else.
    sentences = verify_sentences(
        draft.text,
        draft.read(),
        parts.embed_model.get_text_embedding_batch,
        VerifyConfig(conf.move_margin, conf.min_support, conf.echo_words),
        draft.question,
    )
    return replace(draft, sentences=sentences)


def judge(draft: Draft, parts: Parts) -> Draft:
    """The slow check: ask the LLM judge whether each cited sentence's abstracts support it."""
    if parts.judge is None:
        return draft
    by_number = {s.number: s for s in draft.sources}
    checked = []
    for sentence in _sentences(draft):
        if sentence.verdict != "unsupported" and sentence.citations:
            abstracts = [by_number[n].abstract or " ".join(by_number[n].passages) for n in sentence.citations]
            if not parts.judge(sentence.text, abstracts):
                sentence = replace(
                    sentence,
                    verdict="unsupported",
                    reason=f"the LLM judge found no support in {''.join(f'[{n}]' for n in sentence.citations)}",
                )
        checked.append(sentence)
    return replace(draft, sentences=checked)


def decide(draft: Draft, parts: Parts) -> Draft:
    """Abstain when the model did, or when no sentence is supported; otherwise keep what is.

    Unsupported sentences are removed (``answer.unsupported = "remove"``, the default)
    or kept marked (``"mark"``); sentences that only say the abstracts do not cover
    something are not claims and are left out.
    """
    if says_not_covered(draft.raw):
        return draft.abstain("the model said the abstracts do not cover it")
    sentences = [replace(s, shown=False) if _is_meta(s) else s for s in _sentences(draft)]
    if not any(s.shown and s.verdict != "unsupported" and s.citations for s in sentences):
        return replace(
            draft.abstain("no sentence is supported by a retrieved abstract"),
            sentences=[replace(s, shown=False) for s in sentences],
        )
    mark = parts.settings.answer.unsupported == "mark"
    return replace(
        draft, sentences=[replace(s, shown=s.shown and (s.verdict != "unsupported" or mark)) for s in sentences]
    )


def compose(draft: Draft, parts: Parts) -> Draft:
    """The answer text from the sentences kept; an answer that cites nothing is an abstention."""
    sentences = _sentences(draft)
    shown = [s for s in sentences if s.shown]
    if not any(s.citations for s in shown):
        return replace(draft.abstain("nothing in the reply cites a retrieved abstract"), sentences=sentences)
    return replace(draft, sentences=sentences, text=" ".join(s.text for s in shown))


def _sentences(draft: Draft) -> list[Sentence]:
    """The verified sentences, or (verification off) the text's sentences taken at their word."""
    if draft.sentences:
        return draft.sentences
    return [
        Sentence(
            s,
            tuple(marker_numbers(s)),
            "supported" if MARKER.search(s) else "unsupported",
            "" if MARKER.search(s) else "uncited",
            True,
            tuple(marker_numbers(s)),
        )
        for line in draft.text.splitlines()
        for s in split_sentences(line)
    ]


def says_not_covered(raw: str) -> bool:
    """The reply is the abstention sentence, or says the abstracts do not cover it and cites nothing."""
    bare = MARKER.sub("", raw)
    return ABSTAIN_TEXT.lower() in bare.lower() or (is_abstention(bare) and not MARKER.search(raw))


def _is_meta(sentence: Sentence) -> bool:
    """A sentence about the abstracts rather than the papers' content ("The abstracts do not mention X")."""
    return is_abstention(sentence.text) and not re.search(r"\d", MARKER.sub("", sentence.text))


PRE_STEPS: tuple[Step, ...] = (Step("gate", gate), Step("name_gate", name_gate), Step("select_context", select_context))
POST_STEPS: tuple[Step, ...] = (
    Step("resolve_markers", resolve, required=True),
    Step("tidy", tidy),
    Step("verify", verify),
    Step("judge", judge),
    Step("decide", decide),
    Step("compose", compose, required=True),
)
#: Every step's name, in the order they run; ``generate`` and ``retry`` live in ``rag.answer.ask``.
STEP_NAMES = ("retrieve", *(s.name for s in PRE_STEPS), "generate", "retry", *(s.name for s in POST_STEPS))


def run_steps(steps: Sequence[Step], draft: Draft, parts: Parts) -> Draft:
    """Run ``steps`` in order, skipping those switched off in settings; stop once the draft abstains."""
    skip = set(parts.settings.tuning.checks.skip)
    for step in steps:
        if draft.abstained:
            break
        if step.required or step.name not in skip:
            draft = step.run(draft, parts)
    return draft
