"""Paper-level metrics, each a plain function over ids, so each is tested alone.

Definitions (one question at a time; the harness averages over questions):

Retrieval, over the ranked list of retrieved papers and the set G of gold papers:
- Recall@k: |top-k ∩ G| / |G|.
- MRR: 1 / rank of the first gold paper in the ranking (0 if none is retrieved).
- nDCG@10: DCG of the top 10 with binary gains, 1/log2(rank+1) per gold paper,
  divided by the DCG of an ideal ranking (all gold papers first).

Citations, over the set C of papers the answer cites and the set R it retrieved:
- Citation precision: |C ∩ G| / |C|, on answers that cite something.
- Citation recall: |C ∩ G| / |G|, on answerable questions (an abstention cites
  nothing and scores 0).
- Citation validity: the share of citations that point to a retrieved paper,
  counted over every [n] marker in the answer text and every listed citation,
  checked here independently of the product's own parser. Must be 1.0.

Answer facts: the share of a question's gold facts found in the answer after
normalisation (case, Unicode dashes and spaces, "73.62 %" = "73.62%"), each starting
at a word boundary.

Abstention: on out-of-scope questions, the share that abstain (higher is better);
on answerable questions, the share that wrongly abstain (lower is better).

Support (after ALCE, Gao et al. 2023): the share of answer sentences whose cited
passages support them, as judged by ``evals.judge``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence

__all__ = [
    "citation_precision",
    "citation_recall",
    "fact_coverage",
    "marker_numbers",
    "mean",
    "mrr",
    "ndcg_at_k",
    "normalize",
    "percentile",
    "recall_at_k",
]

_MARKER = re.compile(r"\[(\d+)\]")


def recall_at_k(ranking: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Share of gold ids among the first ``k`` of ``ranking``."""
    gold = set(gold)
    return len(set(ranking[:k]) & gold) / len(gold) if gold else 0.0


def mrr(ranking: Sequence[str], gold: Iterable[str]) -> float:
    """Reciprocal rank of the first gold id (0 when none is ranked)."""
    gold = set(gold)
    return next((1.0 / rank for rank, pid in enumerate(ranking, start=1) if pid in gold), 0.0)


def ndcg_at_k(ranking: Sequence[str], gold: Iterable[str], k: int = 10) -> float:
    """Normalised discounted cumulative gain of the top ``k``, binary relevance."""
    gold = set(gold)
    if not gold:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, pid in enumerate(ranking[:k], start=1) if pid in gold)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(gold)) + 1))
    return dcg / ideal


def citation_precision(cited: Iterable[str], gold: Iterable[str]) -> float | None:
    """Share of cited papers that are gold; None when nothing is cited."""
    cited = set(cited)
    return len(cited & set(gold)) / len(cited) if cited else None


def citation_recall(cited: Iterable[str], gold: Iterable[str]) -> float:
    """Share of gold papers that are cited."""
    gold = set(gold)
    return len(set(cited) & gold) / len(gold) if gold else 0.0


def marker_numbers(text: str) -> list[int]:
    """Every ``[n]`` number in an answer's text, in order (a parser independent of ``rag``)."""
    return [int(n) for n in _MARKER.findall(text)]


def normalize(text: str) -> str:
    """Fold text for fact matching: NFKC, casefold, one kind of dash, no space before % or x."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text)
    text = re.sub(r"(\d)\s+(%|x\b|×)", r"\1\2", text)
    return " ".join(text.split())


def fact_coverage(answer: str, facts: Sequence[str]) -> float | None:
    """Share of ``facts`` present in ``answer`` after :func:`normalize`; None without facts."""
    if not facts:
        return None
    folded = normalize(answer)
    # A fact starts at a word boundary ("LoRA" is not in "exploration"); it may run on ("3.7" in "3.7x").
    found = [re.search(r"(?<![\w.])" + re.escape(normalize(f)), folded) is not None for f in facts]
    return sum(found) / len(facts)


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
