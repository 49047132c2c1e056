"""The support judge: does a sentence's cited text support it? Asked of the embedded LLM.

After ALCE (Gao et al. 2023), which judges citation support with an NLI model. No NLI
model ships on PyPI for offline use here, so the judge is the embedded Qwen2.5-Coder
1.5B with a fixed yes/no prompt and greedy decoding: the same weights as the
answers, which is a known bias (a model tends to accept its own claims), so the
judge itself is measured against hand labels (``evals/data/judge_labels.jsonl``)
and that agreement is reported beside the support figure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag.services import get_services
from rag.settings import Settings

__all__ = ["LABELS", "Judge", "judge_agreement", "make_judge"]

LABELS = Path(__file__).parent / "data" / "judge_labels.jsonl"
Judge = Callable[[str, Sequence[str]], bool]

SYSTEM = ("You check facts. Given passages from paper abstracts and a statement, decide whether the "
          "passages state or directly imply the statement. Reply with one word: yes or no.")


def make_judge(settings: Settings) -> Judge:
    """A judge on the embedded model, greedy and capped at a few tokens."""
    llm_conf = settings.llm.model_copy(update={"backend": "embedded", "max_tokens": 16, "temperature": 0.0})
    backend = get_services(settings.model_copy(update={"llm": llm_conf})).backend

    def judge(sentence: str, passages: Sequence[str]) -> bool:
        claim = re.sub(r"\s*\[\d+\]", "", sentence).strip()
        text = "\n\n".join(f"Passage {i}: {p}" for i, p in enumerate(passages, start=1))
        messages = [
            ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM),
            ChatMessage(role=MessageRole.USER, content=f"{text}\n\nStatement: {claim}\n\n"
                        "Do the passages support the statement? Answer yes or no."),
        ]
        reply = str(backend.llm.chat(messages).message.content or "")
        return reply.strip().lower().lstrip("*\"' ").startswith("yes")

    return judge


def judge_agreement(judge: Judge, path: Path = LABELS) -> dict[str, float]:
    """How often the judge agrees with the hand labels: agreement and counts."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    agree = tp = tn = fp = fn = 0
    for row in rows:
        verdict = judge(row["sentence"], row["passages"])
        label = bool(row["supported"])
        agree += verdict == label
        tp += verdict and label
        tn += not verdict and not label
        fp += verdict and not label
        fn += not verdict and label
    return {"labels": float(len(rows)), "agreement": agree / len(rows) if rows else 0.0,
            "judge_yes_label_yes": float(tp), "judge_no_label_no": float(tn),
            "judge_yes_label_no": float(fp), "judge_no_label_yes": float(fn)}
