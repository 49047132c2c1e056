"""A ``zotero.sqlite`` built with Zotero's own schema, for the Zotero reader's tests and the page's upload test.

The tables and columns are those of Zotero's ``resource/schema/userdata.sql`` (schema 107)
and ``system.sql``, trimmed to the tables the reader touches plus the trash and
collections; the type and field ids are Zotero's (``system-107.sql``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["SPARSE", "WAVELETS", "build_zotero_library"]

SCHEMA = """
CREATE TABLE itemTypes (itemTypeID INTEGER PRIMARY KEY, typeName TEXT, templateItemTypeID INT, display INT DEFAULT 1);
CREATE TABLE fields (fieldID INTEGER PRIMARY KEY, fieldName TEXT, fieldFormatID INT);
CREATE TABLE fieldsCombined (
    fieldID INT NOT NULL, fieldName TEXT NOT NULL, label TEXT, fieldFormatID INT, custom INT NOT NULL,
    PRIMARY KEY (fieldID));
CREATE TABLE creatorTypes (creatorTypeID INTEGER PRIMARY KEY, creatorType TEXT);
CREATE TABLE libraries (
    libraryID INTEGER PRIMARY KEY, type TEXT NOT NULL, editable INT NOT NULL, filesEditable INT NOT NULL,
    version INT NOT NULL DEFAULT 0, storageVersion INT NOT NULL DEFAULT 0, lastSync INT NOT NULL DEFAULT 0,
    archived INT NOT NULL DEFAULT 0);
CREATE TABLE items (
    itemID INTEGER PRIMARY KEY, itemTypeID INT NOT NULL,
    dateAdded TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, dateModified TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    clientDateModified TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, libraryID INT NOT NULL, key TEXT NOT NULL,
    version INT NOT NULL DEFAULT 0, synced INT NOT NULL DEFAULT 0, UNIQUE (libraryID, key));
CREATE TABLE itemDataValues (valueID INTEGER PRIMARY KEY, value UNIQUE);
CREATE TABLE itemData (itemID INT, fieldID INT, valueID, PRIMARY KEY (itemID, fieldID));
CREATE TABLE itemNotes (itemID INTEGER PRIMARY KEY, parentItemID INT, note TEXT, title TEXT);
CREATE TABLE itemAttachments (
    itemID INTEGER PRIMARY KEY, parentItemID INT, linkMode INT, contentType TEXT, charsetID INT, path TEXT,
    syncState INT DEFAULT 0, storageModTime INT, storageHash TEXT);
CREATE TABLE creators (
    creatorID INTEGER PRIMARY KEY, firstName TEXT, lastName TEXT, fieldMode INT,
    UNIQUE (lastName, firstName, fieldMode));
CREATE TABLE itemCreators (
    itemID INT NOT NULL, creatorID INT NOT NULL, creatorTypeID INT NOT NULL DEFAULT 1,
    orderIndex INT NOT NULL DEFAULT 0, PRIMARY KEY (itemID, creatorID, creatorTypeID, orderIndex),
    UNIQUE (itemID, orderIndex));
CREATE TABLE collections (
    collectionID INTEGER PRIMARY KEY, collectionName TEXT NOT NULL, parentCollectionID INT DEFAULT NULL,
    clientDateModified TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, libraryID INT NOT NULL, key TEXT NOT NULL,
    version INT NOT NULL DEFAULT 0, synced INT NOT NULL DEFAULT 0, UNIQUE (libraryID, key));
CREATE TABLE collectionItems (
    collectionID INT NOT NULL, itemID INT NOT NULL, orderIndex INT NOT NULL DEFAULT 0,
    PRIMARY KEY (collectionID, itemID));
CREATE TABLE deletedItems (itemID INTEGER PRIMARY KEY, dateDeleted DEFAULT CURRENT_TIMESTAMP NOT NULL);
"""
# Zotero's ids for the types and fields used (system-107.sql).
TYPES = {1: "note", 4: "journalArticle", 14: "attachment", 33: "conferencePaper"}
FIELDS = {1: "url", 14: "date", 22: "extra", 26: "DOI", 90: "abstractNote", 110: "title"}

WAVELETS = "Wavelets Mix Tokens: A Study"
SPARSE = "Sparse Adapters for Speech, Revisited"


def build_zotero_library(path: Path) -> Path:
    """A library with two papers, one item without an abstract, a note, an attachment and one in the trash."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO itemTypes VALUES (?, ?, NULL, 1)", TYPES.items())
    db.executemany("INSERT INTO fields VALUES (?, ?, NULL)", FIELDS.items())
    db.executemany("INSERT INTO fieldsCombined VALUES (?, ?, NULL, NULL, 0)", FIELDS.items())
    db.execute("INSERT INTO creatorTypes VALUES (1, 'author')")
    db.execute("INSERT INTO libraries (libraryID, type, editable, filesEditable) VALUES (1, 'user', 1, 1)")
    items = [
        (1, 4, {"title": WAVELETS, "abstractNote": "We mix image tokens with a 2D wavelet transform.",
                "DOI": "10.1234/WAVE.5", "date": "2021-03-00 March 2021", "url": "https://ex.org/wave"}),
        (2, 33, {"title": SPARSE, "abstractNote": "Pruned adapters keep word error rate within 0.3 points.",
                 "date": "2019"}),
        (3, 4, {"title": "A Paper Without Its Abstract", "date": "2020"}),
        (4, 1, {}),
        (5, 14, {"title": "Full Text PDF"}),
        (6, 4, {"title": "Deleted Paper", "abstractNote": "In the trash."}),
    ]  # fmt: skip
    value_ids: dict[str, int] = {}
    by_name = {name: fid for fid, name in FIELDS.items()}
    for item_id, type_id, values in items:
        db.execute("INSERT INTO items (itemID, itemTypeID, libraryID, key) VALUES (?, ?, 1, ?)",
                   (item_id, type_id, f"KEY{item_id:05d}"))  # fmt: skip
        for name, value in values.items():
            if value not in value_ids:
                value_ids[value] = len(value_ids) + 1
                db.execute("INSERT INTO itemDataValues VALUES (?, ?)", (value_ids[value], value))
            db.execute("INSERT INTO itemData VALUES (?, ?, ?)", (item_id, by_name[name], value_ids[value]))
    db.execute("INSERT INTO itemNotes VALUES (4, 1, '<p>my note</p>', 'my note')")
    db.execute("INSERT INTO itemAttachments (itemID, parentItemID, linkMode, contentType) VALUES (5, 1, 1, 'pdf')")
    db.executemany("INSERT INTO creators VALUES (?, ?, ?, ?)",
                   [(1, "José", "Ñúñez", 0), (2, "Pat", "O'Brien", 0), (3, "", "Speech Lab", 1)])  # fmt: skip
    db.executemany("INSERT INTO itemCreators VALUES (?, ?, 1, ?)", [(1, 2, 1), (1, 1, 0), (2, 3, 0)])
    db.execute("INSERT INTO collections (collectionID, collectionName, libraryID, key) VALUES (1, 'thesis', 1, 'C1')")
    db.execute("INSERT INTO collections (collectionID, collectionName, parentCollectionID, libraryID, key) "
               "VALUES (2, 'Speech & Audio', 1, 1, 'C2')")  # fmt: skip
    db.executemany("INSERT INTO collectionItems VALUES (?, ?, 0)", [(1, 1), (2, 1), (2, 2)])
    db.execute("INSERT INTO deletedItems (itemID) VALUES (6)")
    db.commit()
    db.close()
    return path
