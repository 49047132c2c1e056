"""Read paper files (saved page, JSON Lines, JSON, CSV/TSV, BibTeX) into ``Paper`` records.

``read_papers`` is the entry point: it opens the file (through gzip for ``.gz``),
decodes it as UTF-8 and hands the text to the reader for its format. A file that
cannot be used at all raises :class:`rag.errors.BadInput` with a one-line message;
a bad record inside a usable file becomes a :class:`Problem` and the rest still
goes in. Every ``parse_*`` function takes text and a file name, so tests and
callers holding text in memory need no file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import bibtexparser
from bibtexparser import model as bibmodel
from bibtexparser.middlewares.names import parse_single_name_into_parts, split_multiple_persons_names

from ingest.page import parse_page
from ingest.papers import Paper, Problem, ReadResult, paper_id
from rag.errors import BadInput

__all__ = ["FORMATS", "parse_bibtex", "parse_csv", "parse_json", "parse_jsonl", "parse_page", "read_papers"]

#: The formats ``read_papers`` accepts as ``format=``.
FORMATS = ("page", "jsonl", "json", "csv", "bibtex")

_FORMAT_OF_SUFFIX = {
    ".txt": "page", ".text": "page", ".page": "page",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv", ".tsv": "csv",
    ".bib": "bibtex", ".bibtex": "bibtex",
}  # fmt: skip
_SUFFIXES = ", ".join(_FORMAT_OF_SUFFIX)

_ARXIV_ID = re.compile(r"(?:arxiv:)?\d{4}\.\d{4,5}(?:v\d+)?", re.IGNORECASE)
_DOI_LIKE = re.compile(r"(?:https?://(?:dx\.)?doi\.org/|doi:\s*)?10\.", re.IGNORECASE)
_AUTHOR_SEPARATOR = re.compile(r"\s*;\s*|\s+and\s+")
_YEAR = re.compile(r"\d{1,4}(?:\.0+)?")


def read_papers(path: str | Path, format: str | None = None) -> ReadResult:
    """Read the papers in one file, choosing the reader by extension unless ``format`` is given.

    Args:
        path: the file; a trailing ``.gz`` (``papers.jsonl.gz``) is read through gzip.
        format: one of :data:`FORMATS` (an extension such as ``"tsv"`` or ``"bib"`` also works).

    Returns:
        The good papers and a problem for each skipped record.

    Raises:
        BadInput: the file is missing, a directory, unreadable, not UTF-8 text, of an
            unknown format, or unusable as a whole (say, a CSV without a title column).
    """
    path = Path(path)
    gz = path.suffix.lower() == ".gz"
    inner = path.with_suffix("") if gz else path
    if not path.exists():
        raise BadInput(f"No such file: {path}: expected a paper file ({_SUFFIXES}); check the path.")
    if path.is_dir():
        raise BadInput(f"{path} is a directory: expected one paper file; pass each file inside it instead.")
    fmt = _resolve_format(path, inner, format)
    text = _read_text(path, fmt, gz=gz)
    if not text.strip():
        return ReadResult(problems=[Problem(f"{path.name}:1", "file is empty")])
    if fmt == "csv":
        tsv = inner.suffix.lower() == ".tsv" or (format or "").strip().lower().lstrip(".") == "tsv"
        return parse_csv(text, path.name, delimiter="\t" if tsv else None)
    readers: dict[str, Callable[[str, str], ReadResult]] = {
        "page": parse_page, "jsonl": parse_jsonl, "json": parse_json, "bibtex": parse_bibtex,
    }  # fmt: skip
    return readers[fmt](text, path.name)


def _resolve_format(path: Path, inner: Path, format: str | None) -> str:
    """Return the reader name for ``path``, from ``format`` when given, else from the extension."""
    if format is not None:
        key = format.strip().lower().lstrip(".")
        fmt = key if key in FORMATS else _FORMAT_OF_SUFFIX.get("." + key)
        if fmt is None:
            raise BadInput(f"Unknown format {format!r} for {path}: expected one of {', '.join(FORMATS)}.")
        return fmt
    fmt = _FORMAT_OF_SUFFIX.get(inner.suffix.lower())
    if fmt is None:
        raise BadInput(
            f"Cannot tell the format of {path} from its extension ({inner.suffix or 'none'}): "
            f"expected one of {_SUFFIXES}; pass format='jsonl' (CLI: --format jsonl) or another of "
            f"{', '.join(FORMATS)}."
        )
    return fmt


def _read_text(path: Path, fmt: str, *, gz: bool) -> str:
    """Return the file's text as UTF-8 with ``\\n`` newlines, or raise one clear ``BadInput``.

    ``gz`` says the name ends in ``.gz``; gzip magic bytes are honoured either way,
    so a compressed file saved without the suffix still reads.
    """
    try:
        data = path.read_bytes()
    except PermissionError:
        raise BadInput(f"Cannot read {path}: permission denied; make it readable (chmod +r) or copy it.") from None
    except OSError as err:
        raise BadInput(f"Cannot read {path}: {err.strerror or err}; check the file and try again.") from None
    if gz or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise BadInput(
                f"{path} is not a valid gzip file (truncated or corrupt); re-download or re-compress it."
            ) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BadInput(f"{path} is UTF-16 text: expected UTF-8 {fmt} text; re-save it as UTF-8.")
    if b"\x00" in data:
        raise BadInput(
            f"{path} is a binary file: expected UTF-8 {fmt} text; "
            "pass the exported text file (not a PDF, zip or database)."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise BadInput(
            f"{path} is not UTF-8 (byte 0x{data[err.start]:02x} on line {line}): expected UTF-8 {fmt} text; "
            f"re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _Skip(Exception):
    """A record cannot become a paper; the message is the problem's reason."""


