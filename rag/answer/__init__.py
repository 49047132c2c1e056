"""The answer: :func:`rag.answer.ask.ask` and ``ask_stream`` retrieve, then either run the
one-prompt steps (:mod:`rag.answer.steps`) or read each paper on its own
(:mod:`rag.answer.per_paper`); every sentence shown is checked against its cited abstract
(:mod:`rag.answer.verify`). The thresholds and word lists live in :mod:`rag.answer.policy`.

Imports the store, the model, retrieval and services; none of them imports this.
"""
