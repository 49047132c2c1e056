"""The composed pipeline: store, encoder and LLM for one ``Settings``, built at the edge and passed in.

``Services`` holds the parts one ``Settings`` needs. Each part is built on first use
(MiniLM takes seconds to load and the embedded LLM more, and ``papercite ingest``
never needs an LLM), or passed in, so a test or a caller swaps one part by passing
another::

    services = Services(settings, llm=scripted)        # a test's LLM, the real store
    answer = rag.ask("...", services=services)

The CLI, the page and the evals each build theirs and pass it down; ``rag.ask``,
``rag.retrieve`` and ``ingest_papers`` build one when given none. A ``Services`` owns
its store: nothing it builds comes from a cache another ``Services`` fills, except the
weights of the encoder and of the embedded LLM (:mod:`rag.loaded`), which depend on
their files alone.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from rag.embedding import encoder
from rag.llm.backends import BackendLLM, build_llm
from rag.settings import Settings
from rag.store.chroma import Store

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import LLM

__all__ = ["Services"]


class Services:
    """Store, embedding model and LLM for one ``Settings``; each built on first use unless given."""

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
        self.settings = settings
        backend = BackendLLM.given(llm) if llm is not None else None
        for name, part in (("store", store), ("embed_model", embed_model), ("backend", backend)):
            if part is not None:
                self.__dict__[name] = part  # takes the place of the cached_property below

    @cached_property
    def store(self) -> Store:
        """The Chroma collection and its BM25 index (opening it fails on an unknown collection)."""
        return Store(self.settings)

    @cached_property
    def embed_model(self) -> BaseEmbedding:
        """The sentence-transformers model, through llama-index (its weights loaded once per process)."""
        return encoder(self.settings.embedding)

    @cached_property
    def backend(self) -> BackendLLM:
        """The LLM that writes answers (Ollama, embedded or OpenAI-compatible)."""
        return build_llm(self.settings)

    def writable_store(self) -> Store:
        """The store, its collection created first when it does not exist yet (what an ingest writes to)."""
        if "store" not in self.__dict__:
            self.__dict__["store"] = Store(self.settings, create=True)
        return self.store

    def with_collection(self, name: str) -> Services:
        """These services for collection ``name``: the same encoder and LLM (a test's scripted one too)."""
        return self._sharing(self.settings.updated(store={"collection": name}), "embed_model", "backend")

    def with_llm(self, settings: Settings) -> Services:
        """These services with the LLM ``settings`` name (a page's backend menu): the same store and encoder."""
        return self._sharing(settings, "store", "embed_model")

    def _sharing(self, settings: Settings, *parts: str) -> Services:
        """Services for ``settings`` that take these ``parts`` from this one, where this one has built them."""
        other = Services(settings)
        for part in parts:
            if part in self.__dict__:
                other.__dict__[part] = self.__dict__[part]
        return other

    @cached_property
    def embedded_backend(self) -> BackendLLM:
        """The embedded model, which ``auto`` mode falls back to when Ollama fails mid-answer."""
        return build_llm(self.settings.updated(llm={"backend": "embedded"}))
