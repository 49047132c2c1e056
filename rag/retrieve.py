"""Hybrid retrieval: dense (Chroma) and BM25, fused by reciprocal rank, grouped by paper.

No LLM rewrites the question: on a laptop that would cost seconds per question
and it rarely helps on short scientific questions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from llama_index.core import QueryBundle, VectorStoreIndex
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore

from rag.errors import IndexEmpty
from rag.services import Services, get_services
from rag.settings import RetrievalSettings, Settings
from rag.types import Source

__all__ = ["HybridRetriever", "ScoredChunk", "build_retriever", "group_by_paper", "retrieve", "retrieve_timed"]


class ScoredChunk(NodeWithScore):
    """A fused chunk: ``score`` is its reciprocal-rank score, ``similarity`` its cosine to the question."""

    similarity: float | None = None


class HybridRetriever(BaseRetriever):
    """Weighted reciprocal rank fusion of a dense and a BM25 retriever.

    llama-index's ``QueryFusionRetriever`` does reciprocal rank fusion too, but it
    discards each retriever's own scores (the cosine is what tells papercite a
    question is out of scope), ignores retriever weights in that mode, and needs
    an LLM configured even when no query is rewritten. This is the part it lacks.
    """

    def __init__(
        self,
        dense: BaseRetriever,
        sparse: BaseRetriever | None,
        conf: RetrievalSettings,
    ) -> None:
        super().__init__()
        self._dense = dense
        self._sparse = sparse
        self._conf = conf

    @property
    def dense(self) -> BaseRetriever:
        """The dense (Chroma) retriever alone."""
        return self._dense

    @property
    def sparse(self) -> BaseRetriever | None:
        """The BM25 retriever alone, if the store has a BM25 index."""
        return self._sparse

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        dense = self._dense.retrieve(query_bundle)
        # Only BM25 hits that share a term with the question count as hits.
        sparse = [n for n in self._sparse.retrieve(query_bundle) if (n.score or 0) > 0] if self._sparse else []
        fused: dict[str, ScoredChunk] = {}
        for hits, weight, is_dense in ((dense, self._conf.dense_weight, True), (sparse, self._conf.bm25_weight, False)):
            for rank, hit in enumerate(hits):
                chunk = fused.setdefault(hit.node.node_id, ScoredChunk(node=hit.node, score=0.0))
                chunk.score = (chunk.score or 0.0) + weight / (self._conf.rrf_k + rank + 1)
                if is_dense and hit.score:
                    # Chroma's llama-index store reports exp(-cosine distance).
                    chunk.similarity = 1.0 + math.log(hit.score)
        return sorted(fused.values(), key=lambda c: c.score or 0.0, reverse=True)


def build_retriever(services: Services) -> HybridRetriever:
    """The hybrid retriever over this store, with the shared embedding model."""
    conf = services.settings.retrieval
    index = VectorStoreIndex.from_vector_store(services.store.vector_store, embed_model=services.embed_model)
    dense = index.as_retriever(similarity_top_k=conf.candidates)
    return HybridRetriever(dense, services.store.bm25(), conf)


def group_by_paper(chunks: Sequence[NodeWithScore], top_papers: int, chunks_per_paper: int) -> list[Source]:
    """Rank papers by their best chunk and keep each paper's best chunks, in abstract order."""
    papers: dict[str, list[NodeWithScore]] = {}
    for chunk in chunks:
        papers.setdefault(str(chunk.node.metadata["paper_id"]), []).append(chunk)
    ranked = sorted(papers.values(), key=lambda cs: max(c.score or 0.0 for c in cs), reverse=True)
    sources = []
    for number, paper_chunks in enumerate(ranked[:top_papers], start=1):
        best = sorted(paper_chunks, key=lambda c: c.score or 0.0, reverse=True)[:chunks_per_paper]
        best.sort(key=lambda c: int(c.node.metadata.get("chunk_index", 0)))
        meta = paper_chunks[0].node.metadata
        similarities = [s for c in paper_chunks if (s := getattr(c, "similarity", None)) is not None]
        authors = str(meta.get("authors") or "")
        year = meta.get("year")
        sources.append(
            Source(
                number=number,
                paper_id=str(meta["paper_id"]),
                title=str(meta.get("title", "")),
                passages=tuple(c.node.get_content() for c in best),
                score=max(c.score or 0.0 for c in paper_chunks),
                similarity=max(similarities) if similarities else None,
                authors=tuple(a for a in authors.split("; ") if a),
                year=int(year) if isinstance(year, int | float) or (isinstance(year, str) and year.isdigit()) else None,
                url=str(meta.get("url") or "") or None,
            )
        )
    return sources


def retrieve_timed(question: str, settings: Settings, top_k: int | None = None) -> tuple[list[Source], float]:
    """Like :func:`retrieve`, also returning the seconds it took."""
    started = time.perf_counter()
    services = get_services(settings)
    if services.store.collection.count() == 0:
        raise IndexEmpty(
            f"The collection at {services.store.location} is empty: run "
            "`papercite ingest --sample` for the bundled papers, or `papercite ingest FILE`."
        )
    conf = settings.retrieval
    chunks = build_retriever(services).retrieve(question)
    sources = group_by_paper(chunks, top_k or conf.top_papers, conf.chunks_per_paper)
    return sources, time.perf_counter() - started


def retrieve(question: str, top_k: int | None = None, *, settings: Settings | None = None) -> list[Source]:
    """Return the papers most relevant to ``question``, best first, numbered from 1.

    Args:
        question: the question in plain language.
        top_k: how many papers to return; defaults to ``settings.retrieval.top_papers``.
        settings: defaults to ``Settings()`` (environment and defaults).

    Raises:
        IndexEmpty: nothing has been ingested.
    """
    return retrieve_timed(question, settings or Settings(), top_k)[0]
