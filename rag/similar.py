"""More like this: the papers of the collection nearest to one of its papers, with no LLM call.

Every chunk of the paper is a query to Chroma (its stored vector, so nothing is encoded),
the paper itself left out by a ``where`` on its id; a paper's similarity is the best cosine
between any of its chunks and any of the paper's.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from llama_index.core.vector_stores.utils import metadata_dict_to_node

from rag.errors import BadInput, IndexEmpty
from rag.retrieve import ScoredChunk, group_by_paper, with_abstracts
from rag.services import Services
from rag.settings import Settings
from rag.store.chunks import normalize_title
from rag.types import Source

if TYPE_CHECKING:
    from rag.store.chroma import Store

__all__ = ["find_paper", "similar"]

_PAGE = 1000


def find_paper(store: Store, title: str) -> str:
    """The id of the stored paper titled ``title`` (case, accents of form and punctuation aside), or with that id.

    Raises:
        BadInput: no stored paper has that title or id; the message names the closest titles.
    """
    wanted = " ".join(title.split())
    if not wanted:
        raise BadInput('The title is empty: give a stored paper\'s title, e.g. papercite similar "WaveMix ...".')
    for where in ({"title": wanted}, {"paper_id": wanted}):
        rows = store.collection.get(where=where, include=["metadatas"], limit=1)  # type: ignore[arg-type]
        if rows["ids"]:
            return str((rows["metadatas"] or [{}])[0]["paper_id"])
    folded, titles = normalize_title(wanted), {}
    offset = 0
    while (rows := store.collection.get(where={"chunk_index": 0}, include=["metadatas"], limit=_PAGE, offset=offset))[
        "ids"
    ]:
        for meta in rows["metadatas"] or []:
            if (key := normalize_title(str(meta["title"]))) == folded:
                return str(meta["paper_id"])
            titles[key] = str(meta["title"])
        offset += len(rows["ids"])
    if not titles:
        raise IndexEmpty(
            f"The collection at {store.location} is empty: run `papercite ingest --sample` for the bundled "
            "papers, or `papercite ingest FILE`."
        )
    close = [titles[t] for t in difflib.get_close_matches(folded, list(titles), n=3, cutoff=0.5)]
    hint = f" Closest: {'; '.join(repr(t) for t in close)}." if close else ""
    raise BadInput(f"No paper titled {wanted!r} in the collection.{hint} Give a title as the sources list shows it.")


def similar(
    title: str, top_k: int = 5, *, settings: Settings | None = None, services: Services | None = None
) -> list[Source]:
    """The ``top_k`` papers nearest to the paper titled ``title``, best first, numbered from 1 (itself left out).

    Each source's ``similarity`` is the best cosine between one of its chunks and one of
    the paper's; its ``passages`` hold that chunk.

    Raises:
        BadInput: no stored paper has that title (see :func:`find_paper`).
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
