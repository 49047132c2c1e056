"""What the prompt shows: which retrieved papers, and how much of each, chosen per question.

On a CPU the model's first word waits for it to read the prompt (about 70 tokens/s on
two cores), so every sentence shown costs time. Two policies (``retrieval.context_policy``):

- ``whole``: every paper close to the best one (``context_margin``) shown whole while
  ``context_words`` lasts; papers past it by their best chunk.
- ``sentences``: the same papers, cut to ``context_words`` words of sentences
  (``context_words_several`` for a question asking for several papers, "which papers
  ...", which shares its words evenly among them). Otherwise the best paper is shown
  whole when it fits, and every other paper keeps at least its sentence most similar
  to the question, then the most similar sentences that still fit. Kept sentences
  stay in abstract order, a gap shown as "…".

The papers shown are numbered first, so the model sees [1]..[k]; the others stay in
the answer's sources as retrieved, not shown. In a follow-up (:func:`continue_numbers`)
the papers earlier turns showed keep their numbers and new ones follow them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from rag.answer.citations import split_sentences
from rag.answer.policy import SEVERAL, STOPWORDS, stem
from rag.types import Source, Turn

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from rag.settings import RetrievalSettings

__all__ = ["asks_for_several", "best_sentences", "choose_context", "continue_numbers", "question_words"]


def asks_for_several(question: str) -> bool:
    """The question asks for several papers ("Which papers ...?"), not one finding."""
    return bool(SEVERAL.search(question))


def choose_context(
    question: str, sources: Sequence[Source], embed_model: BaseEmbedding, conf: RetrievalSettings
) -> tuple[list[Source], list[Source]]:
    """The sources renumbered (shown ones first) and the context: the shown ones as the prompt shows them."""
    best = max((s.similarity for s in sources if s.similarity is not None), default=0.0)
    shown = [
        s
        for i, s in enumerate(sources)
        if i == 0 or (s.similarity is not None and s.similarity >= best - conf.context_margin)
    ]
    rest = [s for s in sources if s not in shown]
    renumbered = [replace(s, number=n) for n, s in enumerate(shown + rest, start=1)]
    shown = renumbered[: len(shown)]
    if conf.context_policy == "sentences":
        several = asks_for_several(question)
        budget = conf.context_words_several if several else conf.context_words
        return renumbered, _sentences(question, shown, embed_model, budget, several=several)
    return renumbered, _whole(shown, conf.context_words)


def continue_numbers(
    sources: Sequence[Source], context: Sequence[Source], conversation: Sequence[Turn]
) -> tuple[list[Source], list[Source]]:
    """``sources`` and ``context`` numbered for a follow-up to ``conversation``.

    A paper an earlier turn showed keeps its number (the model read it under that
    number and may cite it again); the others are numbered after the last number used.
    Earlier papers not retrieved this time are added to the sources: the model can still
    cite them.
    """
    earlier = {s.paper_id: s for turn in conversation for s in turn.shown}
    if not earlier:
        return list(sources), list(context)
    numbers = {pid: s.number for pid, s in earlier.items()}
    following = max(numbers.values()) + 1
    for source in sources:
        if source.paper_id not in numbers:
            numbers[source.paper_id], following = following, following + 1
    renumbered = [replace(s, number=numbers[s.paper_id]) for s in sources]
    retrieved = {s.paper_id for s in sources}
    renumbered += [s for pid, s in earlier.items() if pid not in retrieved]
    return renumbered, [replace(s, number=numbers[s.paper_id]) for s in context]


def _whole(shown: Sequence[Source], budget: int) -> list[Source]:
    """Whole abstracts in rank order while ``budget`` words last; the rest by their best chunk."""
    context, words = [], 0
    for source in shown:
        length = len(source.abstract.split())
        whole = bool(source.abstract) and words + length <= budget
        words += length if whole else 0
        context.append(replace(source, passages=(source.abstract,)) if whole else source)
    return context


def _sentences(
    question: str, shown: Sequence[Source], embed_model: BaseEmbedding, budget: int, *, several: bool
) -> list[Source]:
    """Each shown paper cut to the sentences that fit ``budget`` words (see the module's docstring)."""
    texts = [split_sentences(s.abstract or " ".join(s.passages)) for s in shown]
    lengths = [[len(t.split()) for t in sentences] for sentences in texts]
    if sum(map(sum, lengths)) <= budget:
        return [replace(s, passages=(" ".join(t),)) for s, t in zip(shown, texts)]
    flat = [(i, j) for i, sentences in enumerate(texts) for j in range(len(sentences))]
    query = embed_model.get_query_embedding(question)
    vectors = embed_model.get_text_embedding_batch([texts[i][j] for i, j in flat])
    similarity = {ij: sum(a * b for a, b in zip(query, v)) for ij, v in zip(flat, vectors)}  # both normalised
    ranked = sorted(flat, key=similarity.__getitem__, reverse=True)
    kept: set[tuple[int, int]] = set()
    used = 0

    def keep(ij: tuple[int, int], fits: int) -> None:
        nonlocal used
        if ij not in kept and used + lengths[ij[0]][ij[1]] <= fits:
            kept.add(ij)
            used += lengths[ij[0]][ij[1]]

    if not several and sum(lengths[0]) <= budget:  # one finding asked for: the best paper whole
        for j in range(len(texts[0])):
            keep((0, j), budget)
    for i in range(len(texts)):  # every shown paper keeps its best sentence, even past the budget
        if best_of_i := next((ij for ij in ranked if ij[0] == i), None):
            keep(best_of_i, budget + lengths[i][best_of_i[1]])
    share = budget // max(1, len(texts))
    for ij in ranked:
        if several:  # several papers asked for: no paper takes more than its share
            own = sum(lengths[ij[0]][j] for i, j in kept if i == ij[0])
            if own + lengths[ij[0]][ij[1]] > share:
                continue
        keep(ij, budget)
    return [replace(s, passages=(_in_order(texts[i], {j for k, j in kept if k == i}),)) for i, s in enumerate(shown)]


def _in_order(sentences: Sequence[str], kept: set[int]) -> str:
    """The kept sentences in abstract order, "…" where sentences were left out between them."""
    parts, last = [], None
    for j in sorted(kept):
        if last is not None and j != last + 1:
            parts.append("…")
        parts.append(sentences[j])
        last = j
    return " ".join(parts)


# -- the sentence the page highlights ------------------------------------------------

_WORD = re.compile(r"\w+")


def question_words(question: str) -> set[str]:
    """The question's content words, stemmed: what a page highlights, and what best sentences share."""
    return {stem(w) for w in _WORD.findall(question) if len(w) >= 3 and w.lower() not in STOPWORDS}


def best_sentences(question: str, sources: Sequence[Source]) -> list[str]:
    """For each source, the sentence of its passages that best matches ``question``; "" when none shares a word.

    A sentence scores the question's content words it holds, each weighing
    log(1 + N / n) over the N sentences of all the sources, n of which hold it: a word
    every abstract repeats ("model", "image") counts least. The earliest sentence wins
    a tie. Lexical, not MiniLM, because it runs before the model starts and must cost
    nothing: on the bundled development set (112 answered questions, 17 sentences at
    the median) it takes about 1 ms per question at the median and under 35 ms at most,
    where one batched MiniLM pass over the same sentences took about 4 s at the median
    (on a loaded 2-core machine). It also picks a sentence holding one of the gold set's
    facts for more gold papers: 61 of 120, against 51 for the unweighted word count and
    42 for MiniLM's closest sentence. Written here rather than taken from the BM25
    library the store uses: that scores a persisted index of chunks, and these are the
    words the page marks, so the sentence it marks whole holds the words it marks one by one.
    """
    wanted = question_words(question)
    split = [split_sentences(" ".join(s.passages)) for s in sources]
    held = [[wanted & {stem(w) for w in _WORD.findall(t)} for t in sentences] for sentences in split]
    total = sum(map(len, split))
    counts = {w: sum(w in words for sentences in held for words in sentences) for w in wanted}
    weight = {w: math.log(1 + total / n) for w, n in counts.items() if n}
    best = []
    for sentences, words in zip(split, held, strict=True):
        scores = [sum(weight[w] for w in ws) for ws in words]
        top = max(range(len(scores)), key=scores.__getitem__, default=None)
        best.append(sentences[top] if top is not None and scores[top] > 0 else "")
    return best
