"""Follow-up questions: ``rag.ask(..., history=answer)`` over the real sample store, a scripted LLM answering.

A follow-up is retrieved after the previous question as well as alone, and its prompt
repeats the chat's earlier turns word for word (so a runtime's KV cache covers them)
and shows only the abstracts no earlier turn showed.
"""

from __future__ import annotations

import re
from typing import Any

from click.testing import CliRunner

from rag import Answer, Reading, Source, ask, ask_stream, retrieve
from rag.answer.context import continue_numbers
from rag.answer.prompt import ABSTAIN_TEXT
from rag.types import Turn

WAVEMIX = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
QUESTION = "Which architecture mixes image tokens with a 2D wavelet transform?"
FOLLOW_UP = "How many fewer parameters does it need than the alternatives?"
SECOND_REPLY = "WaveMix architectures require fewer parameters than the previous state-of-the-art [1]."


def _chat(messages: list[Any]) -> list[tuple[str, str]]:
    return [(str(m.role.value), str(m.content)) for m in messages]


def _reading(question: str, settings: Any, scripted: Any, history: Answer | None = None) -> Reading:
    scripted.enqueue("unused [1].")
    item = next(ask_stream(question, settings=settings, llm=scripted, history=history))
    assert isinstance(item, Reading)
    return item


def test_a_follow_up_repeats_the_chat_word_for_word_and_shows_only_new_abstracts(
    sample_settings: Any, scripted: Any
) -> None:
    first_reply = "WaveMix mixes image tokens with a multi-level 2D wavelet transform [1]."
    scripted.enqueue(first_reply, SECOND_REPLY)
    first = ask(QUESTION, settings=sample_settings, llm=scripted)
    second = ask(FOLLOW_UP, settings=sample_settings, llm=scripted, history=first)

    asked_first, asked_second = (_chat(m) for m in scripted.history)
    # The earlier turn is the prefix of the follow-up's prompt, then the model's own reply.
    assert asked_second[: len(asked_first)] == asked_first
    assert asked_second[len(asked_first)] == ("assistant", first_reply)
    new_message = asked_second[-1][1]
    assert asked_second[-1][0] == "user" and FOLLOW_UP in new_message
    assert WAVEMIX not in new_message  # read in the first turn: not shown again
    earlier = max(s.number for s in first.conversation[0].shown)
    assert all(int(n) > earlier for n in re.findall(r"^\[(\d+)\] ", new_message, re.MULTILINE))

    # [1] still names the paper the first turn showed as [1].
    assert second.cited_titles() == [WAVEMIX]
    assert [t.question for t in second.conversation] == [QUESTION, FOLLOW_UP]
    assert second.conversation[0] == first.conversation[0]
    assert second.conversation[1].reply == SECOND_REPLY


def test_a_follow_up_that_does_not_name_its_topic_reads_the_previous_questions_paper(
    sample_settings: Any, scripted: Any
) -> None:
    alone = retrieve(FOLLOW_UP, settings=sample_settings)
    assert WAVEMIX not in [s.title for s in alone]  # asked alone, "it" finds nothing about wavelets

    first = ask(QUESTION, settings=sample_settings, llm=scripted.enqueue("WaveMix uses a 2D wavelet transform [1]."))
    followed = _reading(FOLLOW_UP, sample_settings, scripted, history=first)
    assert WAVEMIX in [s.title for s in followed.sources]
    assert next(s.number for s in followed.sources if s.title == WAVEMIX) == 1  # its number from the first turn


def test_a_new_topic_in_the_same_chat_still_finds_its_own_paper(sample_settings: Any, scripted: Any) -> None:
    first = ask(QUESTION, settings=sample_settings, llm=scripted.enqueue("WaveMix uses a 2D wavelet transform [1]."))
    reading = _reading(
        "Another thing: how much does adding gradient noise cut the error rate on question answering?",
        sample_settings,
        scripted,
        history=first,
    )
    assert reading.sources[0].title == "Adding Gradient Noise Improves Learning for Very Deep Networks"


def test_an_uncovered_follow_up_abstains_and_the_chat_goes_on_from_before_it(
    sample_settings: Any, scripted: Any
) -> None:
    first = ask(QUESTION, settings=sample_settings, llm=scripted.enqueue("WaveMix uses a 2D wavelet transform [1]."))
    # A name no abstract holds: papercite abstains without asking the model, in a follow-up too.
    outside = ask("Was it ever run on the Zorblax9 chip?", settings=sample_settings, llm=scripted, history=first)
    assert outside.abstained and outside.text == ABSTAIN_TEXT and len(scripted.history) == 1
    assert outside.conversation == first.conversation

    scripted.enqueue(SECOND_REPLY)
    third = ask(FOLLOW_UP, settings=sample_settings, llm=scripted, history=outside)
    assert len(scripted.history) == 2 and not third.abstained  # "it" is still WaveMix
    assert _chat(scripted.history[1])[: len(_chat(scripted.history[0]))] == _chat(scripted.history[0])
    assert [t.question for t in third.conversation] == [QUESTION, FOLLOW_UP]


def _source(number: int, paper: str) -> Source:
    return Source(number, paper, f"Title {paper}", (f"Text of {paper}.",), 0.03, 0.5)


def test_papers_an_earlier_turn_showed_keep_their_numbers_and_new_ones_follow() -> None:
    earlier = (Turn("q1", (_source(1, "a"), _source(2, "b")), "r1"), Turn("q2", (_source(3, "c"),), "r2"))
    retrieved = [_source(1, "d"), _source(2, "b"), _source(3, "e")]
    sources, context = continue_numbers(retrieved, retrieved[:2], earlier)
    assert [(s.paper_id, s.number) for s in sources] == [("d", 4), ("b", 2), ("e", 5), ("a", 1), ("c", 3)]
    assert [(s.paper_id, s.number) for s in context] == [("d", 4), ("b", 2)]
    assert continue_numbers(retrieved, retrieved[:2], ()) == (retrieved, retrieved[:2])


def test_papercite_chat_asks_each_line_as_a_follow_up_until_new(
    sample_settings: Any, scripted: Any, monkeypatch: Any
) -> None:
    from rag.services import Services
    from ui.cli import cli

    services = Services(sample_settings, llm=scripted)
    monkeypatch.setattr("rag.answer.ask.Services", lambda settings: services)  # the command's model: scripted
    scripted.enqueue("WaveMix uses a 2D wavelet transform [1].", SECOND_REPLY, "WaveMix uses wavelets [1].")
    result = CliRunner().invoke(cli, ["chat"], input=f"{QUESTION}\n{FOLLOW_UP}\n/new\n{QUESTION}\n")
    assert result.exit_code == 0, result.output
    assert result.output.count(f"[1] {WAVEMIX}") == 3
    first, second, third = (_chat(m) for m in scripted.history)
    assert second[: len(first)] == first  # the second line followed the first up
    assert third == first  # /new started over