class _Collector:
    """Turns the raw records of one file into papers, problems and duplicate reports."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.result = ReadResult()
        self._first_line: dict[str, int] = {}

    def problem(self, line: int, reason: str) -> None:
        """Record that the record starting at ``line`` was skipped."""
        self.result.problems.append(Problem(f"{self.name}:{line}", reason))

    def add(self, line: int, fields: Mapping[str, object]) -> None:
        """Build a paper from a record's fields; skip it as a problem if it is bad or seen before."""
        try:
            paper = _paper_from(fields, f"{self.name}:{line}")
        except _Skip as err:
            self.problem(line, str(err))
            return
        if paper.id in self._first_line:
            self.problem(line, f"duplicate of line {self._first_line[paper.id]}")
            return
        self._first_line[paper.id] = line
        self.result.papers.append(paper)


def _text_field(fields: Mapping[str, object], key: str) -> str:
    """Return a required text field, whitespace collapsed."""
    value = fields.get(key)
    if value is None:
        raise _Skip(f"no {key} field")
    if not isinstance(value, str):
        raise _Skip(f"{key} must be a string, got {type(value).__name__}")
    collapsed = " ".join(value.split())
    if not collapsed:
        raise _Skip(f"empty {key}")
    return collapsed


def _optional_str(fields: Mapping[str, object], key: str) -> str | None:
    """Return an optional string field stripped, or None when absent or blank."""
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Skip(f"{key} must be a string, got {type(value).__name__}")
    return value.strip() or None


def _authors(value: object) -> tuple[str, ...]:
    """Return author names from a list of strings or one string joined by ';' or ' and '."""
    if value is None:
        return ()
    if isinstance(value, str):
        names: list[object] = _AUTHOR_SEPARATOR.split(value)
    elif isinstance(value, list):
        names = value
    else:
        raise _Skip(f"authors must be a list of strings or a string, got {type(value).__name__}")
    if not all(isinstance(n, str) for n in names):
        raise _Skip("authors must be a list of strings")
    return tuple(c for n in names if (c := " ".join(str(n).split())))


