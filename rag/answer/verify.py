"""Sentence-level verification: is each answer sentence backed by the abstract it cites?

Small models state a right number and cite the wrong paper, or state a number no
paper has. Each sentence is checked against the whole abstracts of the retrieved
papers (title included), with two kinds of evidence:

- **Literal.** The sentence's numbers ("72%", "2.5x", "1,000") and rare terms
  (acronyms, CamelCase names, letter-digit names such as "GPT-4" or "5-HT2A") must
  occur in an abstract it cites. When they occur in exactly one other retrieved
  abstract, the citation moves there; in several, to the one closest in meaning;
  in none, the sentence is unsupported. An acronym counts as present when the
  abstract spells it out ("DNN" for "deep neural network").
- **Semantic.** A sentence with nothing literal to check is compared, with the
  encoder already loaded for retrieval, to every sentence of every retrieved
  abstract. A sentence much closer to another abstract than to the one it cites
  moves there; a sentence close to none is unsupported.
- **Not from the question.** A sentence that states, as the paper's, several of the
  question's own words that none of its cited abstracts contains, and takes almost
  nothing else from the abstract, is unsupported: the model restated the question or
  its premise ("Yes, stimulation reduces X in rats") instead of reporting what the
  abstract says. Small models do this most on questions the collection does not
  cover, and on false premises. A sentence that also reports a specific number, or two
  words of its abstract the question does not use, is reporting the abstract.

Verification only reads: it never adds text, and the citations it sets are always
retrieved sources. No library does this check (llama-index's evaluators ask an LLM,
which costs seconds per sentence here; that slower check is :mod:`rag.answer.judge`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rag.answer.citations import MARKER, marker_numbers, split_sentences
from rag.answer.policy import COMMON_NUMBERS, NUMBER_WORDS, STOPWORDS, is_name, stem
from rag.types import Sentence, Source

__all__ = ["Evidence", "VerifyConfig", "content_words", "evidence_in", "missing_from", "verify_sentences"]

Embed = Callable[[list[str]], list[list[float]]]

_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")
_TOKEN = re.compile(r"(?<![\w.-])[A-Za-z0-9^][\w\-^{}]*[A-Za-z0-9}]")  # never from inside "2.5-fold"
_NUMBER_WITH_UNIT = re.compile(r"^\d+(?:\.\d+)?(?:x|k|m|b|kb|mb|gb|ms|s|h|d|st|nd|rd|th|fold|bit|d)?$", re.IGNORECASE)
_NUMBER_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+")


@dataclass(frozen=True)
class VerifyConfig:
    """The two similarity rules of the semantic check (cosine of MiniLM sentence vectors).

    Attributes:
        move_margin: a sentence moves to another abstract when that abstract is closer
            to it than every cited one by at least this much.
        min_support: a sentence with nothing literal to check is unsupported when no
            retrieved abstract comes this close to it.
        echo_words: a sentence holding this many of the question's content words that
            none of its cited abstracts holds is unsupported.
    """

    move_margin: float
    min_support: float
    echo_words: int = 4


@dataclass(frozen=True)
class Evidence:
    """What a sentence states that can be looked up literally: numbers and rare terms."""

    numbers: frozenset[str]
    terms: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.numbers or self.terms)

    def items(self) -> list[str]:
        """Every number and term, numbers first, in a stable order."""
        return sorted(self.numbers) + sorted(self.terms)


def _canonical(number: str) -> str:
    number = number.replace(",", "")
    return number.rstrip("0").rstrip(".") if "." in number else number


def evidence_in(text: str) -> Evidence:
    """The numbers and rare terms a sentence states (markers and list numbering ignored)."""
    text = _LIST_ITEM.sub("", MARKER.sub(" ", text))
    text = re.sub(r"(\d)(times|fold)\b", r"\1 \2", text)  # "1.69times" is the number 1.69
    terms = set()
    for token in _TOKEN.findall(text):
        bare = token.strip("^{}-")
        if _NUMBER_WITH_UNIT.match(bare) or len(bare) < 2:
            continue
        inner_capital = any(c.isupper() for c in bare[1:])
        if is_name(bare) or (inner_capital and any(c.isalpha() for c in bare)):
            terms.add(bare)
            text = text.replace(token, " ")  # "GPT-4" is a name, its 4 not a number of its own
    numbers = frozenset(_canonical(n) for n in _NUMBER.findall(text))
    return Evidence(numbers, frozenset(terms))


class _Abstract:
    """One retrieved paper's title and abstract, prepared for lookups."""

    def __init__(self, source: Source) -> None:
        self.source = source
        text = f"{source.title}. {source.abstract or ' '.join(source.passages)}"
        self.lower = text.lower()
        self.squashed = re.sub(r"[\s\-^{}]", "", self.lower)
        self.numbers = {_canonical(n) for n in _NUMBER.findall(text)}
        self.numbers |= {NUMBER_WORDS[w.lower()] for w in _NUMBER_WORD.findall(text)}
        self.initials = _initials(text)
        self.content = content_words(text)
        self.sentences = [source.title, *split_sentences(source.abstract or " ".join(source.passages))]

    def holds(self, item: str, is_number: bool) -> bool:
        if is_number:
            return item in self.numbers
        term = item.lower()
        for variant in (term, term.removesuffix("s")):
            if re.search(r"(?<![a-z0-9])" + re.escape(variant) + r"(?![a-z0-9])", self.lower):
                return True
            if len(variant) >= 4 and re.sub(r"[\-^{}]", "", variant) in self.squashed:
                return True
        # An acronym the abstract spells out: its capitals are the initials of consecutive words
        # ("DNN": deep neural network, "ViT": vision transformer).
        capitals = "".join(c for c in item.removesuffix("s") if c.isupper())
        if item.removesuffix("s").isalpha() and 2 <= len(capitals) <= 6 and capitals.lower() in self.initials:
            return True
        # A compound of words the abstract has ("4-bit-quantized": 4-bit weights, quantized).
        parts = [p for p in term.split("-") if p]
        return len(parts) > 1 and all(self._has_part(p) for p in parts)

    def _has_part(self, part: str) -> bool:
        if part.isdigit():
            return part in self.numbers
        return (
            len(part) < 2 or part[:6] in self.content or bool(re.search(r"(?<![a-z0-9])" + re.escape(part), self.lower))
        )


