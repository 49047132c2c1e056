"""Ollama down, slow, garbled, cut off or failing: one clear message, a fallback in auto mode, a store untouched.

The faults come from the Ollama stand-in (tests/ollama_standin.py) over real HTTP,
reached through the real ``ollama`` client and llama-index's ``Ollama`` LLM.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rag import ask
from rag.errors import LLMUnavailable
from rag.services import Services

try:
    from tests.ollama_standin import OllamaStandIn
except ImportError:  # pragma: no cover - run from inside tests/
    from ollama_standin import OllamaStandIn

QUESTION = "Which architecture mixes image tokens with a 2D wavelet transform, and why?"
TITLE = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
REPLY = "WaveMix mixes image tokens with a multi-level 2D discrete wavelet transform to save memory [1]."


def _fixed(messages: list[dict], options: dict, fmt: object) -> Iterator[str]:
    yield from (word + " " for word in REPLY.split())


@pytest.fixture
def server() -> Iterator[OllamaStandIn]:
    with OllamaStandIn({"qwen2.5:3b": _fixed}) as srv:
        yield srv


def _on(settings: Any, server: OllamaStandIn, backend: str) -> Any:
    llm = settings.llm.model_copy(update={"backend": backend, "ollama_host": server.url, "request_timeout": 2.0})
    return settings.model_copy(update={"llm": llm})


def _store_state(settings: Any) -> tuple[int, float]:
    store = Services(settings).store
    return store.collection.count(), store.bm25_dir.stat().st_mtime


# What each fault's message says went wrong (rag.llm.backends._describe: the client's own account,
# first line only), so that the five faults can be told apart.
WHY = {
    "down": "Server disconnected without sending a response",
    "slow": "timed out",
    "garbage": "Expecting value: line 1 column 1",  # the non-JSON body, as the JSON decoder saw it
    "truncated": "incomplete chunked read",
    "error": "llama runner process has terminated: exit status 2 (status code: 500)",  # the server's error, passed on
}


@pytest.mark.parametrize(("fault", "why"), WHY.items())
def test_each_ollama_fault_is_one_message_naming_the_host_and_the_fix(
    sample_settings: Any, server: OllamaStandIn, fault: str, why: str
) -> None:
    settings = _on(sample_settings, server, "ollama")
    assert TITLE in ask(QUESTION, settings=settings).cited_titles()  # sound before the fault
    before = _store_state(settings)
    server.fault, server.slow_seconds = fault, 5
    with pytest.raises(LLMUnavailable) as caught:
        ask(QUESTION, settings=settings)
    message = str(caught.value)
    assert server.url.split("//")[1] in message and "ollama serve" in message and "\n" not in message, message
    assert why in message, message
    assert _store_state(settings) == before  # a failed answer never touches the store
    server.fault = None
    assert TITLE in ask(QUESTION, settings=settings).cited_titles()  # and the next one works


@pytest.mark.llm
def test_auto_mode_falls_back_to_the_embedded_model_and_says_so(sample_settings: Any, server: OllamaStandIn) -> None:
    settings = _on(sample_settings, server, "auto")
    assert ask(QUESTION, settings=settings).model == "ollama:qwen2.5:3b"
    server.fault = "truncated"
    answer = ask(QUESTION, settings=settings)
    assert answer.model.startswith("embedded:") and TITLE in answer.cited_titles(), answer.text
    assert "embedded model answered instead" in answer.notice and server.url.split("//")[1] in answer.notice


def test_auto_mode_without_an_embedded_model_reports_the_ollama_failure(
    sample_settings: Any, server: OllamaStandIn, tmp_path: Any
) -> None:
    settings = _on(sample_settings, server, "auto")
    missing = str(tmp_path / "no-such-model.gguf")
    settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"embedded_model": missing})})
    server.fault = "truncated"
    with pytest.raises(LLMUnavailable) as caught:
        ask(QUESTION, settings=settings)
    message = str(caught.value)
    assert server.url.split("//")[1] in message and "ollama serve" in message, message
    assert "no-such-model" not in message  # the fallback's own failure is not the one to fix
