"""The per-paper path (``answer.mode = per_paper``) over the real sample store, with a scripted model.

Each paper is read in two calls: a one-token verdict (scripted with a P(YES) where the
test stands in for a backend with log-probabilities), then, when that is high enough,
the finding. The decision rule is tested on its own with hand-made readings.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, LogProb, MessageRole

from rag import Answer, PaperReading, Reading, ask, ask_stream
from rag.answer.per_paper import decide, papers_to_read
from rag.answer.readings import (
    FIRST_WORD,
    LOGPROBS,
    READING_PROMPT,
    parse_finding,
    parse_verdict,
    reading_messages,
    yes_probability,
)
from rag.settings import ReadingSettings
from rag.types import Source

WAVEMIX = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
QUESTION = "Which architecture mixes image tokens with a 2D wavelet transform, and why?"
WAVEMIX_FINDING = "YES\nWaveMix uses a multi-level two-dimensional discrete wavelet transform for token mixing."


@pytest.fixture
def per_paper(sample_settings: Any) -> Any:
    """The sample store's settings in per-paper mode, reading at most two papers."""
    return sample_settings.updated(
        answer={"mode": "per_paper", "max_papers": 2}, tuning={"reading": {"read_margin": 1.0}}
    )


def _reading(number: int, confidence: float | None, *, supported: bool = True, verdict: str = "yes") -> PaperReading:
    return PaperReading(
        number,
        f"id:{number}",
        f"Paper {number}",
        verdict,
        confidence,
        "It reports 3 things." if supported else "",
        supported,
    )


# -- parsing a reply -------------------------------------------------------------------


def test_the_verdict_probability_counts_every_casing_of_yes_and_no() -> None:
    alternatives = [("YES", 0.5), ("NO", 0.3), ("Yes", 0.1), (" no", 0.05), ("Does", 0.05)]
    logprobs = [[LogProb(token=t, logprob=math.log(p)) for t, p in alternatives]]
    assert yes_probability(logprobs) == pytest.approx(0.6 / 0.95)
    assert yes_probability(None) is None
    assert yes_probability([[LogProb(token="Maybe", logprob=0.0)]]) is None  # neither: the first word decides
    blank_first = [[LogProb(token="\n", logprob=0.0)], [LogProb(token="NO", logprob=math.log(0.9))]]
    assert yes_probability(blank_first) == 0.0


def test_a_reply_without_log_probabilities_is_read_by_its_first_word() -> None:
    def reply(text: str) -> ChatResponse:
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    assert parse_verdict(reply("YES")).said == "yes" and parse_verdict(reply("YES")).confidence is None
    assert parse_verdict(reply("**No.** It does not.")).said == "no"
    assert parse_verdict(reply("Perhaps")).said == "no"
    finding = parse_finding(reply("YES\nThe abstract reports that it cuts error by 72%. It also trains deep nets. And"))
    assert finding == "It cuts error by 72%. It also trains deep nets."


def test_the_prompt_puts_the_question_after_the_abstract() -> None:
    source = Source(1, "p", "A Title", ("passage",), 0.1, 0.5, abstract="The whole abstract.")
    first = reading_messages(source, "Question one?")
    second = reading_messages(source, "Another question?", previous="Question one?")
    assert first[0].content == second[0].content == READING_PROMPT
    prefix = 'Abstract of "A Title":\nThe whole abstract.\n\n'
    assert first[1].content.startswith(prefix) and second[1].content.startswith(prefix)  # cached once, reused
    assert "Earlier question: Question one?\nQuestion: Another question?" in (second[1].content or "")


# -- deciding what is cited --------------------------------------------------------------


def test_a_reading_is_cited_when_its_confidence_reaches_accept() -> None:
    conf = ReadingSettings(accept=0.6)
    decided = decide([_reading(1, 0.8), _reading(2, 0.7), _reading(3, 0.2)], conf, several=False)
    assert [r.cited for r in decided] == [True, False, False]  # one finding asked for: the best only
    assert "below the best cited" in decided[1].reason and "only 0.20 sure" in decided[2].reason
    decided = decide([_reading(1, 0.8), _reading(2, 0.7), _reading(3, 0.2)], conf, several=True)
    assert [r.cited for r in decided] == [True, True, False]  # several asked for: every one that passes


def test_an_unsupported_finding_is_never_cited() -> None:
    unsupported = PaperReading(1, "id:1", "Paper 1", "yes", 0.95, "It cuts error by 76.5%.", False, reason="bad")
    decided = decide([unsupported, _reading(2, 0.3)], ReadingSettings(accept=0.5), several=False)
    assert not any(r.cited for r in decided)


