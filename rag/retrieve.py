"""Hybrid retrieval: dense (Chroma) and BM25, fused by reciprocal rank, grouped by paper.

No LLM rewrites the question: on a laptop that would cost seconds per question
and it rarely helps on short scientific questions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llama_index.core import QueryBundle
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from rag.errors import IndexEmpty
from rag.services import Services
from rag.settings import RetrievalSettings, Settings
from rag.store.chunks import ChunkRecord, chunk_id
from rag.store.filters import Filters, check_filters
from rag.store.names import DEFAULT
from rag.types import Source

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from rag.store.chroma import Store

__all__ = [
    "DenseRetriever",
    "HybridRetriever",
    "ScoredChunk",
    "fuse",
    "group_by_paper",
    "hybrid_retriever",
    "papers_by_id",
    "retrieve",
    "retrieve_timed",
    "with_abstracts",
]


class ScoredChunk(NodeWithScore):
    """A fused chunk: ``score`` is its reciprocal-rank score, ``similarity`` its cosine to the question."""

    similarity: float | None = None


class DenseRetriever(BaseRetriever):
    """Chroma's nearest chunks to the question, scored by cosine similarity.

    llama-index's ``VectorIndexRetriever`` would need a ``VectorStoreIndex`` built over
    the store, and reports Chroma's distance as the score; papercite needs the cosine
    (it tells a question the collection does not cover). The chunks' text comes from
    Chroma itself, so a dense hit always shows what Chroma holds now.
    """

    def __init__(
        self, store: Store, embed_model: BaseEmbedding, top_k: int, where: dict[str, Any] | None = None
    ) -> None:
        """Args:
        store: the collection searched.
        embed_model: embeds the question.
        top_k: how many chunks to return.
        where: a Chroma filter the chunks must pass; Chroma applies it before choosing the nearest.
        """
        super().__init__()
        self._store = store
        self._embed_model = embed_model
        self._top_k = top_k
        self._where = where

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        embedding = query_bundle.embedding or self._embed_model.get_query_embedding(query_bundle.query_str)
        hits = self._store.collection.query(
            query_embeddings=[embedding],
            n_results=self._top_k,
            where=self._where,
            include=["distances", "documents", "metadatas"],
        )
        rows = zip((hits["distances"] or [[]])[0], (hits["documents"] or [[]])[0], (hits["metadatas"] or [[]])[0])
        # Chroma's cosine space reports 1 - cosine similarity.
        return [
            ScoredChunk(
                node=metadata_dict_to_node(dict(meta), text=text), score=1.0 - distance, similarity=1.0 - distance
            )
            for distance, text, meta in rows
        ]


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

    @classmethod
    def over(
        cls, store: Store, embed_model: BaseEmbedding, conf: RetrievalSettings, where: dict[str, Any] | None = None
    ) -> HybridRetriever:
        """The hybrid retriever over ``store``'s Chroma collection and BM25 index.

        With ``where``, both retrievers rank only chunks that pass it: Chroma filters before its
        nearest-neighbour search, and BM25 before it picks its top hits, so each still returns
        its full number of candidates when enough chunks pass.
        """
        sparse = store.bm25()
        if sparse is not None:  # the top k is this retrieval's: the index is shared by every setting
            sparse = sparse.narrowed(conf.candidates, store.passing(sparse, where) if where else None)
        return cls(DenseRetriever(store, embed_model, conf.candidates, where), sparse, conf)

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
        return fuse([dense, sparse], self._conf.rrf_k, (self._conf.dense_weight, self._conf.bm25_weight))  # type: ignore[return-value]


def hybrid_retriever(services: Services, where: dict[str, Any] | None = None) -> HybridRetriever:
    """The hybrid (dense + BM25) retriever over ``services``' store with its encoder and retrieval settings;
    ``where`` filters both sides before they rank (a Chroma filter, e.g. ``Filters.where()``)."""
    return HybridRetriever.over(services.store, services.embed_model, services.settings.tuning.retrieval, where)


def group_by_paper(chunks: Sequence[NodeWithScore], top_papers: int, chunks_per_paper: int) -> list[Source]:
    """Rank papers by their best chunk and keep each paper's best chunks, in abstract order."""
    papers: dict[str, list[NodeWithScore]] = {}
    for chunk in chunks:
        papers.setdefault(str(chunk.node.metadata["paper_id"]), []).append(chunk)
    ranked = sorted(papers.values(), key=lambda cs: max(c.score or 0.0 for c in cs), reverse=True)
    sources = []
    for paper_chunks in ranked[:top_papers]:
        best = sorted(paper_chunks, key=lambda c: c.score or 0.0, reverse=True)[:chunks_per_paper]
        best.sort(key=lambda c: int(c.node.metadata.get("chunk_index", 0)))
        record = ChunkRecord.read(paper_chunks[0].node.metadata)
        if record is None:  # not written by papercite (``papercite check`` reports these)
            continue
        similarities = [s for c in paper_chunks if (s := getattr(c, "similarity", None)) is not None]
        sources.append(
            Source(
                number=len(sources) + 1,
                paper_id=record.paper_id,
                title=record.title,
                passages=tuple(c.node.get_content() for c in best),
                score=max(c.score or 0.0 for c in paper_chunks),
                similarity=max(similarities) if similarities else None,
                authors=record.authors,
                year=record.year,
                url=record.url,
            )
        )
    return sources


