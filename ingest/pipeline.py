"""Ingest: papers -> chunks -> embeddings -> Chroma, then the BM25 index is rebuilt.

Idempotent by content: each chunk records its paper's content hash and how many
chunks the paper has, so a second run of the same file writes nothing, a changed
abstract replaces its old chunks, and a paper left half-written by a crash is
written again whole.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from llama_index.core import Document
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode
from tqdm import tqdm

from ingest.papers import Paper, Problem
from ingest.readers import read_papers
from ingest.zotero import collection_name, read_zotero, zotero_collections
from rag.embedding import word_pieces
from rag.services import Services
from rag.settings import Settings
from rag.store.chunks import ChunkRecord, source_of

if TYPE_CHECKING:
    from concurrent.futures import Future

    from llama_index.core.schema import TextNode


__all__ = ["IngestReport", "Progress", "chunk_papers", "ingest_papers", "ingest_path", "ingest_zotero_collections"]

# Called with (chunks done, chunks total) as batches are written.
Progress = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What one ingest did.

    Attributes:
        source: the file (or description) ingested.
        added: ids of papers that were new to the store.
        updated: ids of papers whose stored text changed and was replaced.
        unchanged: ids of papers already stored exactly as read.
        skipped: records that were not ingested, as ``file:line: reason``.
        chunks_written: chunks embedded and stored.
        seconds: wall time of the whole ingest.
    """

    source: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: counts of added, updated, unchanged and skipped papers."""
        return (
            f"{self.source}: {len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped "
            f"({self.chunks_written} chunks in {self.seconds:.1f} s)"
        )


def ingest_path(
    path: str | Path,
    *,
    settings: Settings | None = None,
    services: Services | None = None,
    format: str | None = None,
    progress: Progress | bool = True,
) -> IngestReport:
    """Read a file of papers and ingest them.

    Args:
        path: a page-text, JSONL/JSON, CSV or BibTeX file (chosen by extension).
        settings: defaults to ``Settings()``.
        services: the store and encoder to write with; defaults to the shared ones for ``settings``.
        format: force a reader: page, jsonl, json, csv or bibtex.
        progress: True for a progress bar on stderr, False for none, or a callback.

    Raises:
        BadInput: the file cannot be read at all (malformed records are skipped and
            reported instead).
        StoreError: the store cannot be opened or was built with another embedding model.
    """
    read = read_papers(path, format=format)
    report = ingest_papers(read.papers, settings=settings, services=services, progress=progress, source=str(path))
    report.skipped[:0] = read.problems
    return report


def ingest_zotero_collections(
    path: str | Path, *, settings: Settings, progress: Progress | bool = True
) -> list[IngestReport]:
    """Ingest each Zotero collection's papers into the papercite collection of its name (created as needed).

    Items in no collection are not ingested here (``ingest_path`` ingests the whole library).

    Raises:
        BadInput: the file is not a Zotero library.
    """
    read = read_zotero(path)
    reports = []
    for zotero_name, origins in sorted(zotero_collections(path).items()):
        papers = [p for p in read.papers if p.origin in origins]
        if papers:
            name = collection_name(zotero_name)
            target = settings.updated(store={"collection": name})
            source = f"Zotero collection {zotero_name!r} -> collection {name!r}"
            reports.append(ingest_papers(papers, settings=target, progress=progress, source=source))
    return reports


def ingest_papers(
    papers: Sequence[Paper],
    *,
    settings: Settings | None = None,
    services: Services | None = None,
    progress: Progress | bool = True,
    source: str = "papers",
) -> IngestReport:
    """Chunk, embed and store papers that are new or changed; rebuild BM25 if anything changed.

    ``services`` defaults to the shared ones for ``settings`` (``Settings()`` when neither is given).
    """
    started = time.perf_counter()
    services = services or Services(settings or Settings())
    settings = services.settings
    store = services.writable_store()
    store.check_embedding_model(settings.embedding.model)
    report = IngestReport(source)

    unique: dict[str, Paper] = {}
    for paper in papers:
        if paper.id in unique:
            report.skipped.append(
                Problem(paper.origin or source, f"same paper as {unique[paper.id].origin or 'an earlier record'}")
            )
        else:
            unique[paper.id] = paper
    with store.writing():
        store.ensure_filter_fields(locked=True)  # a store from before filters: its chunks get theirs first
        states = store.paper_states(unique)
        to_write: list[Paper] = []
        for pid, paper in unique.items():
            state = states.get(pid)
            if state is None:
                report.added.append(pid)
                to_write.append(paper)
            elif state.content_hash == paper.content_hash() and state.complete:
                report.unchanged.append(pid)
            else:
                report.updated.append(pid)
                to_write.append(paper)

        if to_write:
            nodes, problems = chunk_papers(to_write, services)
            report.skipped.extend(problems)
            failed = {p.location for p in problems}
            report.added = [pid for pid in report.added if unique[pid].origin not in failed]
            report.updated = [pid for pid in report.updated if unique[pid].origin not in failed]
            store.record_embedding_model(settings.embedding.model)
            store.add_sources({source_of(p.origin) for p in to_write if p.origin})
            # Until the rebuild below, BM25 is behind Chroma: a kill in between leaves the mark.
            store.sparse.mark_stale()
            # Old chunks of changed or half-written papers go first, so none is left orphaned.
            store.delete_papers(report.updated)
            report.chunks_written = _embed_and_store(nodes, services, _progress_callback(progress, len(nodes)))
        if to_write or (store.collection.count() and store.bm25() is None):
            store.rebuild_bm25()
    report.seconds = time.perf_counter() - started
    return report


def chunk_papers(papers: Iterable[Paper], services: Services) -> tuple[list[TextNode], list[Problem]]:
    """Split papers into the chunks ingest embeds (title included), and the papers that cannot be split."""
    return _chunk(papers, _splitter(services))


def _splitter(services: Services) -> SentenceSplitter:

    conf = services.settings.embedding
    # Count in the embedding model's own word pieces, so no chunk (title included)
    # exceeds what it reads: a tiktoken count would let MiniLM truncate silently.
    return SentenceSplitter(
        chunk_size=conf.chunk_size,
        chunk_overlap=conf.chunk_overlap,
        tokenizer=word_pieces(services.embed_model),
    )


def _chunk(papers: Iterable[Paper], splitter: SentenceSplitter) -> tuple[list[TextNode], list[Problem]]:

    nodes: list[TextNode] = []
    problems: list[Problem] = []
    for paper in papers:
        record = ChunkRecord(
            paper.id, paper.title, tuple(paper.authors), paper.year, paper.url, paper.origin, paper.content_hash()
        )
        doc = Document(
            id_=paper.id,
            text=paper.abstract,
            metadata=record.paper_metadata(),
            excluded_embed_metadata_keys=record.hidden_keys(),
            excluded_llm_metadata_keys=record.hidden_keys(),
        )
        try:
            chunks = splitter.get_nodes_from_documents([doc])
        except ValueError as exc:  # the title alone is longer than a chunk
            problems.append(Problem(paper.origin or paper.id, f"cannot chunk: {exc}"))
            continue
        for i, node in enumerate(chunks):
            placed = replace(record, chunk_index=i, n_chunks=len(chunks))
            node.id_ = placed.id
            node.metadata = placed.metadata()
            nodes.append(node)  # type: ignore[arg-type]
    return nodes, problems


def _embed_and_store(nodes: list[TextNode], services: Services, progress: Progress) -> int:
    """Embed the chunks batch by batch and write each batch to Chroma while the next one is embedded.

    One writer thread holds at most one batch: the encoder (torch, which releases the GIL)
    and Chroma's write (serialising metadata, SQLite, the HNSW insert) overlap instead of
    taking turns, and memory stays at two batches. Progress counts chunks written, not
    embedded, and is reported from the writer thread as each batch is stored. A batch is
    stored whole or not at all, as before: a kill loses only batches not yet written,
    whose papers the next ingest finds incomplete and writes again whole.
    """

    embed_model, store = services.embed_model, services.store
    batch = services.settings.store.batch_size
    texts = {n.id_: n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes}
    # Longest first in word pieces, across the whole ingest: each forward pass then holds
    # texts of one length, so almost none of the encoder's work goes to padding (1 % of the
    # real word pieces on the scale abstracts). Sorted by characters, as
    # SentenceTransformer.encode sorts, batches padded 19 %: chunks are cut by word pieces,
    # and their characters per piece vary. Counting costs about 0.1 s per thousand chunks.
    # A paper's chunks may land in different batches; a crash between them leaves the
    # paper incomplete, and the next ingest writes it again whole.
    pieces = word_pieces(embed_model)
    ordered = sorted(nodes, key=lambda n: len(pieces(texts[n.id_])), reverse=True)
    written = 0

    def write(part: list[TextNode]) -> None:  # in the writer thread, one batch at a time
        nonlocal written
        store.add_nodes(part)
        written += len(part)
        progress(written, len(nodes))

    progress(0, len(nodes))
    # Leaving the with-block waits for the batch in flight, also when embedding raised.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="papercite-chroma-writer") as writer:
        in_flight: Future[None] | None = None
        for start in range(0, len(ordered), batch):
            part = ordered[start : start + batch]
            vectors = embed_model.get_text_embedding_batch([texts[n.id_] for n in part])
            for node, vector in zip(part, vectors):
                node.embedding = vector
            if in_flight is not None:
                in_flight.result()  # one batch waits at most; a failed write stops the ingest here
            in_flight = writer.submit(write, part)
        if in_flight is not None:
            in_flight.result()
    return written


def _progress_callback(progress: Progress | bool, total: int) -> Progress:
    if callable(progress):
        return progress
    if not progress or total < 64:
        return lambda done, total: None

    bar = tqdm(total=total, unit="chunk", desc="Embedding", file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update
