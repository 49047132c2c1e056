"""``rag.ask`` over the real sample store, with a scripted LLM standing in for the model."""

from __future__ import annotations

from typing import Any

import pytest

from rag import Answer, EmptyQuestion, IndexEmpty, Reading, Source, ask, ask_stream, retrieve
from rag.answer.context import best_sentences
from rag.answer.prompt import ABSTAIN_TEXT
from rag.errors import BadInput

WAVEMIX = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
QUESTION = "Which architecture mixes image tokens with a 2D wavelet transform, and why?"


def test_retrieve_ranks_the_expected_paper_first(sample_settings: Any) -> None:
    sources = retrieve(QUESTION, settings=sample_settings)
    assert sources[0].title == WAVEMIX
    assert [s.number for s in sources] == list(range(1, len(sources) + 1))
    assert len(sources) == sample_settings.answer.top_papers
    assert len({s.paper_id for s in sources}) == len(sources)
    assert all(s.passages for s in sources)


def test_citations_are_always_retrieved_sources(sample_settings: Any, scripted: Any) -> None:
    scripted.enqueue("WaveMix mixes tokens with a multi-level 2D DWT [1]. It also cites a ghost [42].")
    answer = ask(QUESTION, settings=sample_settings, llm=scripted)
    assert not answer.abstained
    assert answer.cited_titles() == [WAVEMIX]
    assert answer.dropped_markers == 1 and "[42]" not in answer.text
    retrieved = {s.paper_id for s in answer.sources}
    assert all(c.paper_id in retrieved for c in answer.citations)
    assert answer.model == "custom:scripted"
    # The prompt numbered the sources with their titles, in rank order.
    prompt = scripted.history[0][-1].content
    assert f"[1] {WAVEMIX}\n" in prompt


def test_streaming_yields_pieces_then_the_answer(sample_settings: Any, scripted: Any) -> None:
    scripted.enqueue("WaveMix uses a 2D wavelet transform [1].")
    items = list(ask_stream(QUESTION, settings=sample_settings, llm=scripted))
    assert isinstance(items[0], Reading)
    assert all(isinstance(i, str) for i in items[1:-1]) and len(items) > 3
    answer = items[-1]
    assert isinstance(answer, Answer)
    assert "".join(items[1:-1]) == "WaveMix uses a 2D wavelet transform [1]."
    assert answer.timings.first_token is not None and answer.timings.total >= answer.timings.first_token


def test_the_papers_being_read_come_before_the_model_is_asked(sample_settings: Any, scripted: Any) -> None:
    scripted.enqueue("WaveMix uses a 2D wavelet transform [1].")
    stream = ask_stream(QUESTION, settings=sample_settings, llm=scripted)
    reading = next(stream)
    assert isinstance(reading, Reading) and scripted.history == []  # the model has not been asked yet
    assert reading.sources[0].title == WAVEMIX
    assert [s.number for s in reading.sources] == list(range(1, len(reading.sources) + 1))
    assert len(reading.best_sentences) == len(reading.sources)
    best = reading.best_sentences[0]
    assert best in " ".join(reading.sources[0].passages) and "wavelet" in best.lower()
    rest = list(stream)
    assert isinstance(rest[0], str) and isinstance(rest[-1], Answer)
    assert not any(isinstance(item, Reading) for item in rest)
    prompt = scripted.history[0][-1].content  # the prompt shows the same papers under the same numbers
    assert all(f"[{s.number}] {s.title}" in prompt for s in reading.sources)

    outside = list(ask_stream("What is the best recipe for sourdough bread?", settings=sample_settings, llm=scripted))
    assert not any(isinstance(item, Reading) for item in outside)  # an abstention without the model is immediate


def _paper(number: int, abstract: str) -> Source:
    return Source(number, f"id:{number}", f"Paper {number}", (abstract,), 0.03, 0.5, abstract=abstract)


