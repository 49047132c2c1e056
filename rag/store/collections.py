"""Named collections in one data directory (or Chroma server): list, delete, rename.

A papercite collection is one Chroma collection and its BM25 index. ``default`` is the
Chroma collection ``papers`` (the one store papercite had before collections), any
other name ``thesis`` is ``papers-thesis``; Chroma collections named otherwise are not
papercite's and are not listed. Asking, serving and evaluating open a collection that
exists (:class:`rag.errors.UnknownCollection` otherwise); only an ingest creates one.
The evals keep theirs in data directories of their own (``<data_dir>/evals/<set>``),
so they never show in this list.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.errors import BadInput, UnknownCollection

if TYPE_CHECKING:
    from rag.settings import Settings

__all__ = [
    "DEFAULT",
    "CollectionInfo",
    "check_name",
    "chroma_name",
    "delete_collection",
    "list_collections",
    "rename_collection",
]

DEFAULT = "default"
_DEFAULT_CHROMA = "papers"
_PREFIX = "papers-"
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


@dataclass(frozen=True)
class CollectionInfo:
    """One collection: its name and how much it holds."""

    name: str
    papers: int
    chunks: int


def check_name(name: str) -> str:
    """``name`` when it can name a collection.

    Raises:
        BadInput: it holds other characters than letters, digits, '.', '_' and '-', is longer
            than 64, or starts or ends with punctuation.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise BadInput(
            f"{name!r} cannot name a collection: use letters, digits, '.', '_' and '-' (up to 64, "
            "starting and ending with a letter or digit), e.g. thesis or project-2024."
        )
    return name


def chroma_name(name: str) -> str:
    """The Chroma collection that holds papercite collection ``name`` (see :func:`check_name`)."""
    return _DEFAULT_CHROMA if check_name(name) == DEFAULT else _PREFIX + name


def _papercite_name(chroma: str) -> str | None:
    """The papercite collection a Chroma collection holds, or None when it is not papercite's."""
    if chroma == _DEFAULT_CHROMA:
        return DEFAULT
    name = chroma.removeprefix(_PREFIX)
    return name if chroma.startswith(_PREFIX) and _NAME.fullmatch(name) and name != DEFAULT else None


def collection_names(settings: Settings) -> list[str]:
    """The names of the collections that exist, ``default`` first (also when it does not exist yet)."""
    from rag.store.chroma import open_client

    client, _ = open_client(settings)
    names = {n for c in client.list_collections() if (n := _papercite_name(c.name)) is not None}
    return [DEFAULT, *sorted(names - {DEFAULT}, key=str.casefold)]


def list_collections(settings: Settings) -> list[CollectionInfo]:
    """Every collection with its papers and chunks, ``default`` first."""
    from rag.store.chroma import Store

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
    from rag.services import reset_services
    from rag.store.chroma import Store

    store = Store(_for(settings, name))
    stats = store.stats()
    with store.writing():
        store.client.delete_collection(store.collection.name)
        shutil.rmtree(store.bm25_dir, ignore_errors=True)
        store.sparse.stale_mark.unlink(missing_ok=True)
    reset_services()  # a store cached in this process must not serve the deleted collection
    return CollectionInfo(name, stats.papers, stats.chunks)


def rename_collection(settings: Settings, old: str, new: str) -> None:
    """Give collection ``old`` the name ``new`` (its papers, vectors and BM25 index move with it).

    Raises:
        UnknownCollection: there is no ``old``.
        BadInput: ``new`` is not a valid name, or a collection of that name exists.
        StoreBusy: an ingest is writing to this data directory.
    """
    from rag.services import reset_services
    from rag.store.chroma import Store

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
    reset_services()


def _exists(settings: Settings, name: str) -> bool:
    from rag.store.chroma import open_client

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


def unknown(settings: Settings, name: str) -> UnknownCollection:
    """The error for a collection ``name`` that does not exist, naming those that do."""
    names = ", ".join(collection_names(settings))
    return UnknownCollection(
        f"No collection named {name!r}: the collections are {names}. Create it with "
        f"`papercite ingest --collection {name} FILE`, or pick one of those."
    )
