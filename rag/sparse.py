"""The BM25 side of the store: the persisted index, and llama-index's ``BM25Retriever`` with a top-k that scales.

:class:`BM25Index` keeps the index of one collection under
``<data_dir>/bm25/<collection>``: rebuilt from Chroma after every ingest that changed
something, swapped in atomically, loaded once per process and again when it changes
on disk. An ingest marks it stale before it writes to Chroma and the rebuild clears
the mark, so an ingest killed in between leaves a mark that the next question or
ingest acts on (rebuild) and ``papercite check`` reports, even when the kill left
Chroma's chunk count unchanged (a replaced abstract keeps its chunk ids).

:class:`SparseRetriever`:

bm25s picks the top k with ``np.argpartition`` over every chunk's score, and NumPy's
selection degrades badly when most values are equal. A question's terms touch a small
part of a large store and every other chunk scores exactly 0: at 1M chunks the
selection took 160-210 ms, against about 2 ms for selecting among the non-zero
scores alone. Chunks that share no term with the question are not hits anyway (the
hybrid retriever drops them), so only those with a score are ranked.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import bm25s
import numpy as np
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from llama_index.retrievers.bm25 import BM25Retriever

__all__ = ["BM25Index", "SparseRetriever"]


class SparseRetriever(BM25Retriever):
    """Same index, tokenizer and scores as ``BM25Retriever``; returns only chunks scoring above 0.

    Ties are broken by position in the index, so a ranking is reproducible.
    """

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        words = bm25s.tokenize(
            query_bundle.query_str,
            stemmer=None if self.skip_stemming else self.stemmer,
            token_pattern=self.token_pattern,
            return_ids=False,
            show_progress=False,
        )[0]
        ids = self.bm25.get_tokens_ids(words)
        if not ids:
            return []
        mask = np.asarray(self.corpus_weight_mask) if self.corpus_weight_mask else None
        scores = self.bm25.get_scores_from_ids(ids, weight_mask=mask)
        hits = np.flatnonzero(scores > 0)
        if len(hits) > self.similarity_top_k:
            hits = hits[np.argpartition(scores[hits], -self.similarity_top_k)[-self.similarity_top_k :]]
        hits = hits[np.lexsort((hits, -scores[hits]))]
        return [
            NodeWithScore(node=metadata_dict_to_node(self.corpus[i]), score=float(scores[i])) for i in hits.tolist()
        ]


class BM25Index:
    """The persisted BM25 index of one collection, and the retriever loaded from it."""

    def __init__(self, path: Path, top_k: int) -> None:
        """Args:
        path: the index's directory (``<data_dir>/bm25/<collection>``).
        top_k: how many hits the retriever returns at most.
        """
        self.path = path
        self.top_k = top_k
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

    def mark_stale(self) -> None:
        """Record, before Chroma is written, that this index will be behind until :meth:`rebuild`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stale_mark.touch()

    def load(self) -> SparseRetriever | None:
        """The persisted index, read again only when it changed on disk; None when there is none."""
        with self._lock:
            try:
                stamp = self.path.stat().st_mtime
            except FileNotFoundError:
                self._retriever, self._stamp = None, None
                return None
            if self._retriever is None or stamp != self._stamp:
                retriever = SparseRetriever.from_persist_dir(str(self.path))
                retriever.similarity_top_k = min(self.top_k, int(retriever.bm25.scores["num_docs"]))
                self._retriever, self._stamp = retriever, stamp
            return self._retriever

    def current(
        self, chunks: int, nodes: Callable[[], Iterable[TextNode]], *, clear_mark: bool = True
    ) -> SparseRetriever | None:
        """The index, rebuilt first from ``nodes()`` when it is missing, marked stale, or holds
        another number of chunks than the ``chunks`` Chroma holds (``clear_mark`` as in :meth:`rebuild`)."""
        retriever = self.load()
        if chunks and (retriever is None or self.stale or int(retriever.bm25.scores["num_docs"]) != chunks):
            self.rebuild(nodes(), clear_mark=clear_mark)
            retriever = self.load()
        return retriever

    def rebuild(self, nodes: Iterable[TextNode], *, clear_mark: bool = True) -> None:
        """Build the index from every stored chunk and swap it in atomically.

        ``clear_mark=False`` keeps the stale mark: an ingest still writing may yet be killed
        before its own rebuild, and the mark must outlive a rebuild made halfway through it.
        """
        with self._rebuild_lock:
            nodes = list(nodes)
            if not nodes:
                shutil.rmtree(self.path, ignore_errors=True)
                if clear_mark:
                    self.stale_mark.unlink(missing_ok=True)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A top-k above the chunk count makes llama-index print a warning; load() caps it the same way.
            retriever = SparseRetriever.from_defaults(nodes=nodes, similarity_top_k=min(self.top_k, len(nodes)))
            # Unique names: another process on this data directory may be rebuilding too.
            tmp = Path(tempfile.mkdtemp(prefix=f"{self.path.name}.tmp-", dir=self.path.parent))
            retriever.persist(str(tmp), show_progress=False)
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
