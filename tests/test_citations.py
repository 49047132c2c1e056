"""Citation markers, the prompt-layout tidy-up and abstention detection, without any model."""

from __future__ import annotations

import pytest

from rag.answer.citations import is_abstention, resolve_markers, split_sentences, tidy_layout
from rag.types import Source

SOURCES = [
    Source(1, "p1", "WaveMix", ("A 2D wavelet transform mixes tokens.",), 0.03, 0.6),
    Source(2, "p2", "Gradient Noise", ("Adding gradient noise helps deep nets.",), 0.02, 0.4),
    Source(3, "p3", "Duplex", ("A device for mixture of experts inference.",), 0.01, 0.3),
]


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("WaveMix uses wavelets [1].", [1]),
        ("Both help [1][2].", [1, 2]),
        ("Both help [1, 2].", [1, 2]),
        ("All three [1-3].", [1, 2, 3]),
        ("Noise [2]. Wavelets [1]. Noise again [2].", [2, 1]),
        ("Spaced [ 3 ].", [3]),
    ],
)
def test_markers_are_parsed_in_first_use_order(text: str, numbers: list[int]) -> None:
    resolved = resolve_markers(text, SOURCES)
    assert [c.number for c in resolved.citations] == numbers
    assert [c.title for c in resolved.citations] == [SOURCES[n - 1].title for n in numbers]
    assert resolved.dropped == 0


def test_markers_outside_the_retrieved_set_are_dropped_and_counted() -> None:
    resolved = resolve_markers("Real [1]. Invented [7]. Mixed [2, 9]. Zero [0].", SOURCES)
    assert [c.number for c in resolved.citations] == [1, 2]
    assert resolved.dropped == 3
    assert "[7]" not in resolved.text and "[9]" not in resolved.text and "[0]" not in resolved.text
    assert resolved.text == "Real [1]. Invented. Mixed [2]. Zero."


def test_no_sources_means_no_citation_can_survive() -> None:
    resolved = resolve_markers("Claim [1].", [])
    assert resolved.citations == () and resolved.dropped == 1


def test_sentences_keep_their_trailing_markers() -> None:
    assert split_sentences("First claim. [1] Second claim [2]. Third.") == [
        "First claim. [1]",
        "Second claim [2].",
        "Third.",
    ]


def test_the_prompt_layout_becomes_plain_sentences() -> None:
    sources = [
        Source(1, "p1", "ArchGym: An Open-Source Gymnasium", ("x",), 0.1),
        Source(2, "p2", "INT2.1: Towards Fine-Tunable Quantized LLMs", ("x",), 0.1),
        Source(3, "p3", "Adding Gradient Noise Improves Learning", ("x",), 0.1),
    ]
    assert (
        tidy_layout('Abstract [1] from the paper "ArchGym: An Open-Source Gymnasium" runs 21K experiments.', sources)
        == "ArchGym [1] runs 21K experiments."
    )
    assert tidy_layout("[1] Abstract [2] cuts VRAM by 5.6 times.", sources) == "[1] INT2.1 [2] cuts VRAM by 5.6 times."
    assert tidy_layout("Abstract [3] adds noise. abstracts [1] and [2] agree.", sources) == (
        "The study [3] adds noise. These studies [1][2] agree."
    )
    assert (
        tidy_layout("INT2.1: Towards Fine-Tunable Quantized LLMs cuts memory [2].", sources)
        == "INT2.1 cuts memory [2]."
    )
    assert tidy_layout("It mixes tokens [1].", sources) == "It mixes tokens [1]."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The collection does not cover this question.", True),
        ("The abstracts do not mention sourdough.", True),
        ("There is no information about that in the abstracts.", True),
        ("WaveMix mixes tokens with a wavelet transform [1].", False),
    ],
)
def test_abstention_is_recognised(text: str, expected: bool) -> None:
    assert is_abstention(text) is expected
