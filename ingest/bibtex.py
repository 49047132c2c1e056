"""Reader for BibTeX files such as a Zotero export.

bibtexparser splits the file into blocks and its ``LatexDecodingMiddleware`` turns the
LaTeX in titles, abstracts and names (``{\\"o}``, ``\\emph{...}``, ``\\&``) into text;
this module maps each entry's fields onto the record fields the collector reads and
turns the blocks bibtexparser could not parse into problems at their first line.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

import bibtexparser
from bibtexparser import model as bibmodel
from bibtexparser.library import Library
from bibtexparser.middlewares import LatexDecodingMiddleware
from bibtexparser.middlewares.names import parse_single_name_into_parts, split_multiple_persons_names

from ingest.papers import ReadResult
from ingest.records import Collector

__all__ = ["parse_bibtex"]

_LATEX = LatexDecodingMiddleware()
_BARE = re.compile(r"(?<!\\)[%&]")
# The DOI is an identifier, not LaTeX prose, so it skips the decoder (which reads "%" as a
# comment and "--" as a dash); only the escapes BibTeX writers put in it (10.1000/a\_b) are undone.
_DOI_ESCAPE = re.compile(r"\\([&%$#_])")


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
            collector.add(line, _bibtex_fields(block, library))
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


def _bibtex_fields(entry: bibmodel.Entry, library: Library) -> dict[str, object]:
    """Map a BibTeX entry onto the record fields the collector reads."""
    raw = {key.lower(): str(field.value) for key, field in entry.fields_dict.items()}
    prose = {key: raw[key] for key in ("title", "abstract") if key in raw}
    names = [_name_in_reading_order(n) for n in split_multiple_persons_names(raw["author"])] if "author" in raw else []
    decoded = _decode_latex(prose | {f"author {i}": n for i, n in enumerate(names)}, library)
    fields: dict[str, object] = {key: decoded[key] for key in prose}
    if "author" in raw:
        fields["authors"] = [decoded[f"author {i}"] for i in range(len(names))]
    date_year = re.match(r"\s*(\d{4})", raw.get("date", ""))
    fields["year"] = raw["year"].strip(" {}") if "year" in raw else (date_year and date_year[1])
    fields["url"] = raw.get("url", "").strip(" {}") or None
    fields["doi"] = _DOI_ESCAPE.sub(r"\1", raw.get("doi", "")).strip(" {}") or None
    on_arxiv = raw.get("archiveprefix", "arxiv").strip(" {}").lower() == "arxiv"
    eprint = raw.get("arxivid") or (raw.get("eprint") if on_arxiv else None)
    fields["arxiv_id"] = eprint.strip(" {}") if eprint else None
    return fields


def _name_in_reading_order(raw: str) -> str:
    """Reorder one BibTeX name ("Last, First", "von Last, Jr, First") as "First von Last Jr", LaTeX still in it."""
    try:
        parts = parse_single_name_into_parts(raw, strict=False)
    except Exception:  # noqa: BLE001 - bibtexparser raises plain errors on odd names; keep the name as written
        return raw
    return " ".join(parts.first + parts.von + parts.last + parts.jr)


def _decode_latex(values: dict[str, str], library: Library) -> dict[str, str]:
    """Decode the LaTeX in each value with bibtexparser's middleware, then NFC it and collapse whitespace.

    The middleware decodes every field of the entry it is given, so it gets a scratch entry
    holding only these values: url, doi and eprint stay as written, and names are decoded
    after they are split, so a braced "{Barnes and Noble}" stays one name.
    """
    # Hand-written .bib files often hold a bare "5%" or "R&D": LaTeX reads % as a comment
    # (the rest of the line would be lost) and & as a table column, so both are escaped first.
    escaped = {key: _BARE.sub(r"\\\g<0>", value) for key, value in values.items()}
    scratch = bibmodel.Entry("misc", "decoded", [bibmodel.Field(key, value) for key, value in escaped.items()])
    block = _LATEX.transform_block(scratch, library)
    # A value pylatexenc cannot parse (thousands of nested braces) comes back as written,
    # inside an error block that still holds the entry with the other values decoded.
    decoded = block.ignore_error_block if isinstance(block, bibmodel.MiddlewareErrorBlock) else block
    return {field.key: " ".join(unicodedata.normalize("NFC", str(field.value)).split()) for field in decoded.fields}
