"""End to end with the real pieces: Chroma, packaged MiniLM, and the real embedded LLM.

The Ollama backend is exercised with the real ``ollama`` client over real HTTP:
against the real Ollama when ``OLLAMA_HOST`` answers, otherwise against the
protocol-faithful stand-in in ``tests/ollama_standin.py`` serving the embedded model.
Assertions are on structure (which paper is cited), never on wording.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag import ask
from rag.llm.backends import ollama_has_model
from rag.services import Services

try:
    from tests.ollama_standin import OllamaStandIn
except ImportError:  # pragma: no cover - run from inside tests/
    from ollama_standin import OllamaStandIn

pytestmark = pytest.mark.llm

# Each question with the papers that answer it (any one of them cited passes): two
# abstracts in the sample co-design deformable convolution for embedded FPGAs.
EXPECTED = [
    (
        "Which architecture mixes image tokens with a 2D wavelet transform, and why?",
        {"WaveMix: A Resource-efficient Neural Network for Image Analysis"},
    ),
    (
        "Which papers let a segmentation model choose its encoder depth per image?",
        {"Efficient Transformer Encoders for Mask2Former-style models"},
    ),
    (
        "How much does adding gradient noise reduce the error rate on question answering?",
        {"Adding Gradient Noise Improves Learning for Very Deep Networks"},
    ),
    (
        "How can deformable convolution be made efficient on embedded FPGAs?",
        {
            "Algorithm-hardware Co-design for Deformable Convolution",
            "CoDeNet: Efficient Deployment of Input-Adaptive Object Detection on Embedded FPGAs",
        },
    ),
]


def _embedded_settings(sample_settings: Any) -> Any:
    return sample_settings.model_copy(update={"llm": sample_settings.llm.model_copy(update={"backend": "embedded"})})


@pytest.mark.parametrize(("question", "titles"), EXPECTED)
def test_embedded_answers_cite_the_expected_paper(sample_settings: Any, question: str, titles: set[str]) -> None:
    answer = ask(question, settings=_embedded_settings(sample_settings))
    assert not answer.abstained, answer.text
    assert titles & set(answer.cited_titles()), (answer.text, answer.cited_titles())
    retrieved = {s.paper_id for s in answer.sources}
    assert all(c.paper_id in retrieved for c in answer.citations)
    assert answer.model == "embedded:qwen2.5-coder-1.5b"
    assert answer.timings.first_token is not None and answer.prompt_tokens


def test_embedded_abstains_on_an_uncovered_question(sample_settings: Any) -> None:
    answer = ask(
        "Which paper trains a quantum computer to fold proteins?", settings=_embedded_settings(sample_settings)
    )
    assert answer.abstained and answer.citations == ()


def test_a_follow_up_reads_the_earlier_turn_from_the_models_cache(sample_settings: Any) -> None:
    settings = _embedded_settings(sample_settings)
    first = ask(EXPECTED[0][0], settings=settings)
    assert not first.abstained and first.prompt_tokens, first.text
    second = ask("How many fewer parameters does it need than the alternatives?", settings=settings, history=first)
    assert second.model == "embedded:qwen2.5-coder-1.5b" and second.prompt_tokens
    # llama.cpp took the whole first prompt from its KV cache: only the new message was read.
    assert second.cached_tokens is not None and second.cached_tokens >= first.prompt_tokens, (
        second.cached_tokens,
        first.prompt_tokens,
    )
    assert second.prompt_tokens > first.prompt_tokens
    assert [t.question for t in second.conversation] == [EXPECTED[0][0], second.question]


@pytest.fixture
def ollama_host(sample_settings: Any) -> Iterator[str]:
    """A server speaking Ollama's API with the configured model: the real one, or the stand-in."""
    real = os.environ.get("OLLAMA_HOST")
    model = sample_settings.llm.ollama_model
    if real and ollama_has_model(sample_settings.llm.resolved_ollama_host(), model):
        yield sample_settings.llm.resolved_ollama_host()
        return
    embedded = Services(_embedded_settings(sample_settings)).backend.llm

    def generate(messages: list[dict], options: dict, fmt: object) -> Iterator[str | dict]:
        chat = [ChatMessage(role=MessageRole(m["role"]), content=m["content"]) for m in messages]
        if options.get("top_logprobs"):  # asked for log-probabilities, as a per-paper reading's verdict is
            reader = embedded.model_copy(update={"top_logprobs": options["top_logprobs"]})
            response = reader.chat(chat, max_tokens=options.get("num_predict", 300))
            tops = [
                {"token": t[0].token, "logprob": t[0].logprob, "top_logprobs": [a.model_dump() for a in t]}
                for t in response.logprobs or []
            ]
            yield {"content": response.message.content or "", "logprobs": tops}
            return
        for response in embedded.stream_chat(chat, max_tokens=options.get("num_predict", 300)):
            if response.delta:
                yield response.delta

    with OllamaStandIn({model: generate}) as server:
        yield server.url


