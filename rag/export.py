"""An answer with its references, in the forms writing tools read: Markdown, BibTeX, RIS, JSON.

References come from the stored metadata of the cited papers: title, authors, year, URL,
and the DOI or arXiv id a paper was ingested with (its id, ``doi:...``/``arxiv:...``).
BibTeX keys are made from that metadata alone (first author's family name, year, first
word of the title), so the same paper gets the same key in every export; two papers that
would share one get a suffix from their ids. Values are escaped so that bibtexparser and
RIS readers read back what was stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict
from typing import Literal

from rag.errors import BadInput
from rag.types import Answer, Source

__all__ = ["FORMATS", "Format", "bibtex_key", "export"]

Format = Literal["markdown", "bibtex", "ris", "json"]
FORMATS: tuple[str, ...] = ("markdown", "bibtex", "ris", "json")
#: The file name extension of each format, for downloads.
SUFFIX = {"markdown": ".md", "bibtex": ".bib", "ris": ".ris", "json": ".json"}

_BIBTEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_SKIP_WORDS = {"a", "an", "the", "on", "of", "for", "to", "in", "towards", "toward"}


def export(answer: Answer, fmt: str) -> str:
    """``answer`` and its cited papers as ``fmt``: markdown, bibtex, ris or json.

    Raises:
        BadInput: an unknown format.
    """
    if fmt not in FORMATS:
        raise BadInput(f"Unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")
    cited = _cited(answer)
    if fmt == "json":
        return json.dumps(asdict(answer), indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return _markdown(answer, cited)
    if fmt == "bibtex":
        return _bibtex(answer, cited)
    return _ris(answer, cited)


def _cited(answer: Answer) -> list[tuple[int, Source]]:
    by_number = {s.number: s for s in answer.sources}
    return [(c.number, by_number[c.number]) for c in answer.citations if c.number in by_number]


def _identifiers(source: Source) -> tuple[str | None, str | None]:
    """The paper's DOI and arXiv id, when it was ingested with one."""
    kind, _, value = source.paper_id.partition(":")
    return (value if kind == "doi" else None), (value if kind == "arxiv" else None)


def _link(source: Source) -> str | None:
    doi, arxiv = _identifiers(source)
    if doi:
        return f"https://doi.org/{doi}"
    if arxiv:
        return f"https://arxiv.org/abs/{arxiv}"
    return source.url


def _markdown(answer: Answer, cited: list[tuple[int, Source]]) -> str:
    lines = [f"**Question:** {answer.question}", "", answer.text]
    if cited:
        lines += ["", "**References**", ""]
        for number, source in cited:
            parts = [", ".join(source.authors)] if source.authors else []
            parts += [f"({source.year})"] if source.year else []
            parts.append(f"*{source.title}*.")
            if link := _link(source):
                parts.append(f"<{link}>")
            lines.append(f"[{number}] " + " ".join(parts))
    return "\n".join(lines) + "\n"


def _ascii_words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.findall(r"[A-Za-z0-9]+", folded)


def bibtex_key(source: Source) -> str:
    """A BibTeX key from the paper's metadata: family name, year, first title word ("lecun1998gradient")."""
    family = ""
    if source.authors:
        first = source.authors[0]
        name = first.split(",")[0] if "," in first else (first.split() or [""])[-1]
        family = "".join(_ascii_words(name)).lower()
    words = [w for w in ("".join(_ascii_words(part)).lower() for part in source.title.split()) if w]
    word = next((w for w in words if w not in _SKIP_WORDS), words[0] if words else "paper")
    return f"{family or 'anon'}{source.year or 'nd'}{word}"


def _bib_value(text: str) -> str:
    return "".join(_BIBTEX_SPECIAL.get(c, c) for c in " ".join(text.split()))


def _bibtex(answer: Answer, cited: list[tuple[int, Source]]) -> str:
    keys = [bibtex_key(s) for _, s in cited]
    entries = [f"% papercite: {_one_line(answer.question)}"]
    if not cited:
        entries.append("% The collection does not cover this question: no references.")
    for (number, source), key in zip(cited, keys, strict=True):
        if keys.count(key) > 1:  # two papers with one key: each keeps its own suffix, whatever else is exported
            key += hashlib.sha256(source.paper_id.encode()).hexdigest()[:4]
        doi, arxiv = _identifiers(source)
        fields = [("title", "{" + _bib_value(source.title) + "}")]
        if source.authors:
            fields.append(("author", " and ".join(_bib_value(a) for a in source.authors)))
        if source.year:
            fields.append(("year", str(source.year)))
        if doi:
            fields.append(("doi", _bib_value(doi)))
        if arxiv:
            fields += [("eprint", _bib_value(arxiv)), ("archiveprefix", "arXiv")]
        if source.url:
            fields.append(("url", _bib_value(source.url)))
        fields.append(("note", f"Cited as [{number}]"))
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        entries.append(f"@misc{{{key},\n{body}\n}}")
    return "\n\n".join(entries) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _ris(answer: Answer, cited: list[tuple[int, Source]]) -> str:
    records = []
    for number, source in cited:
        doi, _ = _identifiers(source)
        lines = ["TY  - GEN", f"TI  - {_one_line(source.title)}"]
        lines += [f"AU  - {_one_line(a)}" for a in source.authors]
        lines += [f"PY  - {source.year}"] if source.year else []
        lines += [f"DO  - {doi}"] if doi else []
        lines += [f"UR  - {link}"] if (link := source.url or _link(source)) else []
        lines += [f"N1  - Cited as [{number}] in: {_one_line(answer.question)}", "ER  - "]
        records.append("\n".join(lines))
    return "\n\n".join(records) + ("\n" if records else "")
