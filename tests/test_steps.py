"""Each step of the answer path on its own, over a small fake store and a word-count encoder.

No MiniLM, no Chroma, no model: a step is a function from draft to draft, and these tests
hand it the parts it reads (``Parts``) built from fakes, so a failure names the step. The
end-to-end tests (test_answer.py, test_per_paper.py) run the same steps on the real parts.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import get_args

import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import ValidationError

from rag.answer import per_paper, steps
from rag.answer.prompt import ABSTAIN_TEXT
from rag.answer.readings import parse_finding, yes_probability
from rag.settings import ReadingSettings, Settings, SkippableStep
from rag.types import PaperReading, Source

WAVEMIX = Source(
    1,
    "p1",
    "WaveMix: resource-efficient token mixing",
    ("WaveMix mixes image tokens with a 2D discrete wavelet transform and reaches 75.3% mIoU on Cityscapes.",),
    0.03,
    similarity=0.62,
    abstract="WaveMix mixes image tokens with a 2D discrete wavelet transform and reaches 75.3% mIoU on Cityscapes.",
)
GPIPE = Source(
    2,
    "p2",
    "GPipe: pipeline parallelism",
    ("GPipe splits a network into stages and trains a 557M-parameter AmoebaNet across 8 accelerators.",),
    0.02,
    similarity=0.40,
    abstract="GPipe splits a network into stages and trains a 557M-parameter AmoebaNet across 8 accelerators.",
)


class WordCounts(BaseEmbedding):
    """A bag-of-words encoder: each word hashed into one of 256 dimensions, then normalised."""

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * 256
        for word in re.findall(r"\w+", text.lower()):
            vector[sum(map(ord, word)) % 256] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


class FakeStore:
    """What the steps ask of a store: whether any stored abstract holds a piece of text."""

    def __init__(self, *sources: Source) -> None:
        self.text = " ".join(s.abstract for s in sources).lower()

    def contains_text(self, term: str) -> bool:
        return term.lower() in self.text


@pytest.fixture
def parts() -> steps.Parts:
    return steps.Parts(Settings(), WordCounts(), FakeStore(WAVEMIX, GPIPE))  # type: ignore[arg-type]


def _draft(question: str, raw: str = "", sources: tuple[Source, ...] = (WAVEMIX, GPIPE)) -> steps.Draft:
    return steps.Draft(question, list(sources), context=list(sources), raw=raw)


def test_gate_abstains_only_when_no_paper_is_close(parts: steps.Parts) -> None:
    far = [replace(s, similarity=0.1) for s in (WAVEMIX, GPIPE)]
    assert steps.gate(steps.Draft("anything", far), parts).abstained
    assert not steps.gate(_draft("How does WaveMix mix tokens?"), parts).abstained


def test_name_gate_abstains_on_a_name_no_abstract_holds_under_any_spelling(parts: steps.Parts) -> None:
    assert "Zorblax-9" in steps.name_gate(_draft("How does Zorblax-9 mix tokens?"), parts).why
    assert not steps.name_gate(_draft("How does WaveMix mix tokens?"), parts).abstained
    assert not steps.name_gate(_draft("Which model reaches high mIoU on Cityscapes?"), parts).abstained
    assert not steps.name_gate(_draft("What does the AmoebaNet-557M run on?"), parts).abstained  # "557M" is stored


def test_resolve_keeps_markers_of_shown_papers_and_drops_repeats_and_a_cut_sentence(parts: steps.Parts) -> None:
    raw = "WaveMix uses wavelets [1]. WaveMix uses wavelets [1]. GPipe pipelines [7]. It was cut off by"
    draft = steps.resolve(_draft("q", raw), parts)
    assert draft.text == "WaveMix uses wavelets [1]. GPipe pipelines." and draft.dropped == 1


def test_verify_rejects_a_number_the_cited_abstract_lacks(parts: steps.Parts) -> None:
    draft = replace(_draft("How good is WaveMix?"), text="WaveMix reaches 76.5% mIoU on Cityscapes [1].")
    checked = steps.verify(draft, parts).sentences
    assert [s.verdict for s in checked] == ["unsupported"] and "76.5" in checked[0].reason
    kept = steps.verify(replace(draft, text="WaveMix reaches 75.3% mIoU on Cityscapes [1]."), parts).sentences
    assert [s.verdict for s in kept] == ["supported"]


def test_decide_abstains_when_the_model_did_or_nothing_is_supported(parts: steps.Parts) -> None:
    said_so = replace(_draft("q", raw=ABSTAIN_TEXT), text=ABSTAIN_TEXT)
    assert steps.decide(said_so, parts).abstained
    unsupported = steps.verify(replace(_draft("q"), text="WaveMix reaches 99.9% [1]."), parts)
    assert steps.decide(unsupported, parts).abstained
    supported = steps.verify(replace(_draft("q"), text="WaveMix reaches 75.3% mIoU on Cityscapes [1]."), parts)
    assert not steps.decide(supported, parts).abstained


def test_compose_joins_the_shown_sentences_and_abstains_on_no_citation(parts: steps.Parts) -> None:
    assert steps.compose(replace(_draft("q"), text="Nothing cited here."), parts).abstained
    kept = steps.compose(replace(_draft("q"), text="WaveMix uses wavelets [1]."), parts)
    assert kept.text == "WaveMix uses wavelets [1]." and [c.number for c in kept.citations()] == [1]


def test_papers_to_read_keeps_the_best_and_those_close_to_it_unless_several_are_asked() -> None:
    conf = ReadingSettings()
    far = replace(GPIPE, similarity=WAVEMIX.similarity - conf.read_margin - 0.01)  # type: ignore[operator]
    assert per_paper.papers_to_read([WAVEMIX, far], conf, several=False, most=5) == [WAVEMIX]
    assert per_paper.papers_to_read([WAVEMIX, far], conf, several=True, most=5) == [WAVEMIX, far]


def _reading(number: int, confidence: float, supported: bool = True) -> PaperReading:
    return PaperReading(number, f"p{number}", f"T{number}", "yes", confidence, "found.", supported)


def test_decide_readings_cites_the_best_for_one_finding_and_every_close_one_for_several() -> None:
    conf = ReadingSettings()
    readings = [_reading(1, 0.9), _reading(2, 0.8), _reading(3, 0.2)]
    one = per_paper.decide(readings, conf, several=False)
    assert [r.number for r in one if r.cited] == [1]
    several = per_paper.decide(readings, conf, several=True)
    assert [r.number for r in several if r.cited] == [1, 2]  # 0.8 is within several_margin of 0.9; 0.2 is not
    assert not any(r.cited for r in per_paper.decide([_reading(1, 0.9, supported=False)], conf, several=False))


def test_a_reading_s_confidence_counts_every_casing_of_yes_and_no() -> None:
    from llama_index.core.base.llms.types import LogProb

    first = [LogProb(token="YES", logprob=math.log(0.5)), LogProb(token="yes", logprob=math.log(0.1)),
             LogProb(token="NO", logprob=math.log(0.4))]  # fmt: skip
    assert yes_probability([first]) == pytest.approx(0.6)
    assert yes_probability([[LogProb(token="Maybe", logprob=0.0)]]) is None


def test_a_finding_drops_its_opener_and_keeps_whole_sentences() -> None:
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse

    reply = ChatResponse(message=ChatMessage(content="YES\nThe abstract reports that it reaches 75.3% mIoU. It also"))
    assert parse_finding(reply) == "It reaches 75.3% mIoU."


def test_a_step_name_that_does_not_exist_is_refused() -> None:
    always = {"retrieve", "generate", "resolve_markers", "compose"}
    assert set(get_args(SkippableStep)) == {name for name in steps.STEP_NAMES if name not in always}
    assert Settings(tuning={"checks": {"skip": ["gate", "verify"]}}).tuning.checks.skip == ("gate", "verify")
    with pytest.raises(ValidationError, match="skip"):
        Settings(tuning={"checks": {"skip": ["verfy"]}})
