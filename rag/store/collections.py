"""Named collections in one data directory (or Chroma server): list, delete, rename.

How a name maps to a Chroma collection is :mod:`rag.store.names`; Chroma collections
that are not papercite's are not listed. Asking, serving and evaluating open a collection that
exists (:class:`rag.errors.UnknownCollection` otherwise); only an ingest creates one.
The evals keep theirs in data directories of their own (``<data_dir>/evals/<set>``),
so they never show in this list.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.errors import BadInput
from rag.store.chroma import Store, collection_names, open_client, unknown
from rag.store.names import DEFAULT, check_name, chroma_name

if TYPE_CHECKING:
    from rag.settings import Settings

__all__ = [
    "DEFAULT",
    "CollectionInfo",
    "check_name",
    "chroma_name",
    "collection_names",
    "delete_collection",
    "list_collections",
    "rename_collection",
]


@dataclass(frozen=True)
class CollectionInfo:
    """One collection: its name and how much it holds."""

    name: str
    papers: int
    chunks: int


def list_collections(settings: Settings) -> list[CollectionInfo]:
    """Every collection with its papers and chunks, ``default`` first."""
    infos = []
    for name in collection_names(settings):
        stats = Store(_for(settings, name)).stats()
        infos.append(CollectionInfo(name, stats.papers, stats.chunks))
    return infos


def delete_collection(settings: Settings, name: str) -> CollectionInfo:
    """Delete collection ``name``, its chunks and its BM25 index; return what it held.

    Raises:
        UnknownCollection: there is none of that name.
        StoreBusy: an ingest is writing to this data directory.
    """
    store = Store(_for(settings, name))
    stats = store.stats()
    with store.writing():
        store.client.delete_collection(store.collection.name)
        shutil.rmtree(store.bm25_dir, ignore_errors=True)
        store.sparse.stale_mark.unlink(missing_ok=True)
    return CollectionInfo(name, stats.papers, stats.chunks)


def rename_collection(settings: Settings, old: str, new: str) -> None:
    """Give collection ``old`` the name ``new`` (its papers, vectors and BM25 index move with it).

    Raises:
        UnknownCollection: there is no ``old``.
        BadInput: ``new`` is not a valid name, or a collection of that name exists.
        StoreBusy: an ingest is writing to this data directory.
    """
    target = chroma_name(new)
    if (
        new == DEFAULT
        and old != DEFAULT
        and _exists(settings, DEFAULT)
        and not Store(_for(settings, DEFAULT)).collection.count()
    ):
        delete_collection(settings, DEFAULT)  # the empty default a command opened: nothing is lost
    if new in collection_names(settings) and (new != DEFAULT or _exists(settings, DEFAULT)):
        raise BadInput(
            f"A collection named {new!r} exists: pick another name, or delete it first "
            f"(`papercite collections delete {new}`)."
        )
    store = Store(_for(settings, old))
    with store.writing():
        bm25_dir = store.bm25_dir
        store.collection.modify(name=target)
        moved = bm25_dir.with_name(target)
        if bm25_dir.exists():
            bm25_dir.rename(moved)
        if store.sparse.stale_mark.exists():
            store.sparse.stale_mark.rename(moved.with_name(f"{target}.stale"))


def _exists(settings: Settings, name: str) -> bool:
    client, _ = open_client(settings)
    return any(c.name == chroma_name(name) for c in client.list_collections())


def _for(settings: Settings, name: str) -> Settings:
    """``settings`` for collection ``name``.

    Raises:
        UnknownCollection: no collection has that name (``default`` always exists).
    """
    if name != DEFAULT and name not in collection_names(settings):
        chroma_name(name)  # an invalid name says so first
        raise unknown(settings, name)
    return settings.updated(store={"collection": name})