def test_the_best_sentence_shares_the_questions_rarest_words() -> None:
    papers = [
        _paper(1, "We train an image model on photos. Wavelets mix the image tokens of our model. It is fast."),
        _paper(2, "An image model for photos. The image model is small."),
        _paper(3, "Nothing here is about that question at all."),
    ]
    best = best_sentences("Which image model mixes tokens with wavelets?", papers)
    # "wavelet" and "token" occur once among the sentences; "image" and "model" in nearly all.
    assert best == ["Wavelets mix the image tokens of our model.", "An image model for photos.", ""]
    assert best_sentences("anything", []) == []


def test_model_abstention_gives_no_citations(sample_settings: Any, scripted: Any) -> None:
    scripted.enqueue(ABSTAIN_TEXT)
    answer = ask(
        "Which paper measures the battery life of FPGA boards in Antarctica?", settings=sample_settings, llm=scripted
    )
    assert answer.abstained and answer.citations == () and answer.text == ABSTAIN_TEXT


def test_out_of_scope_question_abstains_without_the_model(sample_settings: Any, scripted: Any) -> None:
    answer = ask("What is the best recipe for sourdough bread?", settings=sample_settings, llm=scripted)
    assert answer.abstained and answer.citations == ()
    assert scripted.history == []  # no generation was spent
    assert answer.sources  # the nearest papers are still reported


def test_uncited_reply_is_attributed_or_refused(sample_settings: Any, scripted: Any) -> None:
    scripted.enqueue("WaveMix uses a multi-level two-dimensional discrete wavelet transform to mix image tokens.")
    answer = ask(QUESTION, settings=sample_settings, llm=scripted)
    assert answer.cited_titles() == [WAVEMIX]
    assert answer.citations[0].attributed and answer.sentences[0].verdict == "corrected"
    scripted.enqueue("Bananas are yellow and grow in warm places near the sea.")
    refused = ask(QUESTION, settings=sample_settings, llm=scripted)
    assert refused.abstained and refused.citations == ()


def _number_of(answer: Answer, title: str) -> int:
    return next(s.number for s in answer.sources if s.title == title)


def test_a_name_cited_to_the_wrong_paper_is_moved_and_the_answer_says_so(sample_settings: Any, scripted: Any) -> None:
    show_all = sample_settings.updated(tuning={"retrieval": {"context_margin": 1.0}})
    wrong = next(s.number for s in retrieve(QUESTION, settings=show_all) if s.title != WAVEMIX)
    scripted.enqueue(f"Its blocks use a 2D-DWT and set benchmarks on EMNIST [{wrong}].")
    answer = ask(QUESTION, settings=show_all, llm=scripted)
    (sentence,) = answer.sentences
    assert sentence.verdict == "corrected" and sentence.written == (wrong,)
    assert sentence.citations == (_number_of(answer, WAVEMIX),) and answer.cited_titles() == [WAVEMIX]
    assert f"[{wrong}]" not in answer.text and "not in" in sentence.reason


def test_an_unsupported_number_is_removed_and_kept_with_its_reason(sample_settings: Any, scripted: Any) -> None:
    scripted.enqueue(
        "WaveMix mixes tokens with a 2D wavelet transform [1]. It reaches 99.97% accuracy on ImageNet [1]."
    )
    answer = ask(QUESTION, settings=sample_settings, llm=scripted)
    assert not answer.abstained and "99.97" not in answer.text
    supported, unsupported = answer.sentences
    assert supported.shown and supported.verdict != "unsupported"
    assert not unsupported.shown and unsupported.verdict == "unsupported" and "99.97" in unsupported.reason

    marked = sample_settings.model_copy(
        update={"answer": sample_settings.answer.model_copy(update={"unsupported": "mark"})}
    )
    scripted.enqueue(
        "WaveMix mixes tokens with a 2D wavelet transform [1]. It reaches 99.97% accuracy on ImageNet [1]."
    )
    shown = ask(QUESTION, settings=marked, llm=scripted)
    assert "99.97" in shown.text and shown.sentences[1].shown and shown.sentences[1].verdict == "unsupported"


