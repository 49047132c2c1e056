"""Reader for BibTeX files such as a Zotero export.

bibtexparser splits the file into blocks; this module decodes the LaTeX in titles,
abstracts and names (``{\\"o}``, ``\\emph{...}``, ``\\&``), maps each entry's fields onto
the record fields the collector reads and turns the blocks bibtexparser could not parse
into problems at their first line.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

import bibtexparser
from bibtexparser import model as bibmodel
from bibtexparser.middlewares.names import parse_single_name_into_parts, split_multiple_persons_names

from ingest.papers import ReadResult
from ingest.records import Collector

__all__ = ["parse_bibtex"]

# LaTeX accents as Zotero writes them ({\"o}, \'{e}, \c{c}) and their combining marks.
_ACCENTS = {
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304", ".": "\u0307",
    "c": "\u0327", "v": "\u030c", "u": "\u0306", "H": "\u030b", "r": "\u030a", "k": "\u0328",
}  # fmt: skip
_SYMBOL_ACCENT = re.compile(r"""\\(['`^"~=.])\s*(?:\{\s*\\?([A-Za-z])\s*\}|\\?([A-Za-z]))""")
_LETTER_ACCENT = re.compile(r"\\([cvuHrk])(?:\s*\{\s*\\?([A-Za-z])\s*\}|\s+([A-Za-z]))")
_SPECIAL = {
    "ss": "ß", "o": "ø", "O": "Ø", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ", "aa": "å", "AA": "Å", "l": "ł", "L": "Ł",
}  # fmt: skip
_SPECIAL_LETTER = re.compile(r"\\(ss|ae|AE|oe|OE|aa|AA|o|O|l|L)(?![A-Za-z])\s*")
_STYLE_COMMAND = re.compile(r"\\(?:emph|text(?:it|bf|rm|tt|sc|sf|sl|up|normal)?|mathrm)\s*(?=\{)")
_ESCAPED = re.compile(r"\\([&%$#_])")


def _detex(value: str) -> str:
    """Turn a BibTeX value into plain text: decode accents and escapes, drop braces and style commands."""
    value = _SYMBOL_ACCENT.sub(lambda m: (m[2] or m[3]) + _ACCENTS[m[1]], value)
    value = _LETTER_ACCENT.sub(lambda m: (m[2] or m[3]) + _ACCENTS[m[1]], value)
    value = _SPECIAL_LETTER.sub(lambda m: _SPECIAL[m[1]], value)
    value = _ESCAPED.sub(r"\1", _STYLE_COMMAND.sub("", value))
    value = value.replace("{", "").replace("}", "")
    return " ".join(unicodedata.normalize("NFC", value).split())


def _bibtex_name(raw: str) -> str:
    """Format one BibTeX name ("Last, First", "von Last, Jr, First") as "First von Last Jr"."""
    try:
        parts = parse_single_name_into_parts(raw, strict=False)
    except Exception:  # noqa: BLE001 - bibtexparser raises plain errors on odd names; keep the name as written
        return _detex(raw)
    return _detex(" ".join(parts.first + parts.von + parts.last + parts.jr))


def parse_bibtex(text: str, name: str) -> ReadResult:
    """Read papers from a BibTeX file such as a Zotero export.

    Uses ``title``, ``abstract``, ``author``, ``year`` (or ``date``), ``url``, ``doi``
    and ``eprint``/``arxivid`` (the former only when ``archiveprefix`` is absent or arXiv).
    Blocks bibtexparser could not parse become problems at their first line.
    """
    with _quiet_bibtexparser():
        library = bibtexparser.parse_string(text)
    collector = Collector(name)
    for block in library.blocks:
        line = (block.start_line or 0) + 1
        if isinstance(block, bibmodel.DuplicateBlockKeyBlock):
            first = (block.previous_block.start_line or 0) + 1
            collector.problem(line, f"duplicate BibTeX key {block.key!r} (first used on line {first})")
        elif isinstance(block, bibmodel.DuplicateFieldKeyBlock):
            collector.problem(line, f"field(s) {', '.join(sorted(block.duplicate_keys))} given twice in one entry")
        elif isinstance(block, bibmodel.ParsingFailedBlock):
            reason = getattr(block.error, "abort_reason", None) or str(block.error)
            collector.problem(line, f"unparseable BibTeX: {' '.join(reason.split())}")
        elif isinstance(block, bibmodel.Entry):
            collector.add(line, _bibtex_fields(block))
    if not (library.entries or library.failed_blocks):
        collector.problem(1, "no BibTeX entries found (expected @article{...} or similar)")
    return collector.result


@contextmanager
def _quiet_bibtexparser() -> Iterator[None]:
    """Silence bibtexparser's parse warnings: they repeat our problems with 0-based line numbers."""
    logger = logging.getLogger("bibtexparser")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _bibtex_fields(entry: bibmodel.Entry) -> dict[str, object]:
    """Map a BibTeX entry onto the record fields the collector reads."""
    raw = {key.lower(): str(field.value) for key, field in entry.fields_dict.items()}
    fields: dict[str, object] = {k: _detex(raw[k]) for k in ("title", "abstract") if k in raw}
    if "author" in raw:
        fields["authors"] = [_bibtex_name(n) for n in split_multiple_persons_names(raw["author"])]
    date_year = re.match(r"\s*(\d{4})", raw.get("date", ""))
    fields["year"] = raw["year"].strip(" {}") if "year" in raw else (date_year and date_year[1])
    fields["url"] = raw.get("url", "").strip(" {}") or None
    fields["doi"] = _ESCAPED.sub(r"\1", raw.get("doi", "")).strip(" {}") or None
    on_arxiv = raw.get("archiveprefix", "arxiv").strip(" {}").lower() == "arxiv"
    eprint = raw.get("arxivid") or (raw.get("eprint") if on_arxiv else None)
    fields["arxiv_id"] = eprint.strip(" {}") if eprint else None
    return fields
