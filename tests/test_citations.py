"""Citation markers, attribution and abstention detection, without any model."""

from __future__ import annotations

import pytest

from rag.citations import attribute, is_abstention, resolve_markers, split_sentences
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
    assert split_sentences("First claim. [1] Second claim [2]. Third.") == ["First claim. [1]", "Second claim [2].", "Third."]


def _embed(texts: list[str]) -> list[list[float]]:
    # Deterministic stand-in for the encoder: one axis per keyword.
    keys = ["wavelet", "noise", "experts"]
    vecs = []
    for t in texts:
        v = [1.0 if k in t.lower() else 0.0 for k in keys]
        norm = sum(x * x for x in v) ** 0.5 or 1.0
        vecs.append([x / norm for x in v])
    return vecs


def test_attribution_cites_the_most_similar_source_for_uncited_sentences() -> None:
    resolved = resolve_markers("It adds gradient noise during training. It uses a wavelet transform [1].", SOURCES)
    attributed = attribute(resolved, SOURCES, _embed, min_similarity=0.5)
    assert attributed.text == "It adds gradient noise during training [2]. It uses a wavelet transform [1]."
    assert [(c.number, c.attributed) for c in attributed.citations] == [(2, True), (1, False)]


def test_attribution_leaves_unsupported_sentences_alone() -> None:
    resolved = resolve_markers("The weather is lovely in spring today.", SOURCES)
    assert attribute(resolved, SOURCES, _embed, min_similarity=0.5).citations == ()


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


def test_a_sentence_naming_one_paper_cites_that_paper() -> None:
    from rag.citations import cite_named_papers

    sources = [
        Source(1, "p1", "Ladder-residual: parallelism-aware architecture", ("x",), 0.1),
        Source(2, "p2", "INT2.1: Towards Fine-Tunable Quantized LLMs", ("x",), 0.1),
        Source(3, "p3", "Algorithm-hardware Co-design for Deformable Convolution", ("x",), 0.1),
    ]
    # The model copied the prompt's "[1] Title:" layout with another paper's title.
    assert cite_named_papers("[1] INT2.1 cuts VRAM by 5.6 times.", sources) == ("INT2.1 cuts VRAM by 5.6 times [2].", {2})
    assert cite_named_papers("[1] Title: Algorithm-hardware Co-design for Deformable Convolution\n[1] Title: INT2.1",
                             sources) == ("Title: Algorithm-hardware Co-design for Deformable Convolution [3]\nTitle: INT2.1 [2]",
                                          {2, 3})
    assert cite_named_papers("INT2.1 runs on laptops. It is small [2].", sources) == (
        "INT2.1 runs on laptops [2]. It is small [2].", set())  # the model cited [2] itself
    # Already right, naming none, or naming two: untouched.
    for text in ("INT2.1 cuts VRAM [2].", "It mixes tokens [1].", "Ladder-residual and INT2.1 differ [1]."):
        assert cite_named_papers(text, sources) == (text, set())
    # "INT2.1" inside another word is not a mention.
    assert cite_named_papers("XINT2.1Y is fast [1].", sources) == ("XINT2.1Y is fast [1].", set())
