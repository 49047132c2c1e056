"""The store: the Chroma collection of chunks (:mod:`rag.store.chroma`), its BM25 side
(:mod:`rag.store.sparse`), the chunk record both read (:mod:`rag.store.chunks`), collection
names and management, filters, and the store's self-check.

Imports only :mod:`rag.errors` and :mod:`rag.settings` from above it; nothing here knows of
models or answers.
"""
