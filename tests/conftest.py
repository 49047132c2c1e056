"""Shared fixtures: an isolated data directory per test, the sample store, test doubles.

Unit tests use ``ScriptedLLM``, a llama-index ``CustomLLM`` that replays queued
replies and records every prompt. Integration tests use the real pieces: a real
Chroma store, the packaged MiniLM, and the real embedded LLM (marked ``llm``).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
    MessageRole,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class ScriptedLLM(CustomLLM):
    """Replays queued replies, word by word when streamed, and records each request.

    A reply queued as ``(text, p)`` is a reading's verdict with log-probabilities: ``chat``
    returns the first token's alternatives YES (probability ``p``) and NO (``1 - p``), as the
    embedded llama.cpp does.
    """

    _replies: list[str | tuple[str, float]] = PrivateAttr(default_factory=list)
    _history: list[list[ChatMessage]] = PrivateAttr(default_factory=list)

    def enqueue(self, *replies: str | tuple[str, float]) -> ScriptedLLM:
        """Queue replies for the next calls, in order."""
        self._replies.extend(replies)
        return self

    @property
    def history(self) -> list[list[ChatMessage]]:
        """Every message list this model was asked to answer."""
        return self._history

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted", is_chat_model=True)

    def _next(self, messages: Sequence[ChatMessage]) -> str:
        reply = self._next_scored(messages)
        return reply[0] if isinstance(reply, tuple) else reply

    def _next_scored(self, messages: Sequence[ChatMessage]) -> str | tuple[str, float]:
        self._history.append(list(messages))
        if not self._replies:
            raise AssertionError("ScriptedLLM was asked more often than replies were queued")
        return self._replies.pop(0)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        reply = self._next_scored(messages)
        if isinstance(reply, str):
            return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=reply))
        text, p = reply
        alternatives = [LogProb(token="YES", logprob=math.log(p)), LogProb(token="NO", logprob=math.log(1 - p))]
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), logprobs=[alternatives])

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        reply = self._next(messages)

        def gen() -> Iterator[ChatResponse]:
            text = ""
            for word in reply.split(" "):
                delta = word if not text else " " + word
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._next([ChatMessage(role=MessageRole.USER, content=prompt)]))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._next([ChatMessage(role=MessageRole.USER, content=prompt)])
        yield CompletionResponse(text=text, delta=text)


class GatedLLM(ScriptedLLM):
    """A scripted LLM that holds each streamed reply until the test calls ``release()``: a slow
    model whose pace the test sets, so a test asserts what came before its first word, not how fast."""

    _released: threading.Event = PrivateAttr(default_factory=threading.Event)

    def release(self) -> None:
        """Let the replies through, now and from now on."""
        self._released.set()

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        words = super().stream_chat(messages, **kwargs)

        def gen() -> Iterator[ChatResponse]:
            if not self._released.wait(timeout=300):
                raise AssertionError("GatedLLM was never released")
            yield from words

        return gen()


class SteppedLLM(ScriptedLLM):
    """A scripted LLM whose ``chat`` calls each wait for the test's ``allow()``: a slow model read one
    step at a time, so a test sees what a page shows between one paper's reading and the next."""

    _steps: threading.Semaphore = PrivateAttr(default_factory=lambda: threading.Semaphore(0))

    def allow(self, calls: int = 1) -> None:
        """Let ``calls`` more calls through."""
        for _ in range(calls):
            self._steps.release()

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if not self._steps.acquire(timeout=300):
            raise AssertionError("SteppedLLM was never allowed to answer")
        return super().chat(messages, **kwargs)


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point papercite at a fresh data directory."""
    data_dir = tmp_path / "papercite-data"
    monkeypatch.setenv("PAPERCITE_DATA_DIR", str(data_dir))
    for name in list(os.environ):
        if name.startswith("PAPERCITE_") and name != "PAPERCITE_DATA_DIR":
            monkeypatch.delenv(name)
    # Most tests script the one-prompt path's replies; the per-paper tests (test_per_paper.py,
    # test_warm.py, the page's and the backends' per-paper tests) ask for the default mode by name.
    monkeypatch.setenv("PAPERCITE_ANSWER__MODE", "one_prompt")
    return data_dir


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the bundled 84 papers, ingested once per test session."""
    from ingest import ingest_path, sample_corpus
    from rag.settings import Settings

    data_dir = tmp_path_factory.mktemp("sample-store")
    report = ingest_path(sample_corpus(), settings=Settings(data_dir=data_dir), progress=False)
    assert len(report.added) == 84, report.summary()
    return data_dir


@pytest.fixture
def sample_settings(sample_store: Path) -> Any:
    """Settings that read the shared sample store (tests must not write to it)."""
    from rag.settings import Settings

    return Settings(data_dir=sample_store)


@pytest.fixture
def scripted() -> ScriptedLLM:
    """A fresh scripted LLM."""
    return ScriptedLLM()


@pytest.fixture(scope="module")
def gated() -> Iterator[GatedLLM]:
    """A scripted LLM that holds its replies until released (released at the end of the module)."""
    llm = GatedLLM()
    yield llm
    llm.release()
