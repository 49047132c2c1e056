"""The language model: each backend as a llama-index ``LLM`` (:mod:`rag.llm.backends`), the
embedded llama.cpp model and its runtime, Ollama with log-probabilities, and the saved paper
prefixes the embedded model reuses.

Imports only :mod:`rag.errors` and :mod:`rag.settings` from above it.
"""
