"""Read a Zotero library (``zotero.sqlite``) directly, read-only: no export by hand.

Zotero keeps every item's fields in an entity-attribute-value layout: ``items``,
``itemData`` (item, field, value id), ``itemDataValues`` and the field names in
``fieldsCombined`` (``fields`` before Zotero 5.0.77); creators in ``creators`` and
``itemCreators``. Notes, attachments, annotations and items in the trash are not papers.
Each item becomes the same record the BibTeX reader makes of Zotero's own export (title,
abstract, authors in reading order, year, URL, DOI), so a paper read from both is one paper.

Zotero's collections (``collections``, ``collectionItems``) are read on request by
:func:`zotero_collections`, for ``papercite ingest --zotero-collections``.

Zotero holds an exclusive lock on its database while it runs. The file is opened
read-only; when it is locked, it is read as ``immutable`` (SQLite then takes no lock
and trusts nothing changes underneath), which is safe while Zotero only sits open.
Nothing is ever written to it.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import defaultdict
from contextlib import closing
from pathlib import Path

from ingest.papers import ReadResult
from ingest.records import Collector
from rag.errors import BadInput

__all__ = ["collection_name", "find_zotero_library", "read_zotero", "zotero_collections"]

_NOT_PAPERS = ("note", "attachment", "annotation")
_WANTED = ("title", "abstractNote", "date", "DOI", "url")
_YEAR = re.compile(r"\b(\d{4})\b")


def find_zotero_library(path: str | Path) -> Path:
    """``path`` itself, or the ``zotero.sqlite`` inside it when it is Zotero's data directory.

    Raises:
        BadInput: neither exists.
    """
    path = Path(path).expanduser()
    candidate = path / "zotero.sqlite" if path.is_dir() else path
    if not candidate.is_file():
        raise BadInput(
            f"No Zotero library at {path}: give zotero.sqlite or the Zotero data directory holding it "
            "(Zotero: Settings > Advanced > Files and Folders > Data Directory Location)."
        )
    return candidate


def read_zotero(path: str | Path) -> ReadResult:
    """Every regular item of the Zotero library at ``path`` with a title and an abstract.

    Items without an abstract are skipped, each as a problem (``zotero.sqlite:ITEMID: no
    abstract field``), so the ingest report counts them.

    Raises:
        BadInput: the file is not a Zotero library, or it cannot be read even immutable.
    """
    path = find_zotero_library(path)
    try:
        with path.open("rb") as f:
            header = f.read(16)
    except OSError as exc:
        raise BadInput(
            f"Cannot read {path}: {exc.strerror or exc}; make it readable, or copy it and give the copy."
        ) from None
    if header != b"SQLite format 3\x00":
        raise BadInput(
            f"{path} is not a Zotero library (not an SQLite database): give the zotero.sqlite from your "
            "Zotero data directory."
        )
    try:
        with closing(_connect(path)) as db:
            fields, creators = _items(db), _creators(db)
    except sqlite3.DatabaseError as exc:
        raise BadInput(
            f"{path} is not a Zotero library ({exc}): give the zotero.sqlite from your Zotero data directory."
        ) from None
    collector = Collector(path.name)
    for item_id, values in fields.items():
        record: dict[str, object] = {
            "title": values.get("title"),
            "abstract": values.get("abstractNote"),
            "authors": creators.get(item_id, []),
            "year": (m[1] if (m := _YEAR.search(values.get("date", ""))) else None),
            "url": values.get("url"),
            "doi": values.get("DOI"),
        }
        collector.add(item_id, {key: value for key, value in record.items() if value is not None})
    return collector.result


def zotero_collections(path: str | Path) -> dict[str, set[str]]:
    """Each collection of the library (trashed ones left out): its name and its items' origins,
    as the papers :func:`read_zotero` makes carry them (``zotero.sqlite:ITEMID``).

    A subcollection is a collection of its own, named "Parent - Child".

    Raises:
        BadInput: as :func:`read_zotero`.
    """
    path = find_zotero_library(path)
    read_zotero(path)  # the same checks and messages for a file that is not a library
    with closing(_connect(path)) as db:
        if not _has(db, "collections") or not _has(db, "collectionItems"):
            return {}
        trash = "WHERE collectionID NOT IN (SELECT collectionID FROM deletedCollections)"
        rows = db.execute(
            "SELECT collectionID, collectionName, parentCollectionID FROM collections "
            + (trash if _has(db, "deletedCollections") else "")
        ).fetchall()
        names = {cid: (name, parent) for cid, name, parent in rows}

        def full(cid: int, seen: tuple[int, ...] = ()) -> str:
            name, parent = names[cid]
            return f"{full(parent, (*seen, cid))} - {name}" if parent in names and parent not in seen else name

        items: dict[str, set[str]] = defaultdict(set)
        for cid, item_id in db.execute("SELECT collectionID, itemID FROM collectionItems"):
            if cid in names:
                items[full(cid)].add(f"{path.name}:{item_id}")
    return dict(items)


def collection_name(zotero_name: str) -> str:
    """The papercite collection a Zotero collection maps to: accents dropped, other characters as '-'.

    "Thèse / Chapter 2" becomes "These-Chapter-2".
    """
    plain = unicodedata.normalize("NFKD", zotero_name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9._]+", "-", plain)
    name = re.sub(r"\.{2,}", ".", name).strip("-._")[:64].strip("-._")
    return name or "zotero"


def _connect(path: Path) -> sqlite3.Connection:
    """The library opened read-only, and checked to be Zotero's; immutable when Zotero holds its lock."""
    try:
        return _open(path, "mode=ro")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return _open(path, "mode=ro&immutable=1")  # Zotero is running: read it without taking a lock


