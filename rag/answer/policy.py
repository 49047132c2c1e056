"""The answer path's fixed rules: every word list, pattern and cut-off it uses, with where each came from.

The thresholds a user may change are settings, not here: ``RetrievalSettings``
(``min_similarity``, ``context_margin``), ``AnswerSettings`` (``move_margin``,
``min_support``, ``echo_words``, ``retry_similarity``) and ``ReadingSettings`` (``accept``,
``read_margin``, ``several_margin``); each field's description in :mod:`rag.settings` says
which dev measurement chose its default. What is here is fixed: lists of words and the
patterns that find names, numbers and "which papers" questions. One stopword list and one
stemmer serve every step that compares words (the page's highlight, the best sentence of a
paper, the check that a sentence restates the question).
"""

from __future__ import annotations

import re

__all__ = [
    "COMMON_NUMBERS",
    "NAME",
    "NUMBER_WORDS",
    "QUESTION_WORDS",
    "SEVERAL",
    "STOPWORDS",
    "is_name",
    "stem",
]

#: Words that say nothing about which paper a sentence comes from: English function words, and the
#: words every abstract and question about papers uses ("paper", "study", "propose", "results").
#: Written by hand, not tuned: the union of the two lists verification and the page's highlight kept
#: before they were made one (the replayed dev and test tables before and after are in docs/eval/README.md).
STOPWORDS = frozenset(
    """a about above after again against all also am among an and any approach are as at authors author be because
    been before being below between both but by can collection could did do does doing done down during each few for
    from found find further had has have having he her here hers him his how i if in into is it its itself just me
    method methods more most much my no nor not now of off on once only or other our out over own paper papers
    propose proposed report reported reports research result results same she should show showed shows so some study
    studies such than that the their them then there these they this those through to too under until up use used
    uses using very was way we were what when where which while who whom why will with work works would yes you your
    abstract abstracts""".split()
)


def stem(word: str) -> str:
    """``word`` lower-cased with a plural ending cut ("transforms" ~ "transform", "studies" ~ "study")."""
    word = word.lower()
    for suffix in ("ies", "es", "s"):
        if len(word) > 4 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


#: A name in a question, for the name gate (:func:`rag.answer.steps.name_gate`): a word of letters, digits,
#: hyphens and dots, starting with a letter ("MI300", "Mask2Former", "GPT-4"). The gate's ablation
#: (docs/eval/README.md): not-covered abstention 0.300 -> 0.500 on ASReview test at no cost.
NAME = re.compile(r"(?<![\w-])([A-Za-z][\w\-.]*[A-Za-z0-9])")


def is_name(word: str) -> bool:
    """A name as every step means it: a word mixing letters and digits ("MI300", "GPT-4", "5-HT2A").

    The name gate also counts a capitalised word after the first ("Adam"); verification also counts
    an acronym or CamelCase word ("DNN", "LayerDecomp"). Neither counts a plain number.
    """
    return any(c.isdigit() for c in word) and any(c.isalpha() for c in word)


#: Capitalised words that start questions, never names (by hand).
QUESTION_WORDS = frozenset(
    "What Which Who Whom Whose When Where Why How Does Do Did Is Are Can Could Should Would Will".split()
)
#: "Which papers ...", "What methods ...", "Are there studies ...", "any work on ...": the question wants
#: every paper that answers, not the one best paper (the per-paper path lists every passing reading,
#: within ``tuning.reading.several_margin``). Written by hand; not measured on its own.
SEVERAL = re.compile(
    r"\b(which|what|any|are there|list|name)\b(\s+\w+){0,3}?\s+"
    r"(papers|works|studies|articles|approaches|methods|models|systems|techniques|benchmarks|datasets)\b",
    re.IGNORECASE,
)
#: Numbers most abstracts hold by chance (p-value cut-offs, round shares): a sentence stating one
#: is not taken as reporting its abstract. Written by hand; not measured on its own.
COMMON_NUMBERS = frozenset({"0.05", "0.01", "0.001", "0.0001", "0.1", "0.5", "100"})
#: Numbers written as words, read as digits when a sentence's numbers are checked against its abstract
#: (an answer writing "three" for an abstract's "3" is supported). Not tuned.
NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