def test_an_answer_with_nothing_supported_abstains_and_lists_why(sample_settings: Any, scripted: Any) -> None:
    scripted.enqueue("WaveMix reaches 99.97% on ImageNet [1]. It was trained on 4,096 TPUs for 31 days [2].")
    answer = ask(QUESTION, settings=sample_settings, llm=scripted)
    assert answer.abstained and answer.text == ABSTAIN_TEXT and answer.citations == ()
    assert [s.verdict for s in answer.sentences] == ["unsupported", "unsupported"]
    assert not any(s.shown for s in answer.sentences) and all(s.reason for s in answer.sentences)


@pytest.mark.parametrize("question", ["", "   \n\t ", "\x00\x01"])
def test_empty_questions_are_refused(sample_settings: Any, question: str) -> None:
    with pytest.raises(EmptyQuestion):
        ask(question, settings=sample_settings)


def test_huge_question_is_refused(sample_settings: Any) -> None:
    with pytest.raises(BadInput, match="characters long"):
        ask("why " * 30_000, settings=sample_settings)


def test_empty_collection_says_how_to_ingest(scripted: Any) -> None:
    with pytest.raises(IndexEmpty, match="papercite ingest"):
        ask(QUESTION, llm=scripted)


def test_an_abstention_despite_a_close_abstract_is_retried_once(sample_settings: Any, scripted: Any) -> None:
    from rag.answer.prompt import SYSTEM_PROMPT_ANSWER

    scripted.enqueue(
        "The collection does not cover this question.", "WaveMix mixes tokens with a 2D wavelet transform [1]."
    )
    pieces = list(ask_stream(QUESTION, settings=sample_settings, llm=scripted))
    answer = pieces[-1]
    assert not answer.abstained and answer.cited_titles() == [WAVEMIX]
    assert "does not cover" not in "".join(p for p in pieces if isinstance(p, str))  # never shown
    first, second = scripted.history
    assert second[-1].content == first[-1].content and second[0].content == SYSTEM_PROMPT_ANSWER
    assert ABSTAIN_TEXT in first[0].content and ABSTAIN_TEXT not in SYSTEM_PROMPT_ANSWER

    no_retry = sample_settings.updated(tuning={"checks": {"retry_similarity": 1.01}})
    scripted.enqueue("The collection does not cover this question.")
    assert ask(QUESTION, settings=no_retry, llm=scripted).abstained
    assert len(scripted.history) == 3


def test_a_question_naming_something_the_collection_never_mentions_abstains(
    sample_settings: Any, scripted: Any
) -> None:
    from rag.answer.steps import Draft, Parts, name_gate
    from rag.services import Services

    answer = ask(
        "What new adaptive optimizer improves on Adam's convergence for transformers?",
        settings=sample_settings,
        llm=scripted,
    )
    assert answer.abstained and answer.model == "" and scripted.history == []  # no generation spent
    services = Services(sample_settings)
    parts = Parts(sample_settings, services.embed_model, services.store)
    assert "MI300" in name_gate(Draft("What do benchmarks show about the MI300 and WaveMix?", []), parts).why
    assert not name_gate(Draft("How do Transformers scale, and what is MRI-based GPT-4 use?", []), parts).abstained
    # Names are found under another spelling ("CIFAR-10") or by their letter-digit part ("Mask2Former").
    assert not name_gate(Draft("Which Mask2Former-based model is best on CIFAR10?", []), parts).abstained
    assert "Zorblax-9" in name_gate(Draft("How does Zorblax-9 compare?", []), parts).why


def test_every_part_can_be_passed_in_and_services_share_only_loaded_weights(
    sample_settings: Any, scripted: Any
) -> None:
    from rag.services import Services

    one, two = Services(sample_settings), Services(sample_settings)
    assert one.store is not two.store  # each Services owns its store (its BM25 top k is asked per query)
    assert one.embed_model is two.embed_model  # the encoder's weights depend on its files alone
    parts = Services(sample_settings, store=one.store, embed_model=one.embed_model, llm=scripted)
    scripted.enqueue("WaveMix mixes tokens with a multi-level 2D DWT [1].")
    answer = ask(QUESTION, services=parts)
    assert answer.model == "custom:scripted" and answer.cited_titles() == [WAVEMIX]
