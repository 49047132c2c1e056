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

    from rag.llms import BackendLLM
    from rag.retrieve import HybridRetriever
    from rag.store import Store

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
        from rag.llms import BackendLLM

        self.settings = settings
        backend = BackendLLM.given(llm) if llm is not None else None
        for name, part in (("store", store), ("embed_model", embed_model), ("backend", backend)):
            if part is not None:
                self.__dict__[name] = part  # takes the place of the cached_property below

    @cached_property
    def store(self) -> Store:
        """The Chroma collection and its BM25 index (one per data directory and collection,
        shared by settings that differ only in retrieval or LLM, e.g. a page's backend menu)."""
        from rag.store import Store

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
        from rag.llms import build_llm

        return shared("llm", self.settings.cache_key(), lambda: build_llm(self.settings))

    @cached_property
    def embedded_backend(self) -> BackendLLM:
        """The embedded model, which ``auto`` mode falls back to when Ollama fails mid-answer."""
        from rag.llms import build_llm

        settings = self.settings.updated(llm={"backend": "embedded"})
        return shared("llm", settings.cache_key(), lambda: build_llm(settings))

    def retriever(self) -> HybridRetriever:
        """The hybrid (dense + BM25) retriever over this store, with this encoder."""
        from rag.retrieve import HybridRetriever

        return HybridRetriever.over(self.store, self.embed_model, self.settings.retrieval)


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
