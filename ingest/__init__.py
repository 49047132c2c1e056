"""Reading paper files into the store.

Example::

    from ingest import ingest_path

    report = ingest_path("my-library.bib")
    print(report.summary())
"""

from pathlib import Path

from ingest.papers import Paper, Problem, ReadResult, paper_id
from ingest.pipeline import IngestReport, ingest_papers, ingest_path
from ingest.readers import read_papers

__all__ = [
    "IngestReport",
    "Paper",
    "Problem",
    "ReadResult",
    "ingest_papers",
    "ingest_path",
    "paper_id",
    "read_papers",
    "sample_corpus",
]


def sample_corpus() -> Path:
    """Path of the bundled sample: a saved page of 84 trending ML/systems papers."""
    packaged = Path(__file__).parent / "_sample" / "trending-papers.txt"  # in a wheel
    return packaged if packaged.exists() else Path(__file__).parent.parent / "data" / "trending-papers.txt"
