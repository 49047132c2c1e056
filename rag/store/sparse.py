"""The BM25 side of the store: an index built from Chroma page by page, and its retriever.

:class:`BM25Index` keeps the index of one collection under
``<data_dir>/bm25/<collection>``: rebuilt from Chroma after every ingest that changed
something, swapped in atomically, loaded once per process and again when it changes
on disk. An ingest marks it stale before it writes to Chroma and the rebuild clears
the mark, so an ingest killed in between leaves a mark that the next question or
ingest acts on (rebuild) and ``papercite check`` reports, even when the kill left
Chroma's chunk count unchanged (a replaced abstract keeps its chunk ids).

Why not llama-index's ``BM25Retriever``: it holds every node. Its build takes a list
of all nodes, then all their texts and token lists at once, and it keeps every
node's text and metadata for as long as it serves (17.6 GB at 1M chunks). Here the
index is bm25s's score matrix built in two steps (:class:`_Builder`): each page of
chunks is tokenized as it is read, keeping only each chunk's distinct token ids and
counts; then the scores are computed and placed into bm25s's CSC arrays page by
page. The tokenizer, the parameters and the arithmetic are bm25s's own, so the
scores are the ones ``BM25Retriever`` computes, bit for bit. The retriever keeps the
chunk ids only and reads its hits' text and metadata from Chroma, as the dense
retriever does.

:class:`SparseRetriever` ranks only chunks that score above 0: bm25s picks the top k
with ``np.argpartition`` over every chunk's score, and NumPy's selection degrades
badly when most values are equal. A question's terms touch a small part of a large
store and every other chunk scores exactly 0: at 1M chunks the selection took
160-210 ms, against about 2 ms among the non-zero scores alone. Chunks that share no
term with the question are not hits anyway (the hybrid retriever drops them). A
filter narrows the candidates the same way, before the top k is chosen
(:meth:`SparseRetriever.only`), so a filtered question still gets k hits that pass it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer
from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from rag.store.chunks import ChunkRecord

__all__ = ["BM25Index", "Fetch", "SparseRetriever", "build_bm25"]

#: Reads stored chunks by id (ids not stored are left out), e.g. :meth:`rag.store.chroma.Store.nodes`.
Fetch = Callable[[Sequence[str]], Mapping[str, BaseNode]]

# llama-index's BM25Retriever defaults, which the stored indexes were built with.
_LANGUAGE = "en"
_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_FORMAT = 2  # 1 was llama-index's BM25Retriever.persist(): bm25s's files and every chunk in corpus.jsonl
_IDS, _VERSIONS, _META = "chunk_ids.npy", "versions.npy", "papercite.json"


class SparseRetriever(BaseRetriever):
    """BM25 over the stored chunks, with ``BM25Retriever``'s scores; returns only chunks scoring above 0.

    Ties are broken by position in the index, so a ranking is reproducible. Hits that
    Chroma no longer holds (deleted since the index was built) are left out.
    """

    def __init__(
        self,
        bm25: bm25s.BM25,
        chunk_ids: np.ndarray,
        versions: np.ndarray,
        fetch: Fetch,
        top_k: int,
        allowed: np.ndarray | None = None,
    ) -> None:
        """Args:
        bm25: the score matrix and vocabulary.
        chunk_ids: the id of each indexed chunk, UTF-8 encoded, in index order.
        versions: each chunk's content hash when it was indexed (what ``papercite check`` compares).
        fetch: reads the hits' text and metadata by id.
        top_k: how many hits to return at most.
        allowed: which indexed chunks may be hits (a filter's :meth:`mask`); None: all.
        """
        super().__init__()
        self.bm25 = bm25
        self.chunk_ids = chunk_ids
        self.versions = versions
        self.similarity_top_k = top_k
        self.allowed = allowed
        self._fetch = fetch
        self._stemmer = Stemmer.Stemmer("english")
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self.masks: dict[str, np.ndarray] = {}  # a filter's key -> its mask, kept by whoever builds them

    def mask(self, ids: np.ndarray) -> np.ndarray:
        """Which indexed chunks are among ``ids`` (UTF-8 encoded), as a boolean array in index order."""
        if self._sorted is None:  # once per index: at 1M chunks the sort takes about a second
            order = np.argsort(self.chunk_ids, kind="stable")
            self._sorted = (order, self.chunk_ids[order])
        order, ordered = self._sorted
        mask = np.zeros(len(self.chunk_ids), dtype=bool)
        if len(ids) and len(ordered):
            at = np.clip(np.searchsorted(ordered, ids), 0, len(ordered) - 1)
            mask[order[at[ordered[at] == ids]]] = True
        return mask

    def narrowed(self, top_k: int, allowed: np.ndarray | None = None) -> SparseRetriever:
        """This index returning at most ``top_k`` hits, taken only among the ``allowed`` chunks when given
        (before the top k is chosen). The top k is the asker's: one index serves every retrieval setting."""
        narrowed = SparseRetriever(self.bm25, self.chunk_ids, self.versions, self._fetch, top_k, allowed)
        narrowed._sorted = self._sorted
        narrowed.masks = self.masks
        return narrowed

    @classmethod
    def from_nodes(cls, nodes: Sequence[BaseNode], top_k: int, *, batch: int = 2000) -> SparseRetriever:
        """An index of ``nodes`` held in memory, built ``batch`` nodes at a time (for tests and small corpora)."""
        by_id = {node.node_id: node for node in nodes}
        pages = (_node_page(nodes[i : i + batch]) for i in range(0, len(nodes), batch))
        return cls(*build_bm25(pages), lambda ids: {i: by_id[i] for i in ids if i in by_id}, top_k)

    @property
    def corpus(self) -> list[dict[str, Any]]:
        """The indexed chunks as ``BM25Retriever.corpus`` lists them (metadata dicts with ``node_id``).

        Read from Chroma: it costs a read of every chunk, so it is for inspection and tests,
        never for answering. Chunks Chroma no longer holds are left out.
        """
        ids = [i.decode() for i in self.chunk_ids.tolist()]
        nodes = self._fetch(ids)
        return [node_to_metadata_dict(nodes[i]) | {"node_id": i} for i in ids if i in nodes]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        words = bm25s.tokenize(
            query_bundle.query_str,
            stemmer=self._stemmer,
            token_pattern=_TOKEN_PATTERN,
            return_ids=False,
            show_progress=False,
        )[0]
        ids = self.bm25.get_tokens_ids(words)
        if not ids:
            return []
        scores = self.bm25.get_scores_from_ids(ids)
        hits = np.flatnonzero(scores > 0 if self.allowed is None else (scores > 0) & self.allowed)
        if len(hits) > self.similarity_top_k:
            hits = hits[np.argpartition(scores[hits], -self.similarity_top_k)[-self.similarity_top_k :]]
        hits = hits[np.lexsort((hits, -scores[hits]))]
        chunk_ids = [i.decode() for i in self.chunk_ids[hits].tolist()]
        nodes = self._fetch(chunk_ids)
        return [
            NodeWithScore(node=nodes[c], score=float(scores[i])) for c, i in zip(chunk_ids, hits.tolist()) if c in nodes
        ]


def build_bm25(pages: Iterable[Mapping[str, Any]]) -> tuple[bm25s.BM25, np.ndarray, np.ndarray]:
    """BM25 over stored chunks read page by page, as ``BM25Retriever`` would build it from them all at once.

    Args:
        pages: Chroma ``get`` results with ``ids``, ``documents`` and ``metadatas``.

    Returns:
        bm25s's index, the chunk ids (UTF-8, in index order) and their content hashes.
    """
    builder = _Builder()
    for page in pages:
        builder.add(page)
    return builder.finish()


class _Builder:
    """bm25s's ``BM25.index`` split in two: :meth:`add` per page, :meth:`finish` once.

    :meth:`add` keeps, per chunk, its distinct token ids and their counts (int32 and
    uint32), its length, id and version; the texts, nodes and token lists of a page are
    dropped once it is counted. :meth:`finish` then computes the scores a page at a
    time with bm25s's own functions and places them, by counting sort, into the CSC
    arrays bm25s's ``_np_csc`` would make (each token's documents in ascending order).
    Peak memory is about 16 bytes per (chunk, distinct token) pair, and a page's worth of texts.
    """

    def __init__(self) -> None:
        self.bm25 = bm25s.BM25()  # k1, b, delta, method and dtypes as BM25Retriever makes it
        self.stemmer = Stemmer.Stemmer("english")
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(0, dtype=np.int64)
        self.pages: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # tokens, counts, distinct per chunk
        self.lengths: list[np.ndarray] = []
        self.ids: list[bytes] = []
        self.versions: list[bytes] = []

    def add(self, page: Mapping[str, Any]) -> None:
        """Tokenize one page of chunks (the text each node embeds, as ``BM25Retriever`` indexes it)."""
        texts, versions = [], []
        for text, meta in zip(page["documents"] or [], page["metadatas"] or []):
            texts.append(metadata_dict_to_node(dict(meta), text=text).get_content(metadata_mode=MetadataMode.EMBED))
            record = ChunkRecord.read(meta)
            versions.append((record.content_hash if record else "").encode())
        if not texts:
            return
        local = bm25s.tokenize(
            texts, stopwords=_LANGUAGE, stemmer=self.stemmer, token_pattern=_TOKEN_PATTERN, show_progress=False
        )
        # The page's own token ids -> ids in the whole vocabulary, in order of first sight.
        to_global = np.empty(len(local.vocab), dtype=np.int64)
        for token, i in local.vocab.items():
            to_global[i] = self.vocab.setdefault(token, len(self.vocab))
        lengths = np.fromiter((len(doc) for doc in local.ids), dtype=np.int64, count=len(texts))
        flat = to_global[np.fromiter(chain.from_iterable(local.ids), dtype=np.int64, count=int(lengths.sum()))]
        doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        pairs, counts = np.unique(doc * len(self.vocab) + flat, return_counts=True)  # sorted by chunk, then token
        tokens = (pairs % len(self.vocab)).astype(np.int32)
        distinct = np.bincount(pairs // len(self.vocab), minlength=len(texts)).astype(np.int32)
        if len(self.df) < len(self.vocab):
            self.df = np.concatenate([self.df, np.zeros(len(self.vocab) - len(self.df), dtype=np.int64)])
        self.df += np.bincount(tokens, minlength=len(self.vocab))
        self.pages.append((tokens, counts.astype(np.uint32), distinct))
        self.lengths.append(lengths.astype(np.int32))
        self.ids.extend(str(i).encode() for i in page["ids"])
        self.versions.extend(versions)

    def finish(self) -> tuple[bm25s.BM25, np.ndarray, np.ndarray]:
        """The score matrix, computed and placed page by page; the pages are released as they are placed."""
        bm25 = self.bm25
        n_docs, n_vocab = len(self.ids), len(self.vocab)
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int32)
        # As bm25s: the mean of the lengths (exact: an integer sum, then one division), a float32 idf per token.
        avg_doc_len = np.float64(lengths.sum(dtype=np.int64)) / n_docs if n_docs else np.float64(0)
        idf_of = _select_idf_scorer(bm25.idf_method)
        idf = np.zeros(n_vocab, dtype=bm25.dtype)
        for token, df in enumerate(self.df.tolist()):
            if df:
                idf[token] = idf_of(df, N=n_docs)
        indptr = np.zeros(n_vocab + 1, dtype=np.int64)
        np.cumsum(self.df, out=indptr[1:])
        data = np.empty(int(indptr[-1]), dtype=bm25.dtype)
        indices = np.empty(int(indptr[-1]), dtype=bm25.int_dtype)
        heads = indptr[:-1].copy()
        tfc_of = _select_tfc_scorer(bm25.method)
        first = 0
        self.pages.reverse()  # popped from the end, in page order
        while self.pages:
            tokens, counts, distinct = self.pages.pop()
            doc = np.repeat(np.arange(first, first + len(distinct), dtype=np.int64), distinct)
            first += len(distinct)
            # bm25s scores a document with its length as an int and its counts as float32.
            tfc = tfc_of(
                tf_array=counts.astype(bm25.dtype),
                l_d=lengths[doc].astype(np.int64),
                l_avg=avg_doc_len,
                k1=bm25.k1,
                b=bm25.b,
                delta=bm25.delta,
            )
            scores = idf[tokens] * tfc
            order = np.argsort(tokens, kind="stable")  # by token; chunks stay in ascending order
            by_token = tokens[order]
            starts = np.flatnonzero(np.r_[True, by_token[1:] != by_token[:-1]])
            runs = np.diff(np.r_[starts, len(by_token)])
            at = heads[by_token] + np.arange(len(by_token)) - np.repeat(starts, runs)
            data[at] = scores[order]
            indices[at] = doc[order]
            heads[by_token[starts]] += runs
        vocab = dict(self.vocab)
        vocab[""] = n_vocab  # bm25s adds the empty token after the others; no column holds it
        bm25.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}
        bm25.vocab_dict = vocab
        bm25.unique_token_ids_set = set(vocab.values())
        bm25.nonoccurrence_array = None
        return bm25, np.array(self.ids, dtype=bytes), np.array(self.versions, dtype=bytes)


