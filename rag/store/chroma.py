"""The store: a Chroma collection of embedded chunks, with the BM25 index beside it.

Each chunk is a llama-index ``TextNode`` whose id is ``<paper_id>#<chunk_index>`` and
whose metadata is a :class:`rag.store.chunks.ChunkRecord`. This module is the Chroma side;
the BM25 side is :class:`rag.store.sparse.BM25Index`; :func:`rag.store.check.check_store`
checks the two against each other.

The BM25 index is also rebuilt when it is missing, marked stale, or holds another
number of chunks than Chroma: with a Chroma server, other papercite processes (each
with its own data directory) write to the same collection.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock, Timeout
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from rag.errors import PaperciteError, StoreBusy, StoreError, UnknownCollection
from rag.settings import Settings
from rag.store.chunks import ChunkRecord
from rag.store.names import DEFAULT, chroma_name, papercite_name
from rag.store.sparse import BM25Index

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from rag.store.sparse import SparseRetriever

__all__ = ["PaperState", "Store", "StoreStats", "collection_names", "open_client", "unknown"]

_PAGE = 2000  # rows per Chroma get(); keeps memory flat on large stores
_RECOUNT_SECONDS = 5.0  # how stale bm25()'s view of Chroma's chunk count may be
# Collection metadata: every chunk carries the fields filters match on (rag.store.chunks.ChunkRecord.filter_metadata),
# and the names of the files its papers came from.
_FILTER_FIELDS, _SOURCES = "papercite_filter_fields", "papercite_sources"
_MASKS = 8  # BM25 masks of recent filters kept per loaded index


def open_client(settings: Settings) -> tuple[ClientAPI, str]:
    """The Chroma client for ``settings`` (a server, or the data directory's own), and where it is.

    Raises:
        StoreError: the directory or server cannot be opened.
    """
    import chromadb  # heavy: about a second to import; only what opens a store pays it
    from chromadb.config import Settings as ChromaSettings  # heavy, as above

    conf = settings.store
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    path = settings.data_dir / "chroma"
    location = f"chroma server at {conf.chroma_host}:{conf.chroma_port}" if conf.chroma_host else str(path)
    try:
        if conf.chroma_host:
            return chromadb.HttpClient(host=conf.chroma_host, port=conf.chroma_port, settings=chroma_settings), location
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings), location
    except Exception as exc:  # chromadb raises many unrelated types here
        raise StoreError(f"Cannot open the store at {location}: {exc}; {_hint(settings)}.") from exc


def _hint(settings: Settings) -> str:
    conf = settings.store
    if conf.chroma_host:
        return f"start it with `chroma run --path DIR --port {conf.chroma_port}`, or unset PAPERCITE_STORE__CHROMA_HOST"
    return "check that the directory is writable, or set PAPERCITE_DATA_DIR elsewhere"


def collection_names(settings: Settings) -> list[str]:
    """The names of the collections that exist, ``default`` first (also when it does not exist yet)."""
    client, _ = open_client(settings)
    names = {n for c in client.list_collections() if (n := papercite_name(c.name)) is not None}
    return [DEFAULT, *sorted(names - {DEFAULT}, key=str.casefold)]


def unknown(settings: Settings, name: str) -> UnknownCollection:
    """The error for a collection ``name`` that does not exist, naming those that do."""
    names = ", ".join(collection_names(settings))
    return UnknownCollection(
        f"No collection named {name!r}: the collections are {names}. Create it with "
        f"`papercite ingest --collection {name} FILE`, or pick one of those."
    )


@dataclass(frozen=True)
class StoreStats:
    """How much the store holds, and which embedding model made it."""

    papers: int
    chunks: int
    embedding_model: str | None
    location: str


@dataclass(frozen=True)
class PaperState:
    """What the store holds of one paper: enough to tell unchanged from changed or partial."""

    content_hash: str
    chunks_expected: int
    chunks_found: int

    @property
    def complete(self) -> bool:
        """True when every chunk the paper was split into is present."""
        return self.chunks_found == self.chunks_expected


class Store:
    """One Chroma collection and its BM25 index, for one data directory or Chroma server."""

    def __init__(self, settings: Settings, *, create: bool = False) -> None:
        """Open the collection named in ``settings.store`` (``default`` is created when missing).

        Args:
            settings: the data directory or Chroma server, and the collection.
            create: create the collection when it does not exist (what an ingest does).

        Raises:
            UnknownCollection: no collection has that name, and ``create`` is false.
            BadInput: the name cannot name a collection.
            StoreError: the directory or server cannot be opened.
        """
        from llama_index.vector_stores.chroma import ChromaVectorStore  # heavy: imports chromadb

        self.settings = settings
        self.name = settings.store.collection
        chroma = chroma_name(self.name)
        self.client, self.location = open_client(settings)
        try:
            exists = any(c.name == chroma for c in self.client.list_collections())
            if not exists and not create and self.name != DEFAULT:
                raise unknown(settings, self.name)
            # embedding_function=None: Chroma's default would download a model at run time.
            self.collection: Collection = self.client.get_or_create_collection(
                chroma, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
        except PaperciteError:
            raise
        except Exception as exc:  # chromadb raises many unrelated types here
            raise StoreError(f"Cannot open the store at {self.location}: {exc}; {_hint(settings)}.") from exc
        self.vector_store: ChromaVectorStore = ChromaVectorStore(chroma_collection=self.collection)
        self.sparse = BM25Index(settings.data_dir / "bm25" / chroma, fetch=self.nodes)
        self._counted_at = -math.inf
        self._count_lock = threading.Lock()

    # -- what is stored -------------------------------------------------------------

    @property
    def ingest_lock(self) -> Path:
        """The file an ingest into this data directory holds locked while it writes."""
        return self.settings.data_dir / "ingest.lock"

    def ingest_running(self) -> bool:
        """True when an ingest (in this process or another) holds :attr:`ingest_lock`."""
        if not self.ingest_lock.exists():
            return False
        try:
            with FileLock(self.ingest_lock, timeout=0):
                return False
        except Timeout:
            return True

    @property
    def bm25_dir(self) -> Path:
        """Where the BM25 index of this collection is persisted."""
        return self.sparse.path

    def stats(self) -> StoreStats:
        """Count papers and chunks, and report the embedding model recorded at ingest."""
        chunks = self.collection.count()
        papers = len(self.collection.get(where={"chunk_index": 0}, include=[])["ids"]) if chunks else 0
        return StoreStats(papers, chunks, self.recorded_embedding_model(), self.location)

    def contains_text(self, term: str) -> bool:
        """True when some stored chunk contains ``term`` (as written, lower-cased or capitalised)."""
        variants = dict.fromkeys((term, term.lower(), term.capitalize(), term.upper()))
        return any(self.collection.get(where_document={"$contains": v}, limit=1, include=[])["ids"] for v in variants)

    def titles(self, limit: int = 200) -> list[str]:
        """Titles of up to ``limit`` stored papers, in storage order."""
        rows = self.collection.get(where={"chunk_index": 0}, include=["metadatas"], limit=limit)
        return [str(m.get("title", "")) for m in rows["metadatas"] or [] if m.get("title")]

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata as stored now (another ``Store`` or process may have written it since
        this one opened the collection)."""
        fresh = self.client.get_collection(self.collection.name, embedding_function=None)  # type: ignore[arg-type]
        return dict(fresh.metadata or {})

    def recorded_embedding_model(self) -> str | None:
        """The embedding model the stored vectors were made with, if any were stored."""
        return self.metadata().get("embedding_model")

    def check_embedding_model(self, configured: str) -> None:
        """Refuse to mix vectors of two models in one collection.

        Raises:
            StoreError: the store was built with another embedding model.
        """
        recorded = self.recorded_embedding_model()
        if recorded and recorded != configured and self.collection.count():
            raise StoreError(
                f"The store at {self.location} was built with embedding model {recorded!r}, "
                f"but {configured!r} is configured: set PAPERCITE_EMBEDDING__MODEL={recorded} "
                "or re-ingest into a new PAPERCITE_DATA_DIR."
            )

    def record_embedding_model(self, name: str) -> None:
        """Write the embedding model's name into the collection's metadata."""
        if self.recorded_embedding_model() != name:
            self._set_metadata(embedding_model=name)

    def _set_metadata(self, **values: Any) -> None:
        """Set keys of the collection's metadata, keeping the others (Chroma's ``modify`` replaces it whole)."""
        self.collection.modify(metadata={**self.metadata(), **values})

    # -- filters --------------------------------------------------------------------

    def sources(self) -> list[str]:
        """The names of the files the collection's papers were read from, as ``--source`` takes them."""
        return sorted(json.loads(self.metadata().get(_SOURCES) or "[]"), key=str.casefold)

    def add_sources(self, names: Iterable[str]) -> None:
        """Record more file names among :meth:`sources`."""
        known = set(self.sources())
        if not known.issuperset(names):
            self._set_metadata(**{_SOURCES: json.dumps(sorted(known.union(names)))})

    def ensure_filter_fields(self, *, locked: bool = False) -> None:
        """Give every chunk the fields filters match on, once per collection.

        Chunks written before filters existed lack them: they are added in place (a
        metadata update, nothing is embedded again), page by page, under the ingest lock
        (``locked``: the caller holds it already).

        Raises:
            StoreBusy: an ingest is writing to this data directory.
        """
        if self.metadata().get(_FILTER_FIELDS):
            return
        with nullcontext() if locked else self.writing():
            sources: set[str] = set()
            for rows in self.pages(("metadatas",)):
                ids, fields = [], []
                for chunk_id, meta in zip(rows["ids"], rows["metadatas"] or []):
                    if (record := ChunkRecord.read(meta)) is not None:
                        ids.append(chunk_id)
                        fields.append(record.filter_metadata())
                        sources.add(fields[-1]["source"])
                if ids:
                    self.collection.update(ids=ids, metadatas=fields)  # type: ignore[arg-type]
            self.add_sources(sources - {""})
            self._set_metadata(**{_FILTER_FIELDS: 1})

    def passing(self, retriever: SparseRetriever, where: dict[str, Any]) -> np.ndarray:
        """Which of ``retriever``'s chunks pass ``where`` (the same filter dense retrieval applies), as its mask."""
        key = json.dumps(where, sort_keys=True)
        mask = retriever.masks.get(key)  # kept with the index it indexes: a rebuilt index starts afresh
        if mask is None:
            ids = self.collection.get(where=where, include=[])["ids"]  # one read, ids only
            mask = retriever.mask(np.array(ids, dtype=bytes))
            if len(retriever.masks) >= _MASKS:
                retriever.masks.pop(next(iter(retriever.masks)))
            retriever.masks[key] = mask
        return mask

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the data directory's ingest lock, or refuse at once when another ingest holds it.

        Two ingests interleaving deletes and writes of the same papers could leave either
        one's chunks half replaced; refusing is clearer than an unexplained wait.

        Raises:
            StoreBusy: another process (or thread) holds it.
        """
        self.ingest_lock.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.ingest_lock, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise StoreBusy(
                f"Another ingest is writing to the store at {self.location}: wait for it to finish, "
                "then run this again (nothing was written)."
            ) from None
        try:
            yield
        finally:
            lock.release()

    def paper_states(self, paper_ids: Iterable[str]) -> dict[str, PaperState]:
        """Look up what is stored of the given papers (absent ones are left out)."""
        ids = list(dict.fromkeys(paper_ids))
        found: dict[str, list[ChunkRecord]] = {}
        for start in range(0, len(ids), _PAGE // 4):
            rows = self.collection.get(
                where={"paper_id": {"$in": ids[start : start + _PAGE // 4]}}, include=["metadatas"]
            )
            for meta in rows["metadatas"] or []:
                if (record := ChunkRecord.read(meta)) is not None:
                    found.setdefault(record.paper_id, []).append(record)
        states = {}
        for pid, records in found.items():
            hashes = {r.content_hash for r in records}
            # Two hashes mean a half-finished update: treat it as changed.
            content_hash = hashes.pop() if len(hashes) == 1 else ""
            states[pid] = PaperState(content_hash, records[0].n_chunks, len(records))
        return states

    def pages(self, include: Sequence[str] = ("metadatas",)) -> Iterator[dict[str, Any]]:
        """Every stored chunk, ``_PAGE`` rows at a time (Chroma ``get`` results), so memory stays flat.

        The ids are listed first, in one read (about 40 MB at a million chunks), then read by id a
        page at a time, each page in the order listed. Chroma finds rows by id through its index;
        paging by ``offset`` re-read every row before the offset, so a page cost more the further
        in it started and a BM25 build at 1M chunks took 26 minutes. A chunk deleted meanwhile is
        left out; one added meanwhile is not read.
        """
        ids = self.collection.get(include=[])["ids"]
        for start in range(0, len(ids), _PAGE):
            wanted = ids[start : start + _PAGE]
            rows = self.collection.get(ids=wanted, include=list(include))  # type: ignore[arg-type]
            if rows["ids"]:
                yield _in_order(dict(rows), wanted)

    def delete_papers(self, paper_ids: Iterable[str]) -> None:
        """Remove every chunk of the given papers."""
        ids = list(paper_ids)
        for start in range(0, len(ids), _PAGE // 4):
            self.collection.delete(where={"paper_id": {"$in": ids[start : start + _PAGE // 4]}})

    def add_nodes(self, nodes: list[TextNode]) -> None:
        """Write embedded chunks through llama-index's Chroma vector store."""
        if nodes:
            self.vector_store.add(nodes)

    def iter_nodes(self) -> Iterator[TextNode]:
        """Every stored chunk as a ``TextNode`` (text and metadata, no vector), page by page."""
        for rows in self.pages(("documents", "metadatas")):
            for text, meta in zip(rows["documents"] or [], rows["metadatas"] or []):
                yield metadata_dict_to_node(dict(meta), text=text)  # type: ignore[misc]

    def nodes(self, ids: Sequence[str]) -> dict[str, TextNode]:
        """The stored chunks with these ids, by id, read from Chroma (ids not stored are left out)."""
        found = {}
        ids = list(ids)
        for start in range(0, len(ids), _PAGE):  # one get() of many ids exceeds SQLite's limit on variables
            rows = self.collection.get(ids=ids[start : start + _PAGE], include=["documents", "metadatas"])
            for chunk_id, text, meta in zip(rows["ids"], rows["documents"] or [], rows["metadatas"] or []):
                found[chunk_id] = metadata_dict_to_node(dict(meta), text=text)  # type: ignore[misc]
        return found

    # -- BM25 -----------------------------------------------------------------------

    def chunk_pages(self) -> Iterator[dict[str, Any]]:
        """Every stored chunk's id, text and metadata, a page at a time: what the BM25 index is built from."""
        return self.pages(("documents", "metadatas"))

    def rebuild_bm25(self) -> None:
        """Rebuild the BM25 index from every stored chunk, page by page, and persist it atomically."""
        self.sparse.rebuild(self.chunk_pages())

    def bm25(self) -> SparseRetriever | None:
        """The BM25 retriever, loaded once and reloaded after an ingest.

        Rebuilt from the collection first when this data directory has none, when an
        ingest was interrupted before its rebuild, or when its chunk count differs from
        Chroma's (another process sharing the Chroma server added or removed papers).
        Chroma is counted at most every few seconds: a count costs milliseconds on a
        large store.
        """
        with self._count_lock:
            retriever = self.sparse.load()
            if (
                retriever is not None
                and not self.sparse.stale
                and time.monotonic() - self._counted_at < _RECOUNT_SECONDS
            ):
                return retriever
            chunks = self.collection.count()
            self._counted_at = time.monotonic()
            # A rebuild while an ingest still writes must not clear its stale mark.
            return self.sparse.current(chunks, self.chunk_pages, clear_mark=not self.ingest_running())


def _in_order(rows: dict[str, Any], ids: Sequence[str]) -> dict[str, Any]:
    """Chroma ``get`` results re-ordered to follow ``ids`` (ids it did not return are left out)."""
    at = {chunk_id: i for i, chunk_id in enumerate(rows["ids"])}
    order = [at[i] for i in ids if i in at]
    if order == list(range(len(rows["ids"]))):
        return rows
    columns = ("ids", "documents", "metadatas", "embeddings", "uris", "data")
    return {k: [v[i] for i in order] if k in columns and v is not None else v for k, v in rows.items()}
