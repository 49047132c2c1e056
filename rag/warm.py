"""``papercite warm``: read every paper of a collection ahead of the first question.

A per-paper reading's prompt starts with the instructions and one abstract; the embedded
model saves its state after reading that start (:mod:`rag.llm.prefixes`). Warming reads each
paper's start once, with no question, so that a later question about any of them costs
only its own tokens. A table's cells start with instructions of their own
(:data:`rag.answer.cells.CELL_PROMPT`), so ``papercite warm --tables`` reads papers as a
table does. It stops when the disk budget (``llm.prefix_disk_mib``) is full: reading
more would only push out papers it has just read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from threading import Event

from llama_index.core.schema import NodeWithScore
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from rag.answer.cells import CELL_PROMPT
from rag.answer.readings import READING_PROMPT, prefix_of, warm_messages
from rag.errors import BadInput, IndexEmpty
from rag.llm.backends import BackendLLM, ReadingLLMs, chat_once, reading_llms
from rag.llm.prefixes import PrefixStore
from rag.retrieve import group_by_paper, with_abstracts
from rag.services import Services
from rag.store.chroma import Store
from rag.types import Source

__all__ = ["WarmReport", "collection_sources", "read_ahead", "warm"]

_PAGE = 200


@dataclass
class WarmReport:
    """What one warm did.

    Attributes:
        papers: papers in the collection.
        read: papers read now.
        kept: papers already kept from before (not read again).
        left: papers not read because the disk budget was full.
        seconds: how long it took.
        files: papers kept on disk at the end, and the bytes they take.
    """

    papers: int
    read: int = 0
    kept: int = 0
    left: int = 0
    seconds: float = 0.0
    files: tuple[int, int] = (0, 0)

    def summary(self) -> str:
        """One line for a terminal or a log."""
        count, size = self.files
        per = f", {size / count / 1e6:.1f} MB per paper" if count else ""
        line = (
            f"Warmed {self.read} papers in {self.seconds:.0f} s ({self.kept} were read before) of {self.papers}; "
            f"{count} kept in {size / 1e6:,.0f} MB{per}."
        )
        if self.left:
            line += (
                f" {self.left} were left unread: the disk budget is full "
                "(raise PAPERCITE_LLM__PREFIX_DISK_MIB to keep more)."
            )
        return line


def collection_sources(store: Store) -> Iterator[Source]:
    """Every paper of the collection as a source with its whole abstract, exactly as retrieval gives it."""
    offset = 0
    while True:
        rows = store.collection.get(
            where={"chunk_index": 0}, limit=_PAGE, offset=offset, include=["documents", "metadatas"]
        )
        if not rows["ids"]:
            return
        offset += len(rows["ids"])
        heads = [
            NodeWithScore(node=metadata_dict_to_node(dict(meta), text=text), score=0.0)
            for text, meta in zip(rows["documents"] or [], rows["metadatas"] or [])
        ]
        yield from with_abstracts(group_by_paper(heads, len(heads), 1), heads, store)


def warm(
    services: Services,
    *,
    tables: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: Event | None = None,
) -> WarmReport:
    """Read every paper of ``services``' collection that the model has not kept, within the disk budget.

    Args:
        services: the collection and the model (the embedded one keeps what it reads).
        tables: read each paper as a table's cells start (:data:`rag.answer.cells.CELL_PROMPT`,
            ``papercite warm --tables``), not as a question's reading.
        progress: called with (papers done, papers in all) after each paper.
        stop: set it to end early (a page shutting down); what was read stays kept.

    Raises:
        UnknownCollection: the collection does not exist.
        IndexEmpty: the collection holds no papers.
        BadInput: the model keeps no read papers (not the embedded one, or its disk budget is 0).
        LLMUnavailable: the model cannot be loaded.
    """
    started = time.perf_counter()
    store = services.store
    total = store.stats().papers
    if not total:
        raise IndexEmpty(
            f"The collection {store.name!r} has no papers to warm: add some with "
            f"`papercite ingest --collection {store.name} FILE`."
        )
    backend = services.backend
    llms = reading_llms(backend, 1, services.settings.tuning.reading.top_logprobs)
    kept_on: PrefixStore | None = getattr(backend.llm, "prefix_store", None)
    if not llms.keeps_prefixes or kept_on is None:
        raise BadInput(
            f"papercite warm keeps read papers for the embedded model, and {backend.label} keeps none: set "
            "PAPERCITE_LLM__BACKEND=embedded and PAPERCITE_LLM__PREFIX_DISK_MIB above 0 (an Ollama or "
            "OpenAI-compatible server keeps its own cache)."
        )
    instructions = CELL_PROMPT if tables else READING_PROMPT
    report = WarmReport(total)
    for done, source in enumerate(collection_sources(store), start=1):
        if stop is not None and stop.is_set():
            break
        prefix = prefix_of(source, instructions)
        if kept_on.has(prefix):
            report.kept += 1
        elif _full(kept_on):
            report.left = total - done + 1
            break
        else:
            read_ahead(backend, llms, source, instructions)
            report.read += 1
        if progress is not None:
            progress(done, total)
    report.seconds = time.perf_counter() - started
    report.files = kept_on.usage()
    return report


def read_ahead(backend: BackendLLM, llms: ReadingLLMs, source: Source, instructions: str = READING_PROMPT) -> None:
    """Read ``source``'s prefix under ``instructions`` (a reading's, or a table cell's) with no question, so the
    model keeps it (on disk, when it keeps prefixes) and a later question or cell costs only its own tokens."""
    kept = {"prefix": prefix_of(source, instructions)} if llms.keeps_prefixes else {}
    chat_once(backend, llms.verdict, warm_messages(source, instructions), **kept)


def _full(kept_on: PrefixStore) -> bool:
    """True when one more paper would push the store over its budget (judged by the papers kept so far)."""
    count, size = kept_on.usage()
    return bool(count) and size + size / count > kept_on.budget_bytes