def test_ollama_backend_answers_through_the_real_client(sample_settings: Any, ollama_host: str) -> None:
    settings = sample_settings.model_copy(
        update={"llm": sample_settings.llm.model_copy(update={"backend": "ollama", "ollama_host": ollama_host})}
    )
    question, (title,) = EXPECTED[0]
    answer = ask(question, settings=settings)
    assert answer.model == "ollama:qwen2.5:3b"
    assert title in answer.cited_titles(), answer.text


def test_ollama_reads_each_paper_with_its_log_probabilities(sample_settings: Any, ollama_host: str) -> None:
    settings = sample_settings.updated(
        llm={"backend": "ollama", "ollama_host": ollama_host}, answer={"mode": "per_paper"}
    )
    question, (title,) = EXPECTED[0]
    answer = ask(question, settings=settings)
    assert answer.model == "ollama:qwen2.5:3b" and answer.mode == "per_paper"
    _read_with_log_probabilities(answer, title)


def test_auto_prefers_ollama_when_it_serves_the_model(sample_settings: Any, ollama_host: str) -> None:
    from rag.llm.backends import build_llm

    auto = sample_settings.model_copy(
        update={"llm": sample_settings.llm.model_copy(update={"ollama_host": ollama_host})}
    )
    assert build_llm(auto).label == "ollama:qwen2.5:3b"
    nothing = sample_settings.model_copy(
        update={"llm": sample_settings.llm.model_copy(update={"ollama_host": "http://127.0.0.1:9"})}
    )
    assert build_llm(nothing).label == "embedded:qwen2.5-coder-1.5b"


def test_openai_backend_against_a_real_openai_compatible_server(sample_settings: Any) -> None:
    """The embedded runtime's own llama.cpp server speaks the OpenAI API on loopback."""
    import httpx
    from pydantic import SecretStr

    embedded = Services(_embedded_settings(sample_settings)).backend.llm
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(f"{embedded.server_url}/v1/chat/completions", json=body, timeout=60).status_code == 401
    settings = sample_settings.model_copy(
        update={
            "llm": sample_settings.llm.model_copy(
                update={
                    "backend": "openai",
                    "openai_base_url": f"{embedded.server_url}/v1",
                    "openai_api_key": SecretStr(embedded.server_api_key),
                }
            )
        }
    )
    question, (title,) = EXPECTED[0]
    answer = ask(question, settings=settings)
    assert answer.model == "openai:default"
    assert title in answer.cited_titles(), answer.text


def test_openai_compatible_server_reads_each_paper_with_its_log_probabilities(sample_settings: Any) -> None:
    from pydantic import SecretStr

    embedded = Services(_embedded_settings(sample_settings)).backend.llm
    settings = sample_settings.updated(
        llm={
            "backend": "openai",
            "openai_base_url": f"{embedded.server_url}/v1",
            "openai_api_key": SecretStr(embedded.server_api_key),
        },
        answer={"mode": "per_paper"},
    )
    question, (title,) = EXPECTED[0]
    answer = ask(question, settings=settings)
    assert answer.model == "openai:default"
    _read_with_log_probabilities(answer, title)


def _read_with_log_probabilities(answer: Any, title: str) -> None:
    """The backend's readings carried the model's own P(YES), and the answer cites only papers it read."""
    assert answer.confidence_from == "log-probabilities", answer.readings
    first = answer.readings[0]
    assert first.title == title and first.confidence is not None and 0.0 < first.confidence < 1.0
    read = {r.paper_id for r in answer.readings if r.verdict != "unread"}
    assert {c.paper_id for c in answer.citations} <= read


def test_per_paper_answers_with_the_embedded_model(sample_settings: Any) -> None:
    settings = _embedded_settings(sample_settings).updated(answer={"mode": "per_paper"})
    question, (title,) = EXPECTED[0]
    answer = ask(question, settings=settings)
    assert answer.mode == "per_paper" and answer.confidence_from == "log-probabilities"
    assert answer.cited_titles() == [title], answer.readings
    cited = next(r for r in answer.readings if r.cited)
    assert cited.supported and cited.finding and cited.confidence is not None
    assert answer.timings.first_token is not None and answer.timings.first_token <= answer.timings.total


def test_cli_json_carries_every_sentence_with_its_verdict(sample_settings: Any) -> None:
    import json

    from click.testing import CliRunner

    from ui.cli import cli

    question, (title,) = EXPECTED[0]
    result = CliRunner().invoke(
        cli,
        ["ask", question, "--json", "--backend", "embedded"],
        env={"PAPERCITE_DATA_DIR": str(sample_settings.data_dir)},
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert title in [c["title"] for c in answer["citations"]], answer["text"]
    assert answer["sentences"] and all(
        s["verdict"] in ("supported", "corrected", "unsupported") for s in answer["sentences"]
    )
    numbers = {s["number"] for s in answer["sources"]}
    shown = [s for s in answer["sentences"] if s["shown"]]
    assert shown and all(s["citations"] and set(s["citations"]) <= numbers for s in shown)
    assert all(s["reason"] for s in answer["sentences"] if s["verdict"] != "supported")
