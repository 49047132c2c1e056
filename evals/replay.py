"""A generation cache for tuning and ablations: the same prompt is generated once.

At temperature 0 the embedded model writes the same reply to the same messages, so an
ablation that switches off a step after generation (marker resolution, verification,
abstention) need not generate again: :class:`ReplayLLM` answers a prompt it has seen
from its file and asks the real model only for new prompts (a step before generation,
such as context selection, changes the prompt). Each entry keeps the seconds the real
generation took, so a replayed run can still report what its answers cost.

Per-paper readings (``answer.mode = per_paper``) make two calls per paper with copies of
the model set up for them (a one-token verdict with log-probabilities, a finding):
:meth:`ReplayLLM.for_reading` wraps those copies the same way, the log-probabilities kept
in the file, so thresholds are tuned on replayed readings without generating again.

This is an eval tool, never the product's path: ``papercite eval`` uses it only with
``--replay FILE``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from rag.llm.backends import BackendLLM, ReadingLLMs, reading_llms

__all__ = ["ReplayLLM"]


class ReplayLLM(CustomLLM):
    """Wraps a real LLM; replies to a prompt seen before come from ``path`` (JSONL), new ones are generated and kept."""

    label: str
    path: Path
    setup: str = ""  # how the wrapped model is set up (a reading's verdict or finding), part of every key
    _inner: LLM = PrivateAttr()
    _entries: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _replayed_seconds: float = PrivateAttr(default=0.0)
    _hits: int = PrivateAttr(default=0)
    _misses: int = PrivateAttr(default=0)
    _root: ReplayLLM | None = PrivateAttr(default=None)  # the ReplayLLM a reading's copy counts for

    def __init__(
        self, inner: LLM, label: str, path: Path, *, shared_with: ReplayLLM | None = None, **data: Any
    ) -> None:
        super().__init__(label=label, path=path, **data)
        self._inner = inner
        if shared_with is not None:  # a reading's copy: the same entries, file, lock and counts
            self._entries, self._lock, self._root = shared_with._entries, shared_with._lock, shared_with
            return
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._entries[entry["key"]] = entry

    @classmethod
    def class_name(cls) -> str:
        return "papercite_replay_llm"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.label, is_chat_model=True)

    def for_reading(self, max_tokens: int, top_logprobs: int) -> ReadingLLMs:
        """The wrapped model set up for readings (:func:`rag.llm.backends.reading_llms`), each copy replayed."""
        inner = reading_llms(BackendLLM(self._inner, self.label, "replay", ""), max_tokens, top_logprobs)

        def wrap(llm: LLM, setup: str) -> ReplayLLM:
            return ReplayLLM(llm, self.label, self.path, shared_with=self, setup=setup)

        verdict, finding = wrap(inner.verdict, f"verdict:{top_logprobs}"), wrap(inner.finding, f"finding:{max_tokens}")
        return ReadingLLMs(verdict, finding, inner.keeps_prefixes)

    @property
    def counts(self) -> tuple[int, int]:
        """(prompts answered from the file, prompts generated) so far."""
        return self._hits, self._misses

    def take_replayed_seconds(self) -> float:
        """Seconds the replayed replies took when first generated, since the last call (readings' copies included)."""
        seconds, self._replayed_seconds = self._replayed_seconds, 0.0
        return seconds

    def _key(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> str:
        # A reading's prefix names what the runtime may restore; it never changes the reply, so not the key.
        asked = sorted((k, v) for k, v in kwargs.items() if k != "prefix")
        body = [self.label, [(m.role.value, m.content or "") for m in messages], asked]
        if self.setup:
            body.append(self.setup)
        return hashlib.sha256(json.dumps(body, default=str).encode()).hexdigest()

    def _generate(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        key = self._key(messages, kwargs)
        root = self._root or self
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            root._hits += 1
            root._replayed_seconds += entry["seconds"]
            return entry
        started = time.perf_counter()
        entry = {"key": key} | (self._streamed(messages, kwargs, started) if stream else self._whole(messages, kwargs))
        entry["seconds"] = time.perf_counter() - started
        with self._lock:
            self._entries[key] = entry
            root._misses += 1
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return entry

    def _streamed(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any], started: float) -> dict[str, Any]:
        reply, prompt_tokens, first = "", None, None
        for response in self._inner.stream_chat(messages, **kwargs):
            if response.delta and first is None:
                first = time.perf_counter() - started
            reply += response.delta or ""
            prompt_tokens = response.additional_kwargs.get("prompt_tokens") or prompt_tokens
        return {"reply": reply, "prompt_tokens": prompt_tokens, "first_token": first}

    def _whole(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
        response = self._inner.chat(messages, **kwargs)
        extra = response.additional_kwargs or {}
        logprobs = [[[alt.token, alt.logprob] for alt in token] for token in response.logprobs or []]
        return {
            "reply": response.message.content or "",
            "prompt_tokens": extra.get("prompt_tokens"),
            "cached_tokens": extra.get("cached_tokens"),
            "first_token": None,
            "logprobs": logprobs or None,
        }

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        entry = self._generate(messages, kwargs, stream=False)
        logprobs = entry.get("logprobs")
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=entry["reply"]),
            logprobs=[[LogProb(token=t, logprob=p) for t, p in token] for token in logprobs] if logprobs else None,
            additional_kwargs={"prompt_tokens": entry["prompt_tokens"], "cached_tokens": entry.get("cached_tokens")},
        )

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        entry = self._generate(messages, kwargs, stream=True)

        def gen() -> Iterator[ChatResponse]:
            text = ""
            for piece in entry["reply"].split(" "):
                delta = piece if not text else " " + piece
                text += delta
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                    delta=delta,
                    additional_kwargs={"prompt_tokens": entry["prompt_tokens"]},
                )

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        response = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return CompletionResponse(text=response.message.content or "")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self.complete(prompt, formatted, **kwargs).text
        yield CompletionResponse(text=text, delta=text)
