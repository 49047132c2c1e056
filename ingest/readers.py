"""Read paper files (saved page, JSON Lines, JSON, CSV/TSV, BibTeX, a Zotero library) into ``Paper`` records.

``read_papers`` is the entry point: it opens the file (through gzip for ``.gz``),
decodes it as UTF-8 and hands the text to the reader for its format. A file that
cannot be used at all raises :class:`rag.errors.BadInput` with a one-line message;
a bad record inside a usable file becomes a :class:`Problem` and the rest still
goes in. Every ``parse_*`` function takes text and a file name, so tests and
callers holding text in memory need no file.

The saved-page, BibTeX and Zotero readers live in :mod:`ingest.page`, :mod:`ingest.bibtex`
and :mod:`ingest.zotero` (and are importable from here too); every reader hands its records to
:class:`ingest.records.Collector`, which turns them into papers and problems.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ingest.bibtex import parse_bibtex
from ingest.page import parse_page
from ingest.papers import Problem, ReadResult
from ingest.records import Collector
from ingest.zotero import read_zotero
from rag.errors import BadInput

__all__ = ["FORMATS", "parse_bibtex", "parse_csv", "parse_json", "parse_jsonl", "parse_page", "read_papers"]

#: The formats ``read_papers`` accepts as ``format=``.
FORMATS = ("page", "jsonl", "json", "csv", "bibtex", "zotero")

_FORMAT_OF_SUFFIX = {
    ".txt": "page", ".text": "page", ".page": "page",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv", ".tsv": "csv",
    ".bib": "bibtex", ".bibtex": "bibtex",
    ".sqlite": "zotero",
}  # fmt: skip
_SUFFIXES = ", ".join(_FORMAT_OF_SUFFIX)


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
    if fmt == "zotero":  # a database, not text
        return read_zotero(path)
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


def parse_jsonl(text: str, name: str) -> ReadResult:
    """Read papers from JSON Lines: one object per line; blank lines are skipped."""
    collector = Collector(name)
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
        raise BadInput(f'{name} holds {got}: expected a JSON array of paper objects or {{"papers": [...]}}.')
    collector = Collector(name)
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
    collector = Collector(name)
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
