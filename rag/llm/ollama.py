"""llama-index's Ollama LLM, able to ask for log-probabilities.

Ollama's ``/api/chat`` returns each generated token's log-probability and its top
alternatives when asked (``logprobs``, ``top_logprobs``), and the official client passes
them, but llama-index's ``Ollama`` does not ask. A per-paper reading needs the first
token's P(YES), so this subclass asks when ``top_logprobs`` is set and puts the answer
where llama-index keeps it (``ChatResponse.logprobs``). Everything else is llama-index's.
An Ollama too old to know the fields ignores them: the reading then falls back to the
reply's first word.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, LogProb, MessageRole
from llama_index.core.bridge.pydantic import Field
from llama_index.llms.ollama import Ollama

__all__ = ["LogprobOllama"]


class LogprobOllama(Ollama):
    """llama-index's ``Ollama``; with ``top_logprobs`` set, ``chat`` also returns log-probabilities."""

    top_logprobs: int = Field(0, ge=0, description="Alternatives per generated token to return; 0: none asked.")

    @classmethod
    def class_name(cls) -> str:
        return "papercite_ollama_llm"

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """llama-index's ``Ollama.chat``, or, with ``top_logprobs``, the same request asking for log-probabilities."""
        if not self.top_logprobs:
            return super().chat(messages, **kwargs)
        response = self.client.chat(
            model=self.model,
            messages=self._convert_to_ollama_messages(messages),
            stream=False,
            options=self._model_kwargs,
            keep_alive=self.keep_alive,
            logprobs=True,
            top_logprobs=self.top_logprobs,
        )
        tokens = [
            [LogProb(token=alt.token or "", logprob=alt.logprob or 0.0) for alt in (token.top_logprobs or [token])]
            for token in response.logprobs or ()
        ]
        raw = dict(response)
        raw["usage"] = self._get_response_token_counts(raw)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=response.message.content or ""),
            raw=raw,
            logprobs=tokens or None,
            additional_kwargs={"prompt_tokens": response.prompt_eval_count},
        )