def test_the_lead_rule_cites_a_best_reading_that_stands_out() -> None:
    conf = ReadingSettings(accept=0.7, lead=0.2, floor=0.4)
    assert decide([_reading(1, 0.55), _reading(2, 0.3)], conf, several=False)[0].cited
    assert not decide([_reading(1, 0.55), _reading(2, 0.4)], conf, several=False)[0].cited  # no lead
    assert not decide([_reading(1, 0.35), _reading(2, 0.1)], conf, several=False)[0].cited  # under the floor


def test_several_margin_keeps_the_readings_close_to_the_best() -> None:
    conf = ReadingSettings(accept=0.5, several_margin=0.15)
    decided = decide([_reading(1, 0.8), _reading(2, 0.66), _reading(3, 0.6)], conf, several=True)
    assert [r.cited for r in decided] == [True, True, False]


def test_one_finding_asked_for_cites_the_most_confident_reading_or_nothing() -> None:
    unsupported_best = PaperReading(1, "id:1", "Paper 1", "yes", 0.7, "It says 9.", False, reason="9 is not in [1]")
    readings = [unsupported_best, _reading(2, 0.6)]
    strict = ReadingSettings(accept=0.5, top_only=True)
    assert not any(r.cited for r in decide(readings, strict, several=False))
    loose = ReadingSettings(accept=0.5, top_only=False)  # the next paper is taken instead
    assert [r.cited for r in decide(readings, loose, several=False)] == [False, True]


def test_first_word_verdicts_cite_every_supported_yes() -> None:
    readings = [_reading(1, None), _reading(2, None, verdict="no", supported=False), _reading(3, None)]
    assert [r.cited for r in decide(readings, ReadingSettings(), several=True)] == [True, False, True]


def test_papers_far_below_the_best_are_not_read_unless_several_are_asked_for() -> None:
    sources = [Source(i, f"p{i}", f"T{i}", ("x",), 0.1, sim) for i, sim in enumerate((0.7, 0.65, 0.4), start=1)]
    conf = ReadingSettings(read_margin=0.12)
    assert [s.number for s in papers_to_read(sources, conf, several=False, most=5)] == [1, 2]
    assert [s.number for s in papers_to_read(sources, conf, several=True, most=5)] == [1, 2, 3]
    assert [s.number for s in papers_to_read(sources, conf, several=True, most=2)] == [1, 2]


# -- the whole path over the sample store ------------------------------------------------------


def test_each_reading_is_yielded_as_it_ends_then_the_answer(per_paper: Any, scripted: Any) -> None:
    scripted.enqueue(("YES", 0.9), WAVEMIX_FINDING, ("NO", 0.1))
    items = list(ask_stream(QUESTION, settings=per_paper, llm=scripted))
    assert isinstance(items[0], Reading) and isinstance(items[-1], Answer)
    readings = [i for i in items if isinstance(i, PaperReading)]
    assert [r.title for r in readings][:1] == [WAVEMIX] and len(readings) == 2
    assert readings[0].verdict == "yes" and readings[0].confidence == 0.9 and readings[0].supported
    assert readings[1].verdict == "no" and not readings[1].finding  # a confident no costs no finding
    answer = items[-1]
    assert answer.mode == "per_paper" and answer.confidence_from == LOGPROBS
    assert answer.cited_titles() == [WAVEMIX] and answer.text.endswith("[1]")
    assert [r.cited for r in answer.readings[:2]] == [True, False]
    assert {r.verdict for r in answer.readings[2:]} <= {"unread"}  # the third and later papers were not read
    assert answer.timings.first_token is not None and not any(isinstance(i, str) for i in items)
    # Each paper was read alone, its abstract before the question.
    verdict_prompt = scripted.history[0][-1].content
    assert verdict_prompt.startswith(f'Abstract of "{WAVEMIX}"') and verdict_prompt.count("Abstract of") == 1
    assert scripted.history[1][-1].role == MessageRole.ASSISTANT  # the finding goes on from its YES


def test_every_sentence_of_a_finding_carries_its_papers_marker(per_paper: Any, scripted: Any) -> None:
    two = "YES\nWaveMix uses a multi-level 2D discrete wavelet transform. It sets benchmarks on Places-365."
    scripted.enqueue(("YES", 0.9), two, ("NO", 0.1))
    answer = ask(QUESTION, settings=per_paper, llm=scripted)
    first, second = "WaveMix uses a multi-level 2D discrete wavelet transform.", "It sets benchmarks on Places-365."
    assert answer.text == f"{first} [1] {second} [1]"


