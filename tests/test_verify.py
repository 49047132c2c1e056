"""Sentence-level verification: literal evidence, semantic support, and what an answer shows."""

from __future__ import annotations

import math
from typing import Any

from rag.answer.verify import VerifyConfig, evidence_in, verify_sentences
from rag.types import Source

CONF = VerifyConfig(move_margin=0.15, min_support=0.3)
SOURCES = [
    Source(
        1,
        "p1",
        "WaveMix: Wavelet Mixing",
        ("x",),
        0.1,
        abstract="A 2D wavelet transform mixes image tokens. It is 12% more accurate using deep neural networks.",
    ),
    Source(
        2,
        "p2",
        "Adding Gradient Noise Improves Learning",
        ("x",),
        0.1,
        abstract="Adding gradient noise cuts the error rate by 72% and trains a 20-layer net.",
    ),
    Source(
        3,
        "p3",
        "Duplex: A Device for Experts",
        ("x",),
        0.1,
        abstract="Duplex runs mixture-of-experts layers on Logic-PIM, 2.07x faster.",
    ),
]


def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic stand-in for the encoder: one axis per keyword."""
    keys = ["wavelet", "noise", "expert", "weather"]
    vectors = []
    for text in texts:
        v = [1.0 if k in text.lower() else 0.0 for k in keys]
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        vectors.append([x / norm for x in v])
    return vectors


def _verify(text: str) -> list[Any]:
    return verify_sentences(text, SOURCES, embed, CONF)


def test_numbers_and_rare_terms_are_the_literal_evidence() -> None:
    found = evidence_in("MCUFormer reaches 73.62% top-1 with 320KB on STM32F746 and CIFAR-10, 1,000 images [1].")
    assert found.numbers == {"73.62", "320", "1000"}
    assert found.terms == {"MCUFormer", "top-1", "STM32F746", "CIFAR-10"}
    assert not evidence_in("Yes, adding residual connections speeds up training [2].")


def test_a_number_cited_to_the_wrong_paper_moves_to_the_paper_that_states_it() -> None:
    (sentence,) = _verify("Noise cuts the error rate by 72% [1].")
    assert sentence.verdict == "corrected" and sentence.citations == (2,) and sentence.written == (1,)
    assert sentence.text == "Noise cuts the error rate by 72% [2]."
    assert "72" in sentence.reason and "[2]" in sentence.reason


def test_a_number_no_retrieved_abstract_states_is_unsupported() -> None:
    (sentence,) = _verify("Gradient noise cuts the error rate by 95% [2].")
    assert sentence.verdict == "unsupported" and "95" in sentence.reason and "no retrieved abstract" in sentence.reason


def test_names_count_as_evidence_and_acronyms_may_be_spelled_out() -> None:
    moved, spelled, supported = _verify(
        "Duplex runs on Logic-PIM [1]. WaveMix uses DNNs [1]. Noise helps a 20-layer net [2]."
    )
    assert moved.verdict == "corrected" and moved.citations == (3,)
    assert spelled.verdict == "supported"  # "DNN" is "deep neural networks" in [1]
    assert supported.verdict == "supported" and supported.citations == (2,)


def test_a_citation_holding_none_of_the_evidence_is_dropped_beside_one_that_holds_it() -> None:
    (sentence,) = _verify("It cuts errors by 72% [1][2].")
    assert sentence.citations == (2,) and sentence.verdict == "corrected"


def test_sentences_without_literal_evidence_are_judged_by_meaning() -> None:
    moved, attributed, unsupported = _verify("Gradient noise helps [1]. Wavelets mix tokens. The weather is nice [3].")
    assert moved.verdict == "corrected" and moved.citations == (2,) and "closer in meaning" in moved.reason
    assert attributed.verdict == "corrected" and attributed.citations == (1,) and attributed.written == ()
    assert unsupported.verdict == "unsupported" and unsupported.citations == (3,)


def test_markers_end_up_at_the_end_of_their_sentence() -> None:
    (sentence,) = _verify("[1] WaveMix mixes wavelet tokens.")
    assert sentence.text == "WaveMix mixes wavelet tokens [1]."


def test_a_sentence_that_restates_the_question_instead_of_the_abstract_is_unsupported() -> None:
    question = "Does repetitive transcranial magnetic stimulation reduce gradient noise in deep nets?"
    echo, reported = verify_sentences(
        "Yes, repetitive transcranial magnetic stimulation reduces gradient noise [2]. "
        "Adding gradient noise cuts the error rate by 72% [2].",
        SOURCES,
        embed,
        CONF,
        question,
    )
    assert echo.verdict == "unsupported" and "restates the question" in echo.reason and "magnet" in echo.reason
    assert reported.verdict == "supported"


def test_the_prompt_shows_only_papers_close_to_the_best_numbered_first(sample_settings: Any) -> None:
    from dataclasses import replace

    from rag.answer.steps import Draft, Parts, select_context
    from rag.services import Services

    far, best, close = (replace(s, similarity=sim) for s, sim in zip(SOURCES, (0.30, 0.70, 0.62)))
    ranked = [replace(best, number=1), replace(far, number=2), replace(close, number=3)]
    services = Services(sample_settings)
    draft = select_context(Draft("q", ranked), Parts(sample_settings, services.embed_model, services.store))
    assert [s.title for s in draft.context] == [best.title, close.title]  # 0.30 is more than 0.12 below 0.70
    assert [s.number for s in draft.sources] == [1, 2, 3] and draft.sources[2].title == far.title
    assert all(s.passages == (s.abstract,) for s in draft.context)  # whole abstracts within the word budget
