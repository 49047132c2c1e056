"""One cell of a table: one paper's abstract asked one short question, answered in a few words or "not stated".

A cell has instructions of its own (:data:`CELL_PROMPT`): answer in a few words copied from the
abstract or reply NOT STATED, shown once on a made-up abstract. The per-paper readings'
instructions ask for YES or NO first; under them the model's answers to a column were worse
and its confidence lower (docs/eval/README.md "Tables"). So a paper's cells share a prefix
of their own (:func:`rag.answer.readings.prefix_of` with :data:`CELL_PROMPT`): its first cell
reads the abstract and the runtime keeps it, so each further column costs only its question.

Each cell: the abstract, the column's question and :data:`CELL_ASK` (the answer alone, or NOT
STATED). One token is generated; its log-probabilities give P(stated)
(:func:`stated_probability`), which decides whether the abstract states an answer at all
(``tuning.table.accept``). Only then is the answer written, by the same request without the
NOT STATED sentence (:data:`VALUE_ASK`), and it is shown only when its abstract holds it:

- every number and rare term of the answer literally (``rag.answer.verify.missing_from``; a
  number the abstract spells out counts: "Twenty-four" holds 24), each number with what it
  counts (:func:`check_value`: "1.3 billion" is not "1.3%"), and
- at least ``tuning.table.overlap`` of its content words (the answer is taken from the
  abstract, not from the question or the model's memory).

Chosen on the dev tables against the reading's own YES/NO verdict, a per-column calibration, and
these instructions without the example: docs/eval/README.md "Tables".

An answer that fails is not shown: the cell reads "not stated", and its status says why.
The sentence a cell rests on is the abstract's sentence holding most of the answer's
words, the column's question breaking ties.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, LogProb, MessageRole

from rag.answer.citations import split_sentences
from rag.answer.context import question_words
from rag.answer.policy import NUMBER_WORDS, QUESTION_WORDS, stem
from rag.answer.readings import _abstract_block
from rag.answer.verify import content_words, evidence_in, missing_from
from rag.errors import BadInput
from rag.types import Source

__all__ = [
    "CELL_ASK",
    "CELL_PROMPT",
    "NOT_STATED",
    "VALUE_ASK",
    "Cell",
    "CellStatus",
    "Column",
    "cell_messages",
    "check_value",
    "parse_value",
    "resting_sentence",
    "spelled_numbers",
    "stated_probability",
    "unheld",
]

#: A cell's instructions, with one made-up abstract answered (a field far from both sample collections, so
#: the example teaches the form of an answer, not one).
CELL_PROMPT = (
    "You read one paper abstract and answer one question about it with a few words copied from the abstract: "
    "a name, a number with its unit, or a short phrase. If the abstract does not state the answer, reply NOT "
    "STATED. Never answer from your own knowledge.\n\n"
    'Example.\nAbstract of "Drip irrigation for tomatoes":\nWe compared drip irrigation with furrow irrigation on '
    "24 farms in southern Spain over two growing seasons. Drip irrigation raised tomato yield by 18% and cut water "
    "use by a third.\n"
    "Question: Which method was it compared with?\nAnswer: furrow irrigation\n"
    "Question: How many farms took part?\nAnswer: 24\n"
    "Question: What did the equipment cost?\nAnswer: NOT STATED\n"
    "Question: Which tomato variety was grown?\nAnswer: NOT STATED"
)
#: What a table shows in a cell its abstract does not answer.
NOT_STATED = "not stated"
#: What follows the column's question when the model decides: the answer alone, or NOT STATED. The
#: first token's log-probabilities give P(stated) (:func:`stated_probability`).
CELL_ASK = (
    "Give only the answer, in a few words copied from the abstract. If this abstract does not state the answer, "
    "reply NOT STATED."
)
#: What follows it when the model, sure enough that the abstract states it, writes the answer: greedy
#: decoding picks NOT STATED whenever it is the likeliest single reply, even at P(stated) 0.6.
VALUE_ASK = "Give only the answer, in a few words copied from the abstract."
#: Longest column a user may type: a short question, not a prompt.
LONGEST_COLUMN = 300

CellStatus = Literal["stated", "not stated", "unsupported"]


@dataclass(frozen=True)
class Column:
    """One column of a table: a short name for its header and the question asked of every paper.

    ``Column.parse("Dataset: Which dataset is evaluated on?")`` is named "Dataset"; a column
    with no name before a colon (at most four words, not starting as a question does) is named
    by its question.
    """

    name: str
    question: str

    @classmethod
    def parse(cls, text: str) -> Column:
        """The column ``text`` describes ("Name: question" or a question alone).

        Raises:
            BadInput: ``text`` is empty or longer than 300 characters.
        """
        text = " ".join(str(text).split())
        if not text:
            raise BadInput('A column is empty: give a short question, e.g. --column "Dataset: Which dataset is used?".')
        if len(text) > LONGEST_COLUMN:
            raise BadInput(
                f"The column {text[:40]!r}... is {len(text)} characters: keep a column under {LONGEST_COLUMN}, "
                "one short question."
            )
        name, sep, question = text.partition(":")
        words = name.split()
        if sep and words and question.strip() and len(words) <= 4 and words[0].capitalize() not in QUESTION_WORDS:
            return cls(name.strip(), question.strip())
        return cls(text, text)


@dataclass(frozen=True)
class Cell:
    """What one paper's abstract says to one column.

    Attributes:
        row: the paper's row, from 1.
        paper_id: the paper's stable id.
        title: the paper's title (what the cell cites).
        column: the column's name.
        value: the answer the model wrote, checked against the abstract ("" when it wrote none).
        status: ``stated`` (shown), ``not stated`` (the abstract does not answer), or
            ``unsupported`` (the model wrote an answer its abstract does not hold: not shown).
        confidence: the model's P(YES) that the abstract answers, when the backend gives it.
        evidence: the abstract's sentence a stated cell rests on ("" otherwise).
        reason: why a cell is not stated, in words a reader can check.
        seconds: how long the cell took.
    """

    row: int
    paper_id: str
    title: str
    column: str
    value: str
    status: CellStatus
    confidence: float | None = None
    evidence: str = ""
    reason: str = ""
    seconds: float = 0.0

    @property
    def shown(self) -> str:
        """What the table shows: the value when stated, else "not stated"."""
        return self.value if self.status == "stated" else NOT_STATED


def cell_messages(source: Source, column: Column, ask: str = CELL_ASK) -> list[ChatMessage]:
    """The chat messages asking ``source``'s abstract ``column``'s question (``ask``: decide, or
    :data:`VALUE_ASK`: write the answer); they start as every cell of the paper does."""
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=CELL_PROMPT),
        ChatMessage(role=MessageRole.USER, content=f"{_abstract_block(source)}\n\nQuestion: {column.question}\n{ask}"),
    ]


_YES = re.compile(r"^\W*yes\b[\W]*", re.IGNORECASE)
_SAYS_NONE = re.compile(
    r"^\W*(?:no\b|none\b|n/?a\b|unknown\b|not (?:stated|mentioned|specified|reported|given|provided|available)\b|"
    r"the abstract (?:does not|doesn't)|it (?:is|was) not)",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(
    r"^(?:answer\s*:\s*|the answer is\s*|(?:the )?(?:abstract|paper|study|authors?) (?:reports?|states?|uses?|"
    r"evaluates?(?: on)?|mentions?)(?: that)?\s*[:,]?\s*)",
    re.IGNORECASE,
)


def stated_probability(logprobs: Sequence[Sequence[LogProb]] | None) -> float | None:
    """P(the reply is an answer) at its first token that is not blank: 1 - P(NOT / NO / NONE / N/A ...) over
    the alternatives the backend listed; None without log-probabilities."""
    for alternatives in logprobs or ():
        if not alternatives or not alternatives[0].token.strip():
            continue
        total = none = 0.0
        for alt in alternatives:
            p = math.exp(alt.logprob)
            total += p
            if _NONE_TOKEN.fullmatch(alt.token.strip()):
                none += p
        return 1.0 - none / total if total > 0 else None
    return None


#: A first token that begins a refusal, as a whole token ("Normal saline" is an answer).
_NONE_TOKEN = re.compile(r"(?:not?|none|n/?a|unknown)\W*", re.IGNORECASE)


def parse_value(response: ChatResponse) -> str:
    """The answer in a reply that goes on from YES: its first line or sentence, without lead-ins
    ("Answer:", "The abstract reports that") or a closing full stop; "" when it says there is none."""
    text = (response.message.content or "").strip()
    text = _YES.sub("", text, count=1)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if not line or _SAYS_NONE.match(line):
        return ""
    first = split_sentences(line)[0] if split_sentences(line) else line
    value = _LEAD_IN.sub("", first).strip().strip('"').rstrip(".").strip()
    return value[:1].upper() + value[1:] if value else ""


def check_value(value: str, source: Source, overlap: float) -> tuple[bool, str]:
    """Whether ``value`` is held by ``source``'s abstract: every number and rare term literally, and at least
    ``overlap`` of its content words; with the reason when it is not."""
    if not value:
        return False, "the model wrote no answer"
    if missing := unheld(value, source):
        return False, f"the abstract does not state {missing[0]!r}"
    abstract = _text(source)
    held_kinds = _magnitudes(abstract)
    if wrong := next(((n, k) for n, k in _magnitudes(value) if (n, k) not in held_kinds), None):
        return False, f"the abstract does not state {wrong[0]} as {_KIND_WORDS[wrong[1]]}"
    words = content_words(value)
    if words and not evidence_in(value):
        held = words & content_words(abstract)
        if len(held) < overlap * len(words):
            return False, f"only {len(held)} of the answer's {len(words)} words are in the abstract"
    return True, ""


def unheld(value: str, source: Source) -> list[str]:
    """The numbers and rare terms of ``value`` that ``source``'s title and abstract lack, numbers first; a number
    the abstract spells out is held ("Twenty-four patients" holds 24)."""
    spelled = spelled_numbers(_text(source))
    return [item for item in missing_from(value, source) if item not in spelled]


def _text(source: Source) -> str:
    return f"{source.title} {source.abstract or ' '.join(source.passages)}"


_TENS = {word: 10 * n for n, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_DIGITS = [word for word, n in NUMBER_WORDS.items() if 0 < int(n) < 10]
_SPELLED = re.compile(rf"\b({'|'.join(_TENS)})(?:[\s-]({'|'.join(_DIGITS)}))?\b", re.IGNORECASE)


def spelled_numbers(text: str) -> set[str]:
    """The numbers from 20 to 99 ``text`` spells out, as digits: "Twenty-four patients" holds "24". Smaller ones
    (``NUMBER_WORDS``) every check against an abstract already reads (``rag.answer.verify``)."""
    return {str(_TENS[tens.lower()] + int(NUMBER_WORDS.get(ones.lower(), 0))) for tens, ones in _SPELLED.findall(text)}


_MAGNITUDE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s*-?\s*(%|percent\b|x\b|×|times\b|-?fold\b|trillion\b|billion\b|million\b|"
    r"thousand\b|[tbmk]\b)",
    re.IGNORECASE,
)
_KINDS = {"%": "%", "percent": "%", "x": "x", "×": "x", "times": "x", "fold": "x", "-fold": "x"}
_KINDS |= {"trillion": "t", "t": "t", "billion": "b", "b": "b", "million": "m", "m": "m", "thousand": "k", "k": "k"}
_KIND_WORDS = {
    "%": "a percentage",
    "x": "a ratio",
    "t": "trillions",
    "b": "billions",
    "m": "millions",
    "k": "thousands",
}


def _magnitudes(text: str) -> set[tuple[str, str]]:
    """Each number with a magnitude after it ("1.3 billion", "7B", "30%", "2.5x"): (number, kind).

    A cell's "1.3 billion parameters" is not held by an abstract's "1.3%": the number is there,
    what it counts is not.
    """
    return {(n, _KINDS[k.lower()]) for n, k in _MAGNITUDE.findall(text)}


def resting_sentence(value: str, question: str, source: Source) -> str:
    """The abstract's sentence that holds most of ``value``'s numbers, terms and words (the question's words
    break ties); the title when no sentence holds any."""
    sentences = split_sentences(source.abstract or " ".join(source.passages))
    evidence = evidence_in(value)
    literal = [item.lower() for item in evidence.items()]
    words = content_words(value)
    asked = question_words(question)

    def score(sentence: str) -> tuple[int, int, int]:
        lower = sentence.lower()
        return (
            sum(item in lower for item in literal),
            len(words & content_words(sentence)),
            len(asked & {stem(w) for w in re.findall(r"\w+", lower)}),
        )

    scored = [(score(s), -i, s) for i, s in enumerate(sentences)]
    best = max(scored, default=None)
    if best is None or best[0][:2] == (0, 0):
        return source.title
    return best[2]
