"""The long-lived pieces one process shares: store, embedding model, LLM.

Loading MiniLM takes seconds and the embedded LLM more, so they are built once per
distinct ``Settings`` and reused by every question, ingest and page request. The LLM
is built only when an answer first needs one, so ``papercite ingest`` and
``papercite stats`` never load it.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from rag.settings import Settings

if TYPE_CHECKING:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from rag.llms import BackendLLM
    from rag.store import Store

__all__ = ["Services", "get_services", "reset_services"]


class Services:
    """Store, embedding model and LLM for one ``Settings``, each built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    @cached_property
    def store(self) -> Store:
        """The Chroma collection and BM25 index (one per data directory and collection,
        shared by settings that differ only in retrieval or LLM, e.g. a page's backend menu)."""
        from rag.store import Store

        key = f"{self.settings.data_dir}|{self.settings.store.model_dump_json()}"
        with _SERVICES_LOCK:
            if key not in _STORES:
                _STORES[key] = Store(self.settings)
            return _STORES[key]

    @cached_property
    def embed_model(self) -> HuggingFaceEmbedding:
        """The sentence-transformers model, through llama-index (one per model, process-wide)."""
        from rag.embedding import load_embed_model

        return load_embed_model(self.settings.embedding)

    @cached_property
    def backend(self) -> BackendLLM:
        """The LLM that writes answers (Ollama, embedded or OpenAI-compatible)."""
        from rag.llms import build_llm

        with self._lock:
            return build_llm(self.settings)


    @cached_property
    def embedded_backend(self) -> BackendLLM:
        """The embedded model, which ``auto`` mode falls back to when Ollama fails mid-answer."""
        from rag.llms import build_llm

        with self._lock:
            return build_llm(self.settings.model_copy(update={"llm": self.settings.llm.model_copy(update={"backend": "embedded"})}))


_SERVICES: dict[str, Services] = {}
_STORES: dict[str, Store] = {}
_SERVICES_LOCK = threading.Lock()


def get_services(settings: Settings) -> Services:
    """The shared services for these settings, created on first request."""
    key = settings.cache_key()
    with _SERVICES_LOCK:
        if key not in _SERVICES:
            _SERVICES[key] = Services(settings)
        return _SERVICES[key]


def reset_services() -> None:
    """Forget every loaded service (tests use this between data directories)."""
    with _SERVICES_LOCK:
        _SERVICES.clear()
        _STORES.clear()
