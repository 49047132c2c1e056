"""The store: a Chroma collection of embedded chunks, and the BM25 index beside it.

Each chunk is a llama-index ``TextNode`` whose id is ``<paper_id>#<chunk_index>``
and whose metadata carries the paper (``paper_id``, ``title``, ``authors``,
``year``, ``url``) and what ingest needs to stay idempotent (``content_hash``,
``chunk_index``, ``n_chunks``). Only the title is embedded with the text; the
rest is excluded from the embedding and from the prompt.

The BM25 index is rebuilt from Chroma after every ingest that changed something,
persisted under ``<data_dir>/bm25/<collection>``, and loaded once per process. It
is also rebuilt when it is missing or holds another number of chunks than Chroma:
with a Chroma server, other papercite processes (each with its own data directory)
write to the same collection.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import StoreError
from rag.settings import Settings

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever
    from llama_index.vector_stores.chroma import ChromaVectorStore

__all__ = ["CHUNK_METADATA_HIDDEN", "PaperState", "Store", "StoreCheck", "StoreStats"]

# Metadata every chunk carries but neither the embedding nor the LLM should see.
CHUNK_METADATA_HIDDEN = [
    "paper_id",
    "authors",
    "year",
    "url",
    "origin",
    "content_hash",
    "chunk_index",
    "n_chunks",
]
_PAGE = 2000  # rows per Chroma get(); keeps memory flat on large stores
_RECOUNT_SECONDS = 5.0  # how stale bm25()'s view of Chroma's chunk count may be


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


@dataclass(frozen=True)
class StoreCheck:
    """What ``Store.verify`` found: counts, and one line per kind of problem (none when sound).

    Attributes:
        papers: distinct papers among the stored chunks.
        chunks: chunks in Chroma.
        incomplete: ids of papers missing a chunk or holding chunks of two versions.
        origins: the files those papers came from (re-ingesting them completes them).
        problems: one readable line per kind of problem, each with its fix.
    """

    papers: int
    chunks: int
    incomplete: tuple[str, ...]
    origins: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


class Store:
    """One Chroma collection and its BM25 index, for one data directory or Chroma server."""

    def __init__(self, settings: Settings) -> None:
        """Open (or create) the collection named in ``settings.store``.

        Raises:
            StoreError: the directory or server cannot be opened.
        """
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from llama_index.vector_stores.chroma import ChromaVectorStore

        self.settings = settings
        conf = settings.store
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if conf.chroma_host:
                self.location = f"chroma server at {conf.chroma_host}:{conf.chroma_port}"
                client = chromadb.HttpClient(host=conf.chroma_host, port=conf.chroma_port, settings=chroma_settings)
            else:
                path = settings.data_dir / "chroma"
                self.location = str(path)
                path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
            # embedding_function=None: Chroma's default would download a model at run time.
            self.collection: Collection = client.get_or_create_collection(
                conf.collection,
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        except Exception as exc:  # chromadb raises many unrelated types here
            hint = (
                f"start it with `chroma run --path DIR --port {conf.chroma_port}`, or unset PAPERCITE_STORE__CHROMA_HOST"
                if conf.chroma_host
                else "check that the directory is writable, or set PAPERCITE_DATA_DIR elsewhere"
            )
            raise StoreError(f"Cannot open the store at {self.location}: {exc}; {hint}.") from exc
        self.vector_store: ChromaVectorStore = ChromaVectorStore(chroma_collection=self.collection)
        self._bm25: BM25Retriever | None = None
        self._bm25_positions: dict[str, int] = {}  # chunk id -> its place in the BM25 corpus
        self._bm25_stamp: float | None = None
        self._counted_at = -math.inf
        self._bm25_lock = threading.Lock()
        self._rebuild_lock = threading.Lock()  # an ingest and a question may both rebuild

    # -- what is stored -------------------------------------------------------------

    @property
    def bm25_dir(self) -> Path:
        """Where the BM25 index of this collection is persisted."""
        return self.settings.data_dir / "bm25" / self.settings.store.collection

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

    def recorded_embedding_model(self) -> str | None:
        """The embedding model the stored vectors were made with, if any were stored."""
        return (self.collection.metadata or {}).get("embedding_model")

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
            self.collection.modify(metadata={"embedding_model": name})

    def paper_states(self, paper_ids: Iterable[str]) -> dict[str, PaperState]:
        """Look up what is stored of the given papers (absent ones are left out)."""
        ids = list(dict.fromkeys(paper_ids))
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(ids), _PAGE // 4):
            batch = ids[start : start + _PAGE // 4]
            rows = self.collection.get(where={"paper_id": {"$in": batch}}, include=["metadatas"])
            for meta in rows["metadatas"] or []:
                found.setdefault(str(meta["paper_id"]), []).append(dict(meta))
        states = {}
        for pid, metas in found.items():
            hashes = {m.get("content_hash") for m in metas}
            expected = int(metas[0].get("n_chunks") or 0)
            # Two hashes mean a half-finished update: treat it as changed.
            content_hash = hashes.pop() if len(hashes) == 1 else ""
            states[pid] = PaperState(str(content_hash), expected, len(metas))
        return states

    def verify(self, configured_model: str) -> StoreCheck:
        """Check that every paper has all its chunks, every chunk names its paper, the BM25
        index holds exactly Chroma's chunks, and the vectors come from ``configured_model``.

        Reads only; fixes nothing (each problem line says how to fix it).
        """
        by_paper: dict[str, list[dict[str, Any]]] = {}
        stray, offset, chunk_ids = 0, 0, set()
        while (rows := self.collection.get(limit=_PAGE, offset=offset, include=["metadatas"]))["ids"]:
            for chunk_id, meta in zip(rows["ids"], rows["metadatas"] or []):
                chunk_ids.add(chunk_id)
                meta = dict(meta or {})
                if not meta.get("paper_id") or not meta.get("title") or "chunk_index" not in meta:
                    stray += 1
                else:
                    by_paper.setdefault(str(meta["paper_id"]), []).append(meta)
            offset += len(rows["ids"])
        incomplete, origins = [], set()
        for pid, metas in by_paper.items():
            expected = {int(m.get("n_chunks") or 0) for m in metas}
            indices = sorted(int(m["chunk_index"]) for m in metas)
            hashes = {m.get("content_hash") for m in metas}
            if len(expected) != 1 or len(hashes) != 1 or indices != list(range(expected.pop())):
                incomplete.append(pid)
                origins.update(str(m["origin"]).rsplit(":", 1)[0] for m in metas if m.get("origin"))
        problems = []
        if incomplete:
            files = ", ".join(sorted(origins)) or "their source files"
            problems.append(f"{len(incomplete)} paper(s) lack chunks or mix two versions (an ingest was "
                            f"interrupted): run `papercite ingest` again on {files}.")
        if stray:
            problems.append(f"{stray} chunk(s) name no paper, title or chunk number: they were not written by "
                            "papercite; re-ingest into a new PAPERCITE_DATA_DIR.")
        with self._bm25_lock:
            retriever = self._load_bm25()
        indexed = {str(d.get("node_id")) for d in retriever.corpus} if retriever is not None else set()
        if indexed != chunk_ids:
            problems.append(f"The BM25 index holds {len(indexed - chunk_ids)} chunk(s) Chroma lacks and lacks "
                            f"{len(chunk_ids - indexed)} it holds: it is rebuilt by the next question or "
                            "`papercite ingest` (nothing is lost).")
        recorded = self.recorded_embedding_model()
        if chunk_ids and recorded != configured_model:
            problems.append(f"The vectors were made with embedding model {recorded!r} but {configured_model!r} "
                            f"is configured: set PAPERCITE_EMBEDDING__MODEL={recorded} or re-ingest into a new "
                            "PAPERCITE_DATA_DIR.")
        return StoreCheck(len(by_paper), len(chunk_ids), tuple(sorted(incomplete)), tuple(sorted(origins)),
                          tuple(problems))

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
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        offset = 0
        while True:
            rows = self.collection.get(limit=_PAGE, offset=offset, include=["documents", "metadatas"])
            if not rows["ids"]:
                return
            for text, meta in zip(rows["documents"] or [], rows["metadatas"] or []):
                yield metadata_dict_to_node(dict(meta), text=text)  # type: ignore[misc]
            offset += len(rows["ids"])

    def nodes(self, ids: Sequence[str]) -> dict[str, TextNode]:
        """The stored chunks with these ids, by id (ids not stored are left out).

        From a local store they are read from the BM25 index's copy of every chunk, which
        is in memory and rebuilt by every ingest into this data directory; ids it lacks
        (written since it was loaded) are fetched from Chroma. From a Chroma server all
        are fetched: another process may have replaced an abstract without changing its
        chunk ids, and the copy would show the old text.
        """
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        with self._bm25_lock:
            retriever, positions = self._bm25, self._bm25_positions
        if self.settings.store.chroma_host:
            retriever = None
        found = {i: metadata_dict_to_node(dict(retriever.corpus[positions[i]])) for i in ids
                 if retriever is not None and i in positions}
        if missing := [i for i in ids if i not in found]:
            rows = self.collection.get(ids=missing, include=["documents", "metadatas"])
            for chunk_id, text, meta in zip(rows["ids"], rows["documents"] or [], rows["metadatas"] or []):
                found[chunk_id] = metadata_dict_to_node(dict(meta), text=text)  # type: ignore[misc]
        return found

    # -- BM25 -----------------------------------------------------------------------

    def rebuild_bm25(self) -> None:
        """Rebuild the BM25 index from every stored chunk and persist it atomically."""
        from rag.sparse import SparseRetriever

        with self._rebuild_lock:
            nodes = list(self.iter_nodes())
            target = self.bm25_dir
            if not nodes:
                shutil.rmtree(target, ignore_errors=True)
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            retriever = SparseRetriever.from_defaults(nodes=nodes, similarity_top_k=self.settings.retrieval.candidates)
            # Unique names: another process on this data directory may be rebuilding too.
            tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
            retriever.persist(str(tmp), show_progress=False)
            # Swap in the new index so a reader never sees a half-written one.
            old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
            try:
                target.rename(old)
            except FileNotFoundError:
                pass
            try:
                tmp.rename(target)
            except OSError:  # another process swapped in its index, built from the same collection
                shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)

    def bm25(self) -> BM25Retriever | None:
        """The BM25 retriever, loaded once and reloaded after an ingest.

        Rebuilt from the collection first when this data directory has none, or when its
        chunk count differs from Chroma's (an ingest was interrupted before its rebuild, or
        another process sharing the Chroma server added or removed papers). Chroma is
        counted at most every few seconds: a count costs milliseconds on a large store.
        """
        with self._bm25_lock:
            retriever = self._load_bm25()
            if retriever is not None and time.monotonic() - self._counted_at < _RECOUNT_SECONDS:
                return retriever
            chunks = self.collection.count()
            self._counted_at = time.monotonic()
            if chunks and (retriever is None or int(retriever.bm25.scores["num_docs"]) != chunks):
                self.rebuild_bm25()
                retriever = self._load_bm25()
            return retriever

    def _load_bm25(self) -> BM25Retriever | None:
        """The persisted index, read again only when it changed on disk (caller holds the lock)."""
        from rag.sparse import SparseRetriever

        try:
            stamp = self.bm25_dir.stat().st_mtime
        except FileNotFoundError:
            self._bm25, self._bm25_positions, self._bm25_stamp = None, {}, None
            return None
        if self._bm25 is None or stamp != self._bm25_stamp:
            retriever = SparseRetriever.from_persist_dir(str(self.bm25_dir))
            retriever.similarity_top_k = min(self.settings.retrieval.candidates, int(retriever.bm25.scores["num_docs"]))
            positions = {str(d["node_id"]): i for i, d in enumerate(retriever.corpus)}
            self._bm25, self._bm25_positions, self._bm25_stamp = retriever, positions, stamp
        return self._bm25