def _year(value: object) -> int | None:
    """Return the year as an int; integral floats and '2020.0' pass, since spreadsheets write them."""
    if isinstance(value, str):
        value = value.strip() or None
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _YEAR.fullmatch(value):
        return int(value.split(".")[0])
    raise _Skip(f"year must be an integer, got {value!r}")


def _paper_from(fields: Mapping[str, object], origin: str) -> Paper:
    """Build a paper from a record's fields (title, abstract, authors, year, url, doi, arxiv_id, id)."""
    title = _text_field(fields, "title")
    abstract = _text_field(fields, "abstract")
    doi = _optional_str(fields, "doi")
    arxiv_id = _optional_str(fields, "arxiv_id")
    # A generic "id" is only trusted when it is recognizably an arXiv id or a DOI;
    # anything else (a row number, a database key) would not match across files.
    other = fields.get("id")
    if isinstance(other, str) and not (doi or arxiv_id):
        other = other.strip()
        if _ARXIV_ID.fullmatch(other):
            arxiv_id = other
        elif _DOI_LIKE.match(other):
            doi = other
    return Paper(
        id=paper_id(title, doi=doi, arxiv_id=arxiv_id),
        title=title,
        abstract=abstract,
        authors=_authors(fields.get("authors")),
        year=_year(fields.get("year")),
        url=_optional_str(fields, "url"),
        origin=origin,
    )


def parse_jsonl(text: str, name: str) -> ReadResult:
    """Read papers from JSON Lines: one object per line; blank lines are skipped."""
    collector = _Collector(name)
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == 1 and line.strip() in ("[", "{"):
                _raise_if_whole_json(text, name)
            collector.problem(number, f"invalid JSON: {err.msg} (column {err.colno})")
            continue
        except RecursionError:
            collector.problem(number, "invalid JSON: nested too deeply")
            continue
        if isinstance(record, dict):
            collector.add(number, record)
        else:
            collector.problem(number, f"expected a JSON object, got {_json_kind(record)}")
    return collector.result


def _raise_if_whole_json(text: str, name: str) -> None:
    """Raise a pointed ``BadInput`` when a file read as JSON Lines is one pretty-printed JSON document."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return
    raise BadInput(f"{name} is one JSON document, not JSON Lines: rename it to .json or pass format='json'.")


def _json_kind(value: object) -> str:
    """Name a decoded JSON value's type the way JSON does."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


_DECODER = json.JSONDecoder()


