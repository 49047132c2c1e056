"""Paper-level metrics, each a plain function over ids, so each is tested alone.

Definitions (one question at a time; the harness averages over questions):

Retrieval, over the ranked list of retrieved papers and the set G of gold papers:
- Recall@k: |top-k ∩ G| / |G|.
- MRR: 1 / rank of the first gold paper in the ranking (0 if none is retrieved).
- nDCG@10: DCG of the top 10 with binary gains, 1/log2(rank+1) per gold paper,
  divided by the DCG of an ideal ranking (all gold papers first).

Citations, over the set C of papers the answer cites and the set R it retrieved:
- Citation precision: |C ∩ G| / |C| on answerable questions; an abstention on an
  answerable question scores 0 (it is a miss, not a neutral outcome). Questions the
  collection does not cover are scored by the abstention rows instead.
- Citation recall: |C ∩ G| / |G|, on answerable questions (an abstention cites
  nothing and scores 0).
- Precision and recall over answered questions: the same, on the answerable
  questions that did not abstain only.
- Citation validity: the share of citations that point to a retrieved paper,
  counted over every [n] marker in the answer text and every listed citation,
  checked here independently of the product's own parser. Must be 1.0.

Answer facts: the share of a question's gold facts found in the answer after
normalisation (case, Unicode dashes and spaces, "73.62 %" = "73.62%"), each starting
at a word boundary.

Abstention: on out-of-scope questions, the share that abstain (higher is better);
on answerable questions, the share that wrongly abstain (lower is better).

False premises: the share of false-premise questions answered (not abstained) from the
gold paper, and the stricter share whose answer also states one of its facts (the
paper's true value); an answer that echoes the premise without the true value passes
the first and fails the second.

Unsupported numbers: answer sentences (as shown) holding a number that occurs in
none of the abstracts the sentence cites (whole abstracts, digits compared after
removing thousands separators; "three" counts as 3). A sentence without a
citation cites nothing, so any number in it counts. Must be 0.

Scaffolding echo: answers that copy the prompt's layout instead of writing plain
sentences: "Abstract [n]", 'from the paper "...', or a line that opens with a marker.

Support (after ALCE, Gao et al. 2023): the share of answer sentences whose cited
passages support them, as judged by ``evals.judge``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence

from rag.answer.citations import CITE

__all__ = [
    "answer_sentences",
    "citation_precision",
    "citation_recall",
    "echoes_scaffolding",
    "fact_coverage",
    "marker_numbers",
    "mean",
    "mrr",
    "ndcg_at_k",
    "normalize",
    "numbers_in",
    "percentile",
    "recall_at_k",
    "unsupported_number_sentences",
]


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
    return [int(n) for n in CITE.findall(text)]


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


_NUMBER = re.compile(r"(?<![\w.])(?<![A-Za-z]-)\d+(?:,\d{3})*(?:\.\d+)?")  # not the 10 of "CIFAR-10"
_LIST_ITEM = re.compile(r"^\s*\d{1,2}[.)]\s+", re.MULTILINE)
_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate((*_UNITS, *_TEENS, "twenty"))}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_SCAFFOLD = re.compile(r"\babstracts? \[\d+\]|from the paper \"|^\s*\[\d+\]", re.IGNORECASE | re.MULTILINE)


def numbers_in(text: str, *, words: bool = False) -> set[str]:
    """The numbers written in ``text`` (markers and list numbering removed), "1,000" read as "1000".

    With ``words``, number words from zero to twenty count too ("three" is "3").
    """
    text = _LIST_ITEM.sub("", CITE.sub(" ", text))
    found = {m.replace(",", "") for m in _NUMBER.findall(text)}
    if words:
        found |= {_NUMBER_WORDS[w.lower()] for w in _NUMBER_WORD.findall(text)}
    return found


def answer_sentences(text: str) -> list[str]:
    """An answer's sentences, each with the markers that follow it (a splitter independent of ``rag``)."""
    pieces = []
    for line in text.splitlines():  # a list item's own number is layout, not a claim
        pieces += re.split(r"(?<=[.!?\]])\s+(?=[A-Z(\"'])", _LIST_ITEM.sub("", line))
    return [p.strip() for p in pieces if p and p.strip()]


def unsupported_number_sentences(text: str, abstracts: dict[int, str]) -> list[str]:
    """Sentences of ``text`` with a number found in none of the abstracts they cite.

    Args:
        text: the answer as shown, with ``[n]`` markers.
        abstracts: the whole abstract of each retrieved source, by its number.
    """
    flagged = []
    for sentence in answer_sentences(text):
        numbers = numbers_in(sentence)
        if not numbers:
            continue
        cited = [abstracts[n] for n in marker_numbers(sentence) if n in abstracts]
        known = set().union(*(numbers_in(a, words=True) for a in cited)) if cited else set()
        if numbers - known:
            flagged.append(sentence)
    return flagged


def echoes_scaffolding(text: str, titles: Sequence[str] = ()) -> bool:
    """True when the answer copies the prompt's layout ("Abstract [2] ...", 'from the paper "...'),
    or writes out a cited paper's whole "Name: subtitle" title where its name would do (the badge
    already carries the title)."""
    return bool(_SCAFFOLD.search(text)) or any(":" in t and t.lower() in text.lower() for t in titles)