def retrieve_timed(
    question: str,
    services: Services,
    top_k: int | None = None,
    *,
    previous: str | None = None,
    filters: Filters | None = None,
) -> tuple[list[Source], float, str]:
    """Like :func:`retrieve`, also returning the seconds it took and the filter's notice ("" if none)."""
    started = time.perf_counter()
    conf = services.settings.tuning.retrieval
    notice = check_filters(filters, services.store) if filters is not None else ""
    where = filters.where() if filters is not None else None
    retriever = hybrid_retriever(services, where)
    chunks = retriever.retrieve(question)
    if previous:  # a follow-up: mostly what the two questions ask together ("... which of them ...?")
        together = retriever.retrieve(f"{previous} {question}")
        chunks = fuse([together, chunks], conf.rrf_k, (1.0, conf.follow_up_alone_weight))
    if not chunks and services.store.collection.count() == 0:  # counted only then: it costs ms on a large store
        store = services.store
        flag = "" if store.name == DEFAULT else f" --collection {store.name}"
        raise IndexEmpty(
            f"The collection {store.name!r} at {store.location} is empty: run `papercite ingest{flag} --sample` "
            f"for the bundled papers, or `papercite ingest{flag} FILE`."
        )
    sources = group_by_paper(chunks, top_k or services.settings.answer.top_papers, conf.chunks_per_paper)
    return with_abstracts(sources, chunks, services.store), time.perf_counter() - started, notice


def fuse(
    rankings: Sequence[Sequence[NodeWithScore]], rrf_k: int, weights: Sequence[float] | None = None
) -> list[ScoredChunk]:
    """Weighted reciprocal rank fusion of rankings of chunks; a chunk keeps its best cosine to any query.

    The one fusion papercite has: the hybrid retriever fuses its dense and BM25 rankings with it
    (BM25 hits carry no cosine), and a follow-up is retrieved twice, after the previous question and
    alone, and the two rankings fused: one that does not name its topic ("which of them ...?") finds
    the previous question's papers, and one that changes the topic ("another thing: ...") still
    finds its own.
    """
    fused: dict[str, ScoredChunk] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, hit in enumerate(ranking):
            chunk = fused.setdefault(hit.node.node_id, ScoredChunk(node=hit.node, score=0.0))
            chunk.score = (chunk.score or 0.0) + weight / (rrf_k + rank + 1)
            similarity = getattr(hit, "similarity", None)
            if similarity is not None and (chunk.similarity is None or similarity > chunk.similarity):
                chunk.similarity = similarity
    return sorted(fused.values(), key=lambda c: c.score or 0.0, reverse=True)


