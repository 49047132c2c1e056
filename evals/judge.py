"""How far the support judge (:mod:`rag.answer.judge`) can be trusted: its agreement with hand labels.

The judge is the embedded Qwen2.5-Coder 1.5B with a fixed yes/no prompt: the same
weights as the answers, which is a known bias (a model tends to accept its own
claims), so the judge itself is measured against hand labels
(``evals/data/judge_labels.jsonl``) and that agreement is reported beside the support figure.
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.answer.judge import Judge
from rag.answer.judge import make_judge as judge_on
from rag.services import Services
from rag.settings import Settings

__all__ = ["LABELS", "Judge", "judge_agreement", "make_judge"]

LABELS = Path(__file__).parent / "data" / "judge_labels.jsonl"


def make_judge(settings: Settings) -> Judge:
    """The judge on the embedded model, whatever backend answers."""
    return judge_on(Services(settings.updated(llm={"backend": "embedded"})).backend)


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
    return {
        "labels": float(len(rows)),
        "agreement": agree / len(rows) if rows else 0.0,
        "judge_yes_label_yes": float(tp),
        "judge_no_label_no": float(tn),
        "judge_yes_label_no": float(fp),
        "judge_no_label_yes": float(fn),
    }
