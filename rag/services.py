"""The composed pipeline: store, encoder, retriever and LLM, built once at the edge and passed in.

``Services`` holds the parts one ``Settings`` needs. Each part is built on first use
(MiniLM takes seconds to load and the embedded LLM more, and ``papercite ingest``
never needs an LLM), or passed in, so a test or a caller swaps one part by passing
another::

    services = Services(settings, llm=scripted)        # a test's LLM, the real store
    answer = rag.ask("...", services=services)

The CLI, the page and the evals build theirs with :func:`get_services`; the
module-level public functions (``rag.ask``, ``rag.retrieve``, ``ingest_papers``) do
the same when given none. Everything loaded is kept in this module's one cache,
:func:`shared`: a ``Services`` per distinct ``Settings``, a store per data directory
and collection, an encoder per embedding model, the embedded LLM's weights per file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from rag.settings import Settings

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import LLM

    from rag.llm.backends import BackendLLM
    from rag.retrieve import HybridRetriever
    from rag.store.chroma import Store

__all__ = ["Services", "get_services", "reset_services", "shared"]

T = TypeVar("T")


class Services:
    """Store, embedding model, retriever and LLM for one ``Settings``; each built on first use unless given."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        embed_model: BaseEmbedding | None = None,
        llm: LLM | None = None,
    ) -> None:
        """Args:
        settings: what every part is built from.
        store, embed_model, llm: parts to use instead of building them (a llama-index LLM,
            e.g. a test's scripted one; it replaces the configured backend).
        """
        from rag.llm.backends import BackendLLM

        self.settings = settings
        backend = BackendLLM.given(llm) if llm is not None else None
        for name, part in (("store", store), ("embed_model", embed_model), ("backend", backend)):
            if part is not None:
                self.__dict__[name] = part  # takes the place of the cached_property below

    @cached_property
    def store(self) -> Store:
        """The Chroma collection and its BM25 index (one per data directory and collection,
        shared by settings that differ only in retrieval or LLM, e.g. a page's backend menu)."""
        from rag.store.chroma import Store

        key = f"{self.settings.data_dir}|{self.settings.store.model_dump_json()}"
        return shared("store", key, lambda: Store(self.settings))

    @cached_property
    def embed_model(self) -> BaseEmbedding:
        """The sentence-transformers model, through llama-index (one per model, process-wide)."""
        from rag.embedding import load_embed_model

        conf = self.settings.embedding
        return shared("encoder", conf.model_dump_json(), lambda: load_embed_model(conf))

    @cached_property
    def backend(self) -> BackendLLM:
        """The LLM that writes answers (Ollama, embedded or OpenAI-compatible)."""
        from rag.llm.backends import build_llm

        # One per LLM setting, whatever the collection: the page asks of several with one model.
        key = self.settings.model_dump_json(exclude={"store"})
        return shared("llm", key, lambda: build_llm(self.settings))

    def writable_store(self) -> Store:
        """The store, its collection created first when it does not exist yet (what an ingest writes to)."""
        if "store" not in self.__dict__:
            from rag.store.chroma import Store

            Store(self.settings, create=True)  # the shared store below then opens the collection it made
        return self.store

    def with_collection(self, name: str) -> Services:
        """These services for collection ``name``: the same encoder and LLM (a test's scripted one too)."""
        other = Services(self.settings.updated(store={"collection": name}))
        for part in ("embed_model", "backend"):
            if part in self.__dict__:
                other.__dict__[part] = self.__dict__[part]
        return other

    @cached_property
    def embedded_backend(self) -> BackendLLM:
        """The embedded model, which ``auto`` mode falls back to when Ollama fails mid-answer."""
        from rag.llm.backends import build_llm

        settings = self.settings.updated(llm={"backend": "embedded"})
        return shared("llm", settings.model_dump_json(exclude={"store"}), lambda: build_llm(settings))

    def retriever(self, where: dict[str, Any] | None = None) -> HybridRetriever:
        """The hybrid (dense + BM25) retriever over this store, with this encoder; ``where`` filters
        both sides before they rank (a Chroma filter, e.g. ``rag.store.filters.Filters.where()``)."""
        from rag.retrieve import HybridRetriever

        return HybridRetriever.over(self.store, self.embed_model, self.settings.retrieval, where)


_CACHE: dict[tuple[str, str], Any] = {}
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_CACHE_LOCK = threading.Lock()
# Kinds that hold nothing but what files and settings determine; reset_services keeps them
# (reloading MiniLM or a GGUF model per test would cost seconds each, and change nothing).
_MODELS = ("encoder", "weights")


def shared(kind: str, key: str, build: Callable[[], T]) -> T:
    """The process-wide ``kind`` object for ``key``, built by ``build()`` on first request.

    One lock per key: loading a model takes seconds and must not hold up other parts.
    """
    slot = (kind, key)
    with _CACHE_LOCK:
        if slot in _CACHE:
            return _CACHE[slot]  # type: ignore[no-any-return]
        lock = _LOCKS.setdefault(slot, threading.Lock())
    with lock:
        if slot not in _CACHE:
            value = build()
            with _CACHE_LOCK:
                _CACHE[slot] = value
        return _CACHE[slot]  # type: ignore[no-any-return]


def get_services(settings: Settings) -> Services:
    """The shared services for these settings, created on first request (for the edges)."""
    return shared("services", settings.cache_key(), lambda: Services(settings))


def reset_services() -> None:
    """Forget every service and store (tests use this between data directories); loaded models stay."""
    with _CACHE_LOCK:
        for slot in [s for s in _CACHE if s[0] not in _MODELS]:
            del _CACHE[slot]
