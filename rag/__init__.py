"""papercite's question answering: cited answers over paper abstracts.

from rag import ask
answer = ask("Which architecture mixes image tokens with a 2D wavelet transform?")
print(answer.text)
for c in answer.citations:
    print(c.number, c.title)
"""

from rag.answer.ask import ask, ask_stream
from rag.errors import (
    BadInput,
    EmptyQuestion,
    IndexEmpty,
    LLMUnavailable,
    NoMatch,
    PaperciteError,
    StoreError,
    UnknownCollection,
)
from rag.export import export
from rag.retrieve import retrieve
from rag.settings import Settings
from rag.similar import similar
from rag.store.filters import Filters
from rag.table import Cell, Column, Row, Table, TablePlan, table, table_stream
from rag.types import Answer, Citation, PaperReading, Reading, Source, Timings

__all__ = [
    "Answer",
    "BadInput",
    "Cell",
    "Citation",
    "Column",
    "EmptyQuestion",
    "Filters",
    "IndexEmpty",
    "LLMUnavailable",
    "NoMatch",
    "PaperReading",
    "PaperciteError",
    "Reading",
    "Row",
    "Settings",
    "Source",
    "StoreError",
    "Table",
    "TablePlan",
    "Timings",
    "UnknownCollection",
    "ask",
    "ask_stream",
    "export",
    "retrieve",
    "similar",
    "table",
    "table_stream",
]
