"""The slow check: does a sentence's cited text support it? Asked of the LLM as a yes/no judge.

After ALCE (Gao et al. 2023), which judges citation support with an NLI model. No NLI
model ships on PyPI for offline use, so the judge is the answering LLM itself with a
fixed yes/no prompt and greedy decoding. A model tends to accept its own claims, so
``evals.judge`` measures this judge against hand labels. It costs a generation per
sentence (seconds on a CPU), which is why ``PAPERCITE_ANSWER__JUDGE`` is off by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag.answer.citations import MARKER
from rag.llm.backends import BackendLLM

__all__ = ["SYSTEM", "Judge", "make_judge"]

Judge = Callable[[str, Sequence[str]], bool]

SYSTEM = (
    "You check facts. Given passages from paper abstracts and a statement, decide whether the "
    "passages state or directly imply the statement. Reply with one word: yes or no."
)


def make_judge(backend: BackendLLM) -> Judge:
    """A judge asking ``backend``'s LLM, at the temperature it was built with (0 by default)."""

    def judge(sentence: str, passages: Sequence[str]) -> bool:
        claim = MARKER.sub("", sentence).strip()
        text = "\n\n".join(f"Passage {i}: {p}" for i, p in enumerate(passages, start=1))
        messages = [
            ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM),
            ChatMessage(
                role=MessageRole.USER,
                content=f"{text}\n\nStatement: {claim}\n\nDo the passages support the statement? Answer yes or no.",
            ),
        ]
        reply = str(backend.llm.chat(messages).message.content or "")
        return reply.strip().lower().lstrip("*\"' ").startswith("yes")

    return judge
