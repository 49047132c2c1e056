"""What the prompt shows per question (rag/answer/context.py), with the real encoder."""

from __future__ import annotations

from typing import Any

import pytest

from rag.answer.citations import split_sentences
from rag.answer.context import asks_for_several, choose_context
from rag.types import Source

ABSTRACTS = (
    (
        "WaveMix: mixing image tokens with wavelets",
        (
            "We propose WaveMix, an architecture that mixes image tokens with a multi-level 2D discrete wavelet "
            "transform. It needs no self-attention and no convolution over large kernels. WaveMix reaches 82.1% "
            "top-1 accuracy on ImageNet with 40% fewer parameters than a comparable vision transformer. Training "
            "takes one day on one GPU. We release code and weights."
        ),
    ),
    (
        "Pruned adapters for speech",
        (
            "We prune adapter weights for speech recognition. The pruned adapters keep word error rate within 0.3 "
            "points of dense ones. On-device memory falls by 4.1x. We also study which layers tolerate pruning "
            "best. Results hold across three languages and two model sizes."
        ),
    ),
    (
        "Frequency-domain token mixing for vision",
        (
            "Token mixing in the frequency domain replaces attention in vision models. A Fourier layer mixes "
            "tokens globally at log-linear cost. On ImageNet it matches a vision transformer of the same size. "
            "We analyse which frequencies matter for classification. The layer also speeds up segmentation."
        ),
    ),
)


def _sources(similarities: tuple[float, ...]) -> list[Source]:
    return [
        Source(n, f"p{n}", title, (abstract[:120],), 1.0 / n, similarity, abstract=abstract)
        for n, ((title, abstract), similarity) in enumerate(zip(ABSTRACTS, similarities), start=1)
    ]


def _conf(sample_settings: Any, **update: Any) -> Any:
    return sample_settings.updated(tuning={"retrieval": update}).tuning.retrieval


@pytest.fixture
def embed_model(sample_settings: Any) -> Any:
    from rag.services import Services

    return Services(sample_settings).embed_model


@pytest.mark.parametrize(
    ("question", "several"),
    [
        ("Which papers mix image tokens without attention?", True),
        ("What methods cut the memory of speech adapters?", True),
        ("Are there any studies of pruning adapters?", True),
        ("What top-1 accuracy does WaveMix reach on ImageNet?", False),
        ("How much memory does pruning save on the device?", False),
    ],
)
def test_a_question_asking_for_several_papers_is_told_from_one_asking_for_a_finding(
    question: str, several: bool
) -> None:
    assert asks_for_several(question) is several


def test_whole_policy_shows_close_papers_whole_while_the_words_last(sample_settings: Any, embed_model: Any) -> None:
    sources = _sources((0.70, 0.30, 0.65))
    conf = _conf(sample_settings, context_policy="whole", context_words=60)
    renumbered, context = choose_context("q", sources, embed_model, conf)
    assert [s.title for s in renumbered] == [ABSTRACTS[0][0], ABSTRACTS[2][0], ABSTRACTS[1][0]]  # shown first
    assert [s.number for s in context] == [1, 2]  # 0.30 is more than 0.12 below 0.70: not shown
    assert context[0].passages == (ABSTRACTS[0][1],)  # fits in 60 words
    assert context[1].passages == sources[2].passages  # past the budget: its best chunk


def test_sentences_policy_keeps_the_best_paper_whole_and_the_others_best_sentences(
    sample_settings: Any, embed_model: Any
) -> None:
    sources = _sources((0.70, 0.66, 0.65))
    conf = _conf(sample_settings, context_policy="sentences", context_words=70)
    question = "What top-1 accuracy does the wavelet token mixer reach on ImageNet?"
    _, context = choose_context(question, sources, embed_model, conf)
    assert context[0].passages == (" ".join(split_sentences(ABSTRACTS[0][1])),)  # the best paper whole
    for shown, (_, abstract) in zip(context[1:], ABSTRACTS[1:]):
        kept = [part.strip() for part in shown.passages[0].split("…")]
        assert kept and all(part and part in abstract for part in kept)  # its own text, in order
        assert len(shown.passages[0].split()) < len(abstract.split())  # cut
    assert "ImageNet" in context[2].passages[0]  # the frequency paper's sentence nearest the question
    words = sum(len(s.passages[0].replace("…", "").split()) for s in context)
    best_sentences = sum(min(len(t.split()) for t in split_sentences(a)) for _, a in ABSTRACTS[1:])
    assert words <= 70 + best_sentences  # the budget, plus at most one guaranteed sentence per paper


def test_sentences_policy_shares_the_words_when_several_papers_are_asked_for(
    sample_settings: Any, embed_model: Any
) -> None:
    sources = _sources((0.70, 0.66, 0.65))
    conf = _conf(sample_settings, context_policy="sentences", context_words=220, context_words_several=90)
    _, context = choose_context("Which papers mix image tokens without attention?", sources, embed_model, conf)
    lengths = [len(s.passages[0].replace("…", "").split()) for s in context]
    assert lengths[0] < len(ABSTRACTS[0][1].split())  # no paper whole: each gets its share
    assert all(n <= 90 // 3 or len(split_sentences(s.passages[0])) == 1 for n, s in zip(lengths, context))
    assert all(lengths)


def test_sentences_policy_shows_everything_when_it_fits(sample_settings: Any, embed_model: Any) -> None:
    sources = _sources((0.70, 0.66, 0.65))
    conf = _conf(sample_settings, context_policy="sentences", context_words_several=1000)
    _, context = choose_context("Which papers mix image tokens?", sources, embed_model, conf)
    assert [s.passages[0] for s in context] == [" ".join(split_sentences(a)) for _, a in ABSTRACTS]
