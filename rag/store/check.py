"""``papercite check``: does the store agree with itself? Reads only; fixes nothing.

Every paper must have all its chunks, of one version; every chunk must name its
paper; the BM25 index must hold exactly Chroma's chunks, in the same versions, and
not be marked stale by an interrupted ingest; and the vectors must come from the
configured embedding model. Each problem line says how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.store.chunks import ChunkRecord

if TYPE_CHECKING:
    from rag.store.chroma import Store

__all__ = ["StoreCheck", "check_store"]


@dataclass(frozen=True)
class StoreCheck:
    """What :func:`check_store` found: counts, and one line per kind of problem (none when sound).

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


def check_store(store: Store, configured_model: str) -> StoreCheck:
    """Check ``store``'s chunks, its BM25 index and its embedding model against ``configured_model``."""
    by_paper: dict[str, list[ChunkRecord]] = {}
    versions: dict[str, str] = {}  # chunk id -> content hash, as Chroma holds it
    stray = 0
    for rows in store.pages():
        for chunk_id, meta in zip(rows["ids"], rows["metadatas"] or []):
            record = ChunkRecord.read(meta)
            versions[chunk_id] = record.content_hash if record else ""
            if record is None:
                stray += 1
            else:
                by_paper.setdefault(record.paper_id, []).append(record)
    incomplete, origins = _incomplete(by_paper)
    problems = []
    if incomplete:
        files = ", ".join(sorted(origins)) or "their source files"
        problems.append(
            f"{len(incomplete)} paper(s) lack chunks or mix two versions (an ingest was "
            f"interrupted): run `papercite ingest` again on {files}."
        )
    if stray:
        problems.append(
            f"{stray} chunk(s) name no paper, title or chunk number: they were not written by "
            "papercite; re-ingest into a new PAPERCITE_DATA_DIR."
        )
    problems.extend(_bm25_problems(store, versions))
    recorded = store.recorded_embedding_model()
    if versions and recorded != configured_model:
        problems.append(
            f"The vectors were made with embedding model {recorded!r} but {configured_model!r} "
            f"is configured: set PAPERCITE_EMBEDDING__MODEL={recorded} or re-ingest into a new "
            "PAPERCITE_DATA_DIR."
        )
    return StoreCheck(len(by_paper), len(versions), tuple(sorted(incomplete)), tuple(sorted(origins)), tuple(problems))


def _incomplete(by_paper: dict[str, list[ChunkRecord]]) -> tuple[list[str], set[str]]:
    """Papers missing a chunk or mixing two versions, and the files they came from."""
    incomplete, origins = [], set()
    for pid, records in by_paper.items():
        expected = {r.n_chunks for r in records}
        indices = sorted(r.chunk_index for r in records)
        hashes = {r.content_hash for r in records}
        if len(expected) != 1 or len(hashes) != 1 or indices != list(range(expected.pop())):
            incomplete.append(pid)
            origins.update(r.origin.rsplit(":", 1)[0] for r in records if r.origin)
    return incomplete, origins


def _bm25_problems(store: Store, versions: dict[str, str]) -> list[str]:
    """Where the BM25 index and Chroma disagree: chunks one lacks, or another version of a chunk."""
    rebuilt = "it is rebuilt by the next question or `papercite ingest` (nothing is lost)."
    if store.sparse.outdated:
        return [f"The BM25 index at {store.sparse.path} was written by an older papercite: {rebuilt}"]
    retriever = store.sparse.load()
    indexed: dict[str, str] = {}
    if retriever is not None:
        for chunk_id, version in zip(retriever.chunk_ids.tolist(), retriever.versions.tolist()):
            indexed[chunk_id.decode()] = version.decode()
    problems = []
    if indexed.keys() != versions.keys():
        problems.append(
            f"The BM25 index holds {len(indexed.keys() - versions.keys())} chunk(s) Chroma lacks and "
            f"lacks {len(versions.keys() - indexed.keys())} it holds: {rebuilt}"
        )
    changed = sum(1 for i, h in indexed.items() if i in versions and versions[i] != h)
    if changed:
        problems.append(
            f"The BM25 index holds an older version of {changed} chunk(s) (an ingest was "
            f"interrupted before its rebuild): {rebuilt}"
        )
    elif store.sparse.stale:
        problems.append(f"The BM25 index is marked stale by an interrupted ingest: {rebuilt}")
    return problems