def _initials(text: str) -> set[str]:
    """Initials of every run of 2-6 consecutive words ("deep neural network" -> "dnn")."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    letters = "".join(w[0].lower() for w in words)
    return {letters[i : i + n] for n in range(2, 7) for i in range(len(letters) - n + 1)}


def verify_sentences(
    text: str,
    sources: Sequence[Source],
    embed: Embed,
    conf: VerifyConfig,
    question: str = "",
) -> list[Sentence]:
    """Check every sentence of ``text`` (markers already resolved) against the retrieved abstracts.

    Args:
        text: the answer with ``[n]`` markers that all name a source.
        sources: the retrieved sources, with their whole abstracts.
        embed: maps texts to unit-length vectors (the store's embedding model).
        conf: the semantic check's thresholds.
        question: the question asked, for the check that a sentence's words come from
            its abstracts rather than from the question.

    Returns:
        One ``Sentence`` per sentence, with its citations after verification and its verdict.
    """
    pieces = [s for line in text.splitlines() for s in split_sentences(line) if re.search(r"[A-Za-z]", _body(s))]
    if not pieces:
        return []
    papers = {s.number: _Abstract(s) for s in sources}
    bodies = [_body(p) for p in pieces]
    similarity = _similarities(bodies, list(papers.values()), embed)
    asked = content_words(question)
    checked = []
    for body, piece, sims in zip(bodies, pieces, similarity):
        sentence = _verdict(body, tuple(n for n in marker_numbers(piece) if n in papers), papers, sims, conf)
        if sentence.verdict != "unsupported" and sentence.citations and not _reports_a_number(body, sentence, papers):
            cited = set().union(*(papers[n].content for n in sentence.citations))
            words = content_words(body)
            echoed = sorted((words & asked) - cited)
            own = (words & cited) - asked  # what the sentence takes from its abstract and not from the question
            if len(echoed) >= conf.echo_words and len(own) < 2:
                sentence = replace(
                    sentence,
                    verdict="unsupported",
                    reason="restates the question: "
                    f"{', '.join(echoed[:5])} are in the question but not in {_refs(sentence.citations)}",
                )
        checked.append(sentence)
    return checked


def missing_from(text: str, source: Source) -> list[str]:
    """The numbers and rare terms ``text`` states that ``source``'s title and abstract lack, numbers first.

    Every number counts, a single digit too: a table cell is short, and its number is its claim.
    """
    paper = _Abstract(source)
    evidence = evidence_in(text)
    return [n for n in sorted(evidence.numbers) if not paper.holds(n, True)] + [
        t for t in sorted(evidence.terms) if not paper.holds(t, False)
    ]


def _weak(number: str) -> bool:
    """A number that says little about which paper it came from: one digit, or a common cut-off."""
    return ("." not in number and len(number) < 2) or number in COMMON_NUMBERS


def _reports_a_number(body: str, sentence: Sentence, papers: dict[int, _Abstract]) -> bool:
    """True when the sentence states a specific number (a decimal, or 10 and over) that its cited abstract holds.

    Such a sentence reports the abstract even when it also repeats the question's words.
    Weak numbers are left out: "3" or "0.05" is in many abstracts by chance.
    """
    specific = [n for n in evidence_in(body).numbers if not _weak(n)]
    return any(papers[c].holds(n, True) for n in specific for c in sentence.citations)


def content_words(text: str) -> set[str]:
    """A text's content words, stemmed and cut to their first six letters ("reduces" ~ "reduced"), common
    words left out: what the checks compare."""
    words = set()
    for word in re.findall(r"[a-z][a-z\-]+", text.lower()):
        for part in word.split("-"):
            if len(part) >= 3 and part not in STOPWORDS:
                words.add(stem(part)[:6])
    return words


def _body(sentence: str) -> str:
    """The sentence without its markers or list numbering, spaces tidied."""
    body = _LIST_ITEM.sub("", MARKER.sub("", sentence))
    body = re.sub(r"\s+([.,;:!?])", r"\1", body)
    return " ".join(body.split())


def _similarities(bodies: list[str], papers: list[_Abstract], embed: Embed) -> list[dict[int, float]]:
    """For each sentence, its best cosine with any sentence (or the title) of each paper."""
    if not papers:
        return [{} for _ in bodies]
    spans, texts = [], []
    for paper in papers:
        spans.append((paper.source.number, len(texts), len(texts) + len(paper.sentences)))
        texts += paper.sentences
    vectors = embed(bodies + texts)
    ours, theirs = vectors[: len(bodies)], vectors[len(bodies) :]
    result = []
    for vec in ours:
        scores = [sum(a * b for a, b in zip(vec, other)) for other in theirs]
        result.append({number: max(scores[lo:hi]) for number, lo, hi in spans})
    return result


def _verdict(
    body: str, written: tuple[int, ...], papers: dict[int, _Abstract], sims: dict[int, float], conf: VerifyConfig
) -> Sentence:
    evidence = evidence_in(body)
    if evidence:
        return _literal(body, written, papers, sims, evidence)
    return _semantic(body, written, sims, conf)


def _literal(
    body: str, written: tuple[int, ...], papers: dict[int, _Abstract], sims: dict[int, float], evidence: Evidence
) -> Sentence:
    items = [(item, item in evidence.numbers) for item in evidence.items()]
    holders = {item: {n for n, paper in papers.items() if paper.holds(item, is_number)} for item, is_number in items}
    missing = [item for item, _ in items if not holders[item] & set(written)]
    telling = [item for item, is_number in items if not is_number or not _weak(item)]
    if not missing:
        # A cited abstract that holds none of what the sentence states does not back it.
        keep = tuple(n for n in written if any(n in holders[item] for item in telling)) if telling else written
        if keep != written:
            idle = _refs([n for n in written if n not in keep])
            return Sentence(
                _with_markers(body, keep),
                keep,
                "corrected",
                f"{idle} holds none of its numbers or names",
                True,
                written,
            )
        return Sentence(_with_markers(body, written), written, "supported", "", True, written)
    common = set.intersection(*(holders[m] for m in missing)) - set(written)
    if not common:
        absent = next((m for m in missing if not holders[m]), missing[0])
        where = "no retrieved abstract" if not holders[absent] else "no single retrieved abstract with the rest"
        return Sentence(
            _with_markers(body, written),
            written,
            "unsupported",
            f"{_say(absent, evidence)} is in {where}",
            True,
            written,
        )
    target = max(common, key=lambda n: sims.get(n, 0.0))
    keep = tuple(n for n in written if any(n in holders[item] for item in telling))
    cited = (*keep, target)
    said = _say(missing[0], evidence)
    reason = (
        f"{said} is not in {_refs(written)}; it is in [{target}]" if written else f"uncited; {said} is in [{target}]"
    )
    return Sentence(_with_markers(body, cited), cited, "corrected", reason, True, written)


def _semantic(body: str, written: tuple[int, ...], sims: dict[int, float], conf: VerifyConfig) -> Sentence:
    if not sims:
        return Sentence(body, (), "unsupported", "no abstract was retrieved", True, written)
    best = max(sims, key=sims.__getitem__)
    if written:
        cited_best = max(sims.get(n, 0.0) for n in written)
        if best not in written and sims[best] >= cited_best + conf.move_margin:
            return Sentence(
                _with_markers(body, (best,)),
                (best,),
                "corrected",
                f"closer in meaning to [{best}] ({sims[best]:.2f}) than to {_refs(written)} ({cited_best:.2f})",
                True,
                written,
            )
        if cited_best >= conf.min_support:
            return Sentence(_with_markers(body, written), written, "supported", "", True, written)
        return Sentence(
            _with_markers(body, written),
            written,
            "unsupported",
            f"close to no retrieved abstract (best {cited_best:.2f})",
            True,
            written,
        )
    if sims[best] >= conf.min_support:
        return Sentence(
            _with_markers(body, (best,)),
            (best,),
            "corrected",
            f"uncited; closest in meaning to [{best}] ({sims[best]:.2f})",
            True,
            written,
        )
    return Sentence(
        body, (), "unsupported", f"uncited and close to no retrieved abstract (best {sims[best]:.2f})", True, written
    )


def _say(item: str, evidence: Evidence) -> str:
    return f"the number {item}" if item in evidence.numbers else f"'{item}'"


def _refs(numbers: Sequence[int]) -> str:
    return "".join(f"[{n}]" for n in numbers)


def _with_markers(body: str, numbers: Sequence[int]) -> str:
    """The sentence with its markers at its end, before the full stop."""
    if not numbers:
        return body
    end = body[-1] if body[-1:] in ".!?" else ""
    return f"{body[: len(body) - len(end)].rstrip()} {_refs(dict.fromkeys(numbers))}{end}"