def with_abstracts(sources: Sequence[Source], chunks: Sequence[NodeWithScore], store: Store) -> list[Source]:
    """The sources with their whole abstracts: every chunk of each paper, overlaps joined.

    Answers are checked against the whole abstract, not only the chunk the model read:
    a number the model states may sit in another chunk of the same paper. The chunks
    are read by id from Chroma, which costs no search.
    """
    counts = {str(c.node.metadata["paper_id"]): int(c.node.metadata.get("n_chunks") or 1) for c in chunks}
    wanted = {s.paper_id: [chunk_id(s.paper_id, i) for i in range(counts.get(s.paper_id, 1))] for s in sources}
    nodes = store.nodes([i for ids in wanted.values() for i in ids])
    whole = []
    for source in sources:
        texts = [nodes[i].get_content() for i in wanted[source.paper_id] if i in nodes]
        whole.append(replace(source, abstract=_join_overlapping(texts) if texts else " ".join(source.passages)))
    return whole


def papers_by_id(store: Store, paper_ids: Sequence[str]) -> list[Source]:
    """The stored papers with these ids, in that order, numbered from 1, each with its whole abstract
    (ids not stored are left out)."""
    firsts = store.nodes([chunk_id(p, 0) for p in paper_ids])
    records = [r for p in paper_ids if (n := firsts.get(chunk_id(p, 0))) and (r := ChunkRecord.read(n.metadata))]
    rest = store.nodes([chunk_id(r.paper_id, i) for r in records for i in range(1, max(r.n_chunks, 1))])
    chunks = {**firsts, **rest}
    papers = []
    for record in records:
        texts = [
            chunks[i].get_content()
            for k in range(max(record.n_chunks, 1))
            if (i := chunk_id(record.paper_id, k)) in chunks
        ]
        papers.append(
            Source(
                number=len(papers) + 1,
                paper_id=record.paper_id,
                title=record.title,
                passages=tuple(texts[:1]),
                score=0.0,
                authors=record.authors,
                year=record.year,
                url=record.url,
                abstract=_join_overlapping(texts),
            )
        )
    return papers


def _join_overlapping(texts: Sequence[str], longest: int = 1000, shortest: int = 20) -> str:
    """Join consecutive chunks, writing the text two chunks share (their overlap) once.

    Overlaps shorter than ``shortest`` characters are chance (a shared letter), not the splitter's.
    """
    joined = texts[0]
    for text in texts[1:]:
        top = min(len(joined), len(text), longest)
        overlap = next((k for k in range(top, shortest - 1, -1) if joined.endswith(text[:k])), 0)
        joined = joined + (text[overlap:] if overlap else " " + text)
    return joined


def retrieve(
    question: str,
    top_k: int | None = None,
    *,
    previous: str | None = None,
    filters: Filters | None = None,
    settings: Settings | None = None,
    services: Services | None = None,
) -> list[Source]:
    """Return the papers most relevant to ``question``, best first, numbered from 1.

    Args:
        question: the question in plain language.
        top_k: how many papers to return; defaults to ``settings.answer.top_papers``.
        previous: the question before this one in the same chat, when this one follows it up.
        filters: only papers that pass (years, author, source file); the top k are k that pass.
        settings: defaults to ``Settings()`` (environment and defaults).
        services: the parts to retrieve with; defaults to the shared ones for ``settings``.

    Raises:
        IndexEmpty: nothing has been ingested.
        NoMatch: no paper passes ``filters`` (never an unfiltered result instead).
        UnknownCollection: the collection in ``settings`` does not exist.
    """
    services = services or Services(settings or Settings())
    return retrieve_timed(question, services, top_k, previous=previous, filters=filters)[0]
