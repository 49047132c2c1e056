"""More like this: the papers of the collection nearest to one of its papers, with no LLM call.

Every chunk of the paper is a query to Chroma (its stored vector, so nothing is encoded),
the paper itself left out by a ``where`` on its id; a paper's similarity is the best cosine
between any of its chunks and any of the paper's.
"""

from __future__ import annotations

from llama_index.core.vector_stores.utils import metadata_dict_to_node

from rag.retrieve import ScoredChunk, group_by_paper, with_abstracts
from rag.services import Services
from rag.settings import Settings
from rag.titles import find_paper
from rag.types import Source

__all__ = ["similar"]


def similar(
    title: str, top_k: int = 5, *, settings: Settings | None = None, services: Services | None = None
) -> list[Source]:
    """The ``top_k`` papers nearest to the paper ``title`` names, best first, numbered from 1 (itself left out).

    ``title`` is the whole title or words from it ("gpipe efficient training"; :func:`rag.titles.find_paper`).

    Each source's ``similarity`` is the best cosine between one of its chunks and one of
    the paper's; its ``passages`` hold that chunk.

    Raises:
        BadInput: ``title`` names no stored paper, or several (see :func:`rag.titles.find_paper`).
        IndexEmpty: nothing has been ingested.
    """
    services = services or Services(settings or Settings())
    store = services.store
    paper = find_paper(store, title)
    own = store.collection.get(where={"paper_id": paper}, include=["embeddings"])
    hits = store.collection.query(
        query_embeddings=list(own["embeddings"]),  # type: ignore[arg-type]
        n_results=services.settings.tuning.retrieval.candidates,
        where={"paper_id": {"$ne": paper}},
        include=["distances", "documents", "metadatas"],
    )
    best: dict[str, ScoredChunk] = {}
    for distances, texts, metas in zip(hits["distances"] or [], hits["documents"] or [], hits["metadatas"] or []):
        for distance, text, meta in zip(distances, texts, metas):
            cosine = 1.0 - distance  # Chroma's cosine space reports 1 - cosine similarity
            node = metadata_dict_to_node(dict(meta), text=text)
            if node.node_id not in best or cosine > (best[node.node_id].similarity or 0.0):
                best[node.node_id] = ScoredChunk(node=node, score=cosine, similarity=cosine)
    chunks = sorted(best.values(), key=lambda c: c.score or 0.0, reverse=True)
    return with_abstracts(group_by_paper(chunks, top_k, 1), chunks, store)
