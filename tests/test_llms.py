"""Backend selection and failures, without loading any model."""

from __future__ import annotations

from typing import Any

import pytest

from rag import ask
from rag.errors import BadInput, LLMUnavailable
from rag.llm.backends import build_llm
from rag.settings import LLMSettings, Settings


def _with_llm(settings: Settings, **llm: Any) -> Settings:
    return settings.model_copy(update={"llm": settings.llm.model_copy(update=llm)})


def test_ollama_down_names_the_host_and_the_fix(sample_settings: Settings) -> None:
    settings = _with_llm(sample_settings, backend="ollama", ollama_host="http://127.0.0.1:9")
    with pytest.raises(LLMUnavailable) as err:
        ask("Which architecture mixes image tokens with a 2D wavelet transform?", settings=settings)
    message = str(err.value)
    assert "http://127.0.0.1:9" in message and "ollama serve" in message
    assert "\n" not in message


def test_openai_backend_needs_a_base_url() -> None:
    with pytest.raises(BadInput, match="OPENAI_BASE_URL"):
        build_llm(_with_llm(Settings(), backend="openai"))


def test_unknown_embedded_model_is_refused() -> None:
    with pytest.raises(BadInput, match="neither a known model"):
        build_llm(_with_llm(Settings(), backend="embedded", embedded_model="no-such-model"))


def test_ollama_host_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:11434")
    assert LLMSettings().resolved_ollama_host() == "http://10.0.0.5:11434"
    assert LLMSettings(ollama_host="http://h:1/").resolved_ollama_host() == "http://h:1"


def test_ollama_requests_set_num_ctx_and_a_long_timeout() -> None:
    backend = build_llm(_with_llm(Settings(), backend="ollama"))
    assert backend.llm.context_window == 4096
    assert backend.llm._model_kwargs["num_ctx"] == 4096
    assert backend.llm.request_timeout >= 120


def test_llm_choices_offer_what_can_answer_configured_first() -> None:
    from rag.llm.backends import llm_choices
    from tests.ollama_standin import OllamaStandIn

    dead = "http://127.0.0.1:9"
    offline = llm_choices(_with_llm(Settings(), backend="auto", ollama_host=dead))
    assert next(iter(offline)) == "embedded:qwen2.5-coder-1.5b"  # auto with no Ollama: embedded
    assert not any(label.startswith("ollama:") for label in offline)

    with OllamaStandIn({"qwen2.5:3b": lambda *a: iter(["x"]), "llama3.2:1b": lambda *a: iter(["x"])}) as server:
        online = llm_choices(_with_llm(Settings(), backend="auto", ollama_host=server.url))
        assert next(iter(online)) == "ollama:qwen2.5:3b"  # auto finds Ollama serving the model
        assert (
            online["ollama:llama3.2:1b"].backend == "ollama"
            and online["ollama:llama3.2:1b"].ollama_model == "llama3.2:1b"
        )
        assert online["embedded:qwen2.5-coder-1.5b"].backend == "embedded"

    remote = llm_choices(
        _with_llm(Settings(), backend="openai", openai_base_url="http://gpu:8000/v1", ollama_host=dead)
    )
    assert next(iter(remote)) == "openai:default"


def test_fifo_lock_serves_waiters_in_the_order_they_asked() -> None:
    import threading
    import time

    from rag.llm.embedded import FifoLock

    lock, served = FifoLock(), []
    first = lock.ticket()
    tickets = [lock.ticket() for _ in range(8)]

    def wait(ticket: int) -> None:
        with lock.turn(ticket):
            served.append(ticket)

    threads = [threading.Thread(target=wait, args=(t,)) for t in reversed(tickets)]  # started last-first
    for t in threads:
        t.start()
    time.sleep(0.05)
    assert served == []  # all wait behind the first ticket
    with lock.turn(first):
        pass
    for t in threads:
        t.join(timeout=5)
    assert served == tickets
    with lock:  # the plain context-manager form takes the next ticket
        served.append(-1)
    assert served[-1] == -1