def _skip_ws(text: str, i: int) -> int:
    """Return the index of the first non-whitespace character (in JSON's sense) at or after ``i``."""
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def parse_json(text: str, name: str) -> ReadResult:
    """Read papers from a JSON array of objects, or an object holding one under ``"papers"``.

    Each record's line is where its object starts, found by walking the (already
    validated) document with ``raw_decode`` because ``json.loads`` keeps no positions.

    Raises:
        BadInput: the file is not valid JSON or has neither top-level shape.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        jsonl = err.msg == "Extra data"  # a second top-level value: likely one object per line
        hint = "; it looks like JSON Lines: rename it to .jsonl or pass format='jsonl'" if jsonl else ""
        raise BadInput(
            f"{name} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}){hint}."
        ) from None
    except RecursionError:
        raise BadInput(f"{name} is nested too deeply to read: expected an array of flat paper objects.") from None
    if isinstance(document, list):
        start = _skip_ws(text, 0)
    elif isinstance(document, dict) and isinstance(document.get("papers"), list):
        start = _papers_value_offset(text)
    else:
        got = f"an object with keys {sorted(document)[:5]}" if isinstance(document, dict) else _json_kind(document)
        raise BadInput(f"{name} holds {got}: expected a JSON array of paper objects or {{\"papers\": [...]}}.")
    collector = _Collector(name)
    line, counted = 1, 0
    for offset, record in _array_items(text, start):
        line += text.count("\n", counted, offset)
        counted = offset
        if isinstance(record, dict):
            collector.add(line, record)
        else:
            collector.problem(line, f"expected a JSON object, got {_json_kind(record)}")
    return collector.result


def _papers_value_offset(text: str) -> int:
    """Return where the top-level ``"papers"`` value starts; the last one wins, as in ``json.loads``."""
    found, i = -1, _skip_ws(text, 0) + 1
    while True:
        i = _skip_ws(text, i)
        if text[i] == "}":
            return found
        key, i = _DECODER.raw_decode(text, i)
        i = _skip_ws(text, _skip_ws(text, i) + 1)  # past the ':'
        if key == "papers":
            found = i
        _, i = _DECODER.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1


def _array_items(text: str, start: int) -> Iterator[tuple[int, object]]:
    """Yield ``(offset, value)`` for each item of the valid JSON array opening at ``start``."""
    i = start + 1
    while True:
        i = _skip_ws(text, i)
        if text[i] == "]":
            return
        offset = i
        value, i = _DECODER.raw_decode(text, i)
        yield offset, value
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1


# Header names (lowercased, spaces and dashes as "_") and the field each one fills.
_CSV_COLUMNS = {
    "title": "title", "abstract": "abstract", "abstract_text": "abstract", "summary": "abstract",
    "authors": "authors", "author": "authors", "year": "year", "url": "url",
    "doi": "doi", "arxiv_id": "arxiv_id", "arxiv": "arxiv_id", "id": "id",
}  # fmt: skip


def parse_csv(text: str, name: str, delimiter: str | None = None) -> ReadResult:
    """Read papers from CSV (or TSV) with a header row naming at least title and abstract columns.

    Args:
        text: the file text.
        name: the file name for origins and problems.
        delimiter: the field separator; by default a tab if the header has tabs and no commas.

    Raises:
        BadInput: the header lacks a title or an abstract column.
    """
    header_line = text.split("\n", 1)[0]
    if delimiter is None:
        delimiter = "\t" if "\t" in header_line and "," not in header_line else ","
    # Abstracts can exceed csv's 128 KiB default; no field can be longer than the file.
    csv.field_size_limit(max(csv.field_size_limit(), min(len(text) + 1, 2**31 - 1)))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise BadInput(f"{name} has no header row: expected a CSV header with 'title' and 'abstract' columns.")
    columns: dict[int, str] = {}
    for index, raw in enumerate(header):
        field = _CSV_COLUMNS.get(re.sub(r"[\s-]+", "_", raw.strip().lower()))
        if field and field not in columns.values():
            columns[index] = field
    missing = [f for f in ("title", "abstract") if f not in columns.values()]
    if missing:
        raise BadInput(
            f"{name} has no {' or '.join(missing)} column (found: {', '.join(map(repr, header))}): "
            "expected a header row with 'title' and 'abstract' columns."
        )
    collector = _Collector(name)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            collector.problem(start, f"unreadable CSV ({err}); the rest of the file was skipped")
            break
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            reason = f"row has {len(row)} fields but the header has {len(header)} (unquoted {delimiter!r}?)"
            collector.problem(start, reason)
            continue
        collector.add(start, {field: (row[i] if i < len(row) else None) for i, field in columns.items()})
    return collector.result


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
    except Exception:  # bibtexparser raises plain errors on odd names; keep the name as written
        return _detex(raw)
    return _detex(" ".join(parts.first + parts.von + parts.last + parts.jr))


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


def parse_bibtex(text: str, name: str) -> ReadResult:
    """Read papers from a BibTeX file such as a Zotero export.

    Uses ``title``, ``abstract``, ``author``, ``year`` (or ``date``), ``url``, ``doi``
    and ``eprint``/``arxivid`` (the former only when ``archiveprefix`` is absent or arXiv).
    Blocks bibtexparser could not parse become problems at their first line.
    """
    with _quiet_bibtexparser():
        library = bibtexparser.parse_string(text)
    collector = _Collector(name)
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


def _bibtex_fields(entry: bibmodel.Entry) -> dict[str, object]:
    """Map a BibTeX entry onto the record fields ``_paper_from`` reads."""
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