def test_a_finding_its_abstract_does_not_hold_is_not_shown(per_paper: Any, scripted: Any) -> None:
    scripted.enqueue(("YES", 0.9), "YES\nWaveMix cuts error by 76.5% on ImageNet-21k.", ("NO", 0.2))
    answer = ask(QUESTION, settings=per_paper, llm=scripted)
    assert answer.abstained and answer.citations == () and "76.5" not in answer.text
    assert not answer.readings[0].supported and "76.5" in answer.readings[0].reason
    assert [s.shown for s in answer.sentences] == [False]  # kept for the reader, marked, not shown


def test_nothing_passing_is_an_abstention(per_paper: Any, scripted: Any) -> None:
    scripted.enqueue(("NO", 0.1), ("NO", 0.05))
    answer = ask(QUESTION, settings=per_paper, llm=scripted)
    assert answer.abstained and not answer.citations and answer.model == "custom:scripted"
    assert all(not r.cited for r in answer.readings)


def test_a_finding_that_restates_the_question_is_replaced_by_the_abstracts_own_sentence(
    per_paper: Any, scripted: Any
) -> None:
    settings = per_paper.updated(answer={"max_papers": 1}, tuning={"reading": {"quote_restated": True}})
    question = "Which vision model blends picture patches through a lossless, parameter-free frequency split?"
    restated = "YES\nIt blends picture patches through a lossless, parameter-free frequency split."
    scripted.enqueue(("YES", 0.8), restated)
    answer = ask(question, settings=settings, llm=scripted)
    reading = answer.readings[0]
    assert reading.cited and reading.supported and "restated the question" in reading.reason
    assert reading.finding in answer.sources[0].abstract  # the abstract's own sentence, literally
    assert answer.text == f"{reading.finding} [1]"


def test_a_backend_without_log_probabilities_still_answers_by_first_word(per_paper: Any, scripted: Any) -> None:
    scripted.enqueue("YES", WAVEMIX_FINDING, "NO")
    answer = ask(QUESTION, settings=per_paper, llm=scripted)
    assert answer.cited_titles() == [WAVEMIX] and answer.confidence_from == FIRST_WORD
    assert answer.readings[0].confidence is None and answer.readings[0].cited


def test_a_follow_up_reads_the_papers_the_last_answer_cited(per_paper: Any, scripted: Any) -> None:
    scripted.enqueue(("YES", 0.9), WAVEMIX_FINDING, ("NO", 0.1))
    first = ask(QUESTION, settings=per_paper, llm=scripted)
    scripted.enqueue(*[("NO", 0.1)] * 3)
    follow = ask("And how many parameters does it need?", settings=per_paper, llm=scripted, history=first)
    prompts = [m[-1].content or "" for m in scripted.history[3:]]
    again = [p for p in prompts if p.startswith(f'Abstract of "{WAVEMIX}"')]
    assert len(again) == 1 and f"Earlier question: {QUESTION}" in again[0]  # "it" read with what it is
    assert len(prompts) > 1 and not any("Earlier question" in p for p in prompts if p not in again)  # new papers
    assert follow.abstained


def test_an_ollama_without_log_probabilities_answers_by_first_word(per_paper: Any) -> None:
    """An Ollama too old to know ``logprobs`` ignores it: the reading's first word decides, and the answer says so."""
    try:
        from tests.ollama_standin import OllamaStandIn
    except ImportError:  # pragma: no cover - run from inside tests/
        from ollama_standin import OllamaStandIn

    def old_ollama(messages: list[dict], options: dict, fmt: object) -> Any:
        if messages[-1]["role"] == "assistant":  # the finding, going on from the written YES
            yield "WaveMix uses a multi-level two-dimensional discrete wavelet transform for token mixing."
        else:
            yield "YES" if "WaveMix" in messages[-1]["content"] else "NO"

    with OllamaStandIn({"qwen2.5:3b": old_ollama}) as server:
        settings = per_paper.updated(llm={"backend": "ollama", "ollama_host": server.url})
        answer = ask(QUESTION, settings=settings)
        assert any((r["body"] or {}).get("logprobs") for r in server.requests)  # asked for them, got none
    assert answer.model == "ollama:qwen2.5:3b" and answer.confidence_from == FIRST_WORD
    assert answer.cited_titles() == [WAVEMIX] and answer.readings[0].confidence is None


def test_a_filter_narrows_what_is_read_before_any_reading(per_paper: Any, scripted: Any) -> None:
    from rag import Filters, NoMatch

    with pytest.raises(NoMatch, match="without a year"):  # the sample's papers have no year
        ask(QUESTION, settings=per_paper, llm=scripted, filters=Filters(since=2020))
    assert scripted.history == []  # nothing read from the papers the filter left out
    scripted.enqueue(("NO", 0.1), ("NO", 0.1))
    answer = ask(QUESTION, settings=per_paper, llm=scripted, filters=Filters(source="trending-papers.txt"))
    assert len(scripted.history) == 2 and answer.abstained