def _open(path: Path, query: str) -> sqlite3.Connection:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = sorted({"items", "itemData", "itemDataValues", "creators", "itemCreators", "itemTypes"} - tables)
        missing += ["fieldsCombined"] if tables.isdisjoint({"fields", "fieldsCombined"}) else []
        if missing:
            raise sqlite3.DatabaseError(f"it has no {', '.join(missing)} table{'s' if len(missing) > 1 else ''}")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _items(db: sqlite3.Connection) -> dict[int, dict[str, str]]:
    """Each regular item's wanted fields by name, in item order."""
    names = "fieldsCombined" if _has(db, "fieldsCombined") else "fields"
    trash = "AND i.itemID NOT IN (SELECT itemID FROM deletedItems)" if _has(db, "deletedItems") else ""
    rows = db.execute(
        f"""SELECT i.itemID, f.fieldName, v.value
            FROM items i
            JOIN itemTypes t ON t.itemTypeID = i.itemTypeID
            JOIN itemData d ON d.itemID = i.itemID
            JOIN {names} f ON f.fieldID = d.fieldID
            JOIN itemDataValues v ON v.valueID = d.valueID
            WHERE t.typeName NOT IN ({", ".join("?" * len(_NOT_PAPERS))})
              AND f.fieldName IN ({", ".join("?" * len(_WANTED))}) {trash}
            ORDER BY i.itemID""",  # the table names come from this module; values are bound
        (*_NOT_PAPERS, *_WANTED),
    )
    items: dict[int, dict[str, str]] = defaultdict(dict)
    for item_id, name, value in rows:
        items[item_id][name] = str(value)
    return items


def _creators(db: sqlite3.Connection) -> dict[int, list[str]]:
    """Each item's creators in Zotero's order, "First Last" (one-field names as they are)."""
    rows = db.execute(
        """SELECT ic.itemID, c.firstName, c.lastName, c.fieldMode
           FROM itemCreators ic JOIN creators c ON c.creatorID = ic.creatorID
           ORDER BY ic.itemID, ic.orderIndex"""
    )
    creators: dict[int, list[str]] = defaultdict(list)
    for item_id, first, last, mode in rows:
        name = last if mode == 1 else " ".join(p for p in (first, last) if p)
        if name:
            creators[item_id].append(name)
    return creators


def _has(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None