def _node_page(nodes: Sequence[BaseNode]) -> dict[str, list[Any]]:
    """Nodes as a Chroma ``get`` result: ids, documents and metadatas (as llama-index's Chroma store writes them)."""
    metas = [node_to_metadata_dict(node, remove_text=True, flat_metadata=False) for node in nodes]
    texts = [node.get_content(metadata_mode=MetadataMode.NONE) for node in nodes]
    return {"ids": [node.node_id for node in nodes], "documents": texts, "metadatas": metas}


class BM25Index:
    """The persisted BM25 index of one collection, and the retriever loaded from it."""

    def __init__(self, path: Path, fetch: Fetch, top_k: int = 100) -> None:
        """Args:
        path: the index's directory (``<data_dir>/bm25/<collection>``).
        fetch: reads chunks by id from the collection, for the retriever's hits.
        top_k: how many hits the loaded retriever returns at most; a retrieval asks for its own
            number with :meth:`SparseRetriever.narrowed`.
        """
        self.path = path
        self.top_k = top_k
        self.fetch = fetch
        self._retriever: SparseRetriever | None = None
        self._stamp: float | None = None
        self._lock = threading.Lock()
        self._rebuild_lock = threading.Lock()  # an ingest and a question may both rebuild

    @property
    def stale_mark(self) -> Path:
        """The file an ingest leaves while Chroma may hold chunks this index lacks."""
        return self.path.with_name(f"{self.path.name}.stale")

    @property
    def stale(self) -> bool:
        """True when an ingest wrote to Chroma and did not get to rebuild this index."""
        return self.stale_mark.exists()

    @property
    def outdated(self) -> bool:
        """True when the index on disk was written by an older papercite (it is rebuilt, never read)."""
        return self.path.is_dir() and not (self.path / _META).exists()

    def mark_stale(self) -> None:
        """Record, before Chroma is written, that this index will be behind until :meth:`rebuild`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stale_mark.touch()

    def load(self) -> SparseRetriever | None:
        """The persisted index, read again only when it changed on disk.

        None when there is none, or when it is in an older format (:attr:`outdated`):
        :meth:`current` then rebuilds it from Chroma.
        """
        with self._lock:
            try:
                stamp = self.path.stat().st_mtime
            except FileNotFoundError:
                self._retriever, self._stamp = None, None
                return None
            if self.outdated:
                return None
            if self._retriever is None or stamp != self._stamp:
                bm25 = bm25s.BM25.load(str(self.path), show_progress=False)
                ids, versions = np.load(self.path / _IDS), np.load(self.path / _VERSIONS)
                top_k = min(self.top_k, len(ids))
                self._retriever, self._stamp = SparseRetriever(bm25, ids, versions, self.fetch, top_k), stamp
            return self._retriever

    def current(
        self, chunks: int, pages: Callable[[], Iterable[Mapping[str, Any]]], *, clear_mark: bool = True
    ) -> SparseRetriever | None:
        """The index, rebuilt first from ``pages()`` when it is missing, outdated, marked stale, or holds
        another number of chunks than the ``chunks`` Chroma holds (``clear_mark`` as in :meth:`rebuild`)."""
        retriever = self.load()
        if chunks and (retriever is None or self.stale or len(retriever.chunk_ids) != chunks):
            self.rebuild(pages(), clear_mark=clear_mark)
            retriever = self.load()
        return retriever

    def rebuild(self, pages: Iterable[Mapping[str, Any]], *, clear_mark: bool = True) -> None:
        """Build the index from every stored chunk, read page by page, and swap it in atomically.

        Args:
            pages: Chroma ``get`` results with ``ids``, ``documents`` and ``metadatas``.
            clear_mark: False keeps the stale mark: an ingest still writing may yet be killed
                before its own rebuild, and the mark must outlive a rebuild made halfway through it.
        """
        with self._rebuild_lock:
            bm25, ids, versions = build_bm25(pages)
            if not len(ids):
                shutil.rmtree(self.path, ignore_errors=True)
                if clear_mark:
                    self.stale_mark.unlink(missing_ok=True)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unique names: another process on this data directory may be rebuilding too.
            tmp = Path(tempfile.mkdtemp(prefix=f"{self.path.name}.tmp-", dir=self.path.parent))
            bm25.save(str(tmp), show_progress=False)
            np.save(tmp / _IDS, ids)
            np.save(tmp / _VERSIONS, versions)
            (tmp / _META).write_text(json.dumps({"format": _FORMAT, "chunks": len(ids)}))
            del bm25
            # Swap in the new index so a reader never sees a half-written one.
            old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
            try:
                self.path.rename(old)
            except FileNotFoundError:
                pass
            try:
                tmp.rename(self.path)
            except OSError:  # another process swapped in its index, built from the same collection
                shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
            if clear_mark:
                self.stale_mark.unlink(missing_ok=True)
