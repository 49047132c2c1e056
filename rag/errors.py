"""Errors papercite raises for its users, and nothing else.

Every message is meant to be shown as-is: it names the bad value, what was
expected, and the fix. ``rag`` raises these; the edges (the CLI, the Gradio
page) turn them into an exit code or a ``gr.Error`` and never print a traceback
for them.

    PaperciteError
    ├── BadInput            a file, record or setting papercite cannot use
    │   ├── EmptyQuestion   the question is empty or only whitespace
    │   ├── NoMatch         a filter no paper of the collection passes
    │   └── UnknownCollection  no collection has the name given
    ├── IndexEmpty          nothing has been ingested into the store yet
    ├── StoreError          the store cannot be opened or is inconsistent
    │   └── StoreBusy       another ingest is writing to the same data directory
    └── LLMUnavailable      the configured LLM backend cannot answer
"""

from __future__ import annotations

__all__ = [
    "BadInput",
    "EmptyQuestion",
    "IndexEmpty",
    "LLMUnavailable",
    "NoMatch",
    "PaperciteError",
    "StoreBusy",
    "StoreError",
    "UnknownCollection",
]


class PaperciteError(Exception):
    """Base of every error meant for the user; its message is shown as-is."""


class BadInput(PaperciteError):
    """A file, record, question or setting that papercite cannot use."""


class EmptyQuestion(BadInput):
    """The question was empty or only whitespace."""


class NoMatch(BadInput):
    """No paper of the collection passes the filter given (papercite never falls back to no filter)."""


class UnknownCollection(BadInput):
    """No collection of the data directory (or Chroma server) has the name given."""


class IndexEmpty(PaperciteError):
    """The store holds no papers, so there is nothing to answer from."""


class StoreError(PaperciteError):
    """The store cannot be opened, or what it holds does not match the settings."""


class StoreBusy(StoreError):
    """Another ingest is writing to the same data directory."""


class LLMUnavailable(PaperciteError):
    """The configured LLM backend cannot be reached or cannot produce an answer."""
