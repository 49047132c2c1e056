"""A generation cache for tuning and ablations: the same prompt is generated once.

At temperature 0 the embedded model writes the same reply to the same messages, so an
ablation that switches off a step after generation (marker resolution, verification,
abstention) need not generate again: :class:`ReplayLLM` answers a prompt it has seen
from its file and asks the real model only for new prompts (a step before generation,
such as context selection, changes the prompt). Each entry keeps the seconds the real
generation took, so a replayed run can still report what its answers cost.

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
    MessageRole,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

__all__ = ["ReplayLLM"]


class ReplayLLM(CustomLLM):
    """Wraps a real LLM; replies to a prompt seen before come from ``path`` (JSONL), new ones are generated and kept."""

    label: str
    path: Path
    _inner: LLM = PrivateAttr()
    _entries: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _replayed_seconds: float = PrivateAttr(default=0.0)
    _hits: int = PrivateAttr(default=0)
    _misses: int = PrivateAttr(default=0)

    def __init__(self, inner: LLM, label: str, path: Path, **data: Any) -> None:
        super().__init__(label=label, path=path, **data)
        self._inner = inner
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

    @property
    def counts(self) -> tuple[int, int]:
        """(prompts answered from the file, prompts generated) so far."""
        return self._hits, self._misses

    def take_replayed_seconds(self) -> float:
        """Seconds the replayed replies took when first generated, since the last call."""
        seconds, self._replayed_seconds = self._replayed_seconds, 0.0
        return seconds

    def _key(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> str:
        body = [self.label, [(m.role.value, m.content or "") for m in messages], sorted(kwargs.items())]
        return hashlib.sha256(json.dumps(body, default=str).encode()).hexdigest()

    def _generate(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
        key = self._key(messages, kwargs)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            self._hits += 1
            self._replayed_seconds += entry["seconds"]
            return entry
        started = time.perf_counter()
        reply, prompt_tokens, first = "", None, None
        for response in self._inner.stream_chat(messages, **kwargs):
            if response.delta and first is None:
                first = time.perf_counter() - started
            reply += response.delta or ""
            prompt_tokens = response.additional_kwargs.get("prompt_tokens") or prompt_tokens
        entry = {
            "key": key,
            "reply": reply,
            "prompt_tokens": prompt_tokens,
            "seconds": time.perf_counter() - started,
            "first_token": first,
        }
        with self._lock:
            self._entries[key] = entry
            self._misses += 1
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return entry

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        entry = self._generate(messages, kwargs)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=entry["reply"]),
            additional_kwargs={"prompt_tokens": entry["prompt_tokens"]},
        )

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        entry = self._generate(messages, kwargs)

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
