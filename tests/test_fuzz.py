"""Property-based tests: every reader, and ``ask``, on damaged and hostile input.

A reader must either keep the good records and report each bad one as
``file:line: reason``, or refuse the whole file with one ``BadInput`` line; it never
raises anything else, hangs, or returns a paper without a title or abstract.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import ingest_path
from ingest.readers import read_papers
from rag.answer.ask import ask
from rag.errors import BadInput
from rag.services import Services
from rag.settings import Settings
from rag.store.check import check_store

FUZZ = settings(
    max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=60)
record = st.fixed_dictionaries(
    {},
    optional={
        "title": words,
        "abstract": st.one_of(words, st.text(min_size=2000, max_size=20000)),
        "authors": st.lists(words, max_size=3),
        "year": st.one_of(st.integers(-5, 99999), words),
        "doi": words,
    },
)


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n"


def _csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["title", "abstract", "authors", "year", "doi"])
    writer.writeheader()
    for r in records:
        writer.writerow({k: "; ".join(v) if isinstance(v, list) else v for k, v in r.items()})
    return out.getvalue()


def _bibtex(records: list[dict[str, Any]]) -> str:
    def entry(i: int, r: dict[str, Any]) -> str:
        fields = ",\n".join(f"  {k} = {{{' and '.join(v) if isinstance(v, list) else v}}}" for k, v in r.items())
        return f"@article{{key{i},\n{fields}\n}}\n"

    return "\n".join(entry(i, r) for i, r in enumerate(records))


def _page(records: list[dict[str, Any]]) -> str:
    return "\n\n".join(f"{r.get('title', '')}\n\n{r.get('abstract', '')}" for r in records) + "\n"


WRITERS = {".jsonl": _jsonl, ".csv": _csv, ".bib": _bibtex, ".txt": _page}


@st.composite
def damaged_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """A file of one format, written from random records and then damaged."""
    suffix = draw(st.sampled_from(sorted(WRITERS)))
    data = WRITERS[suffix](draw(st.lists(record, max_size=6))).encode("utf-8")
    damage = draw(st.sampled_from(["none", "truncate", "bytes", "latin1", "utf16", "nul"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    elif damage == "latin1":
        data = data.decode("utf-8").encode("latin-1", errors="replace") + "é".encode("latin-1")
    elif damage == "utf16":
        data = data.decode("utf-8").encode("utf-16")
    elif damage == "nul":
        data += b"\x00"
    return suffix, data


def _read(tmp_path: Path, suffix: str, data: bytes) -> Any:
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(data)
    try:
        return read_papers(path)
    except BadInput as exc:
        message = str(exc)
        assert "\n" not in message and path.name in message, message
        return None


@FUZZ
@given(damaged_file())
def test_every_reader_keeps_good_records_and_names_bad_ones(tmp_path: Path, fuzzed: tuple[str, bytes]) -> None:
    suffix, data = fuzzed
    result = _read(tmp_path, suffix, data)
    if result is None:
        return  # refused whole, in one line naming the file
    for paper in result.papers:
        assert paper.title.strip() and paper.abstract.strip() and re.fullmatch(rf"fuzzed\{suffix}:\d+", paper.origin)
    for problem in result.problems:
        assert re.fullmatch(rf"fuzzed\{suffix}:\d+", problem.location), problem
        assert problem.reason and "\n" not in problem.reason


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged_file())
def test_a_damaged_file_ingests_whole_papers_only(tmp_path: Path, fuzzed: tuple[str, bytes]) -> None:
    suffix, data = fuzzed
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(data)
    conf = Settings()
    try:
        report = ingest_path(path, settings=conf, progress=False)
    except BadInput:
        return
    store = Services(conf).store
    check = check_store(store, conf.embedding.model)
    assert not check.incomplete, check.problems
    assert check.papers >= len(report.added)


questions = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300),
    st.sampled_from(
        [
            "",
            "   \n\t ",
            "\x00\x01\x1b[31m what?",
            "¿Qué mezcla los tokens con ondículas?",
            "小波变换如何混合图像标记？",
            "Какие модели сжимают кэш?",
            "🙂" * 50,
            "a" * 100_000,
        ]
    ),
)


@FUZZ
@given(questions)
def test_any_question_gets_an_answer_or_one_clear_error(sample_settings: Any, scripted: Any, question: str) -> None:
    scripted.enqueue("Found it [1].", "Found it [1].")
    try:
        answer = ask(question, settings=sample_settings, llm=scripted)
    except BadInput as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert answer.text.strip()
    numbers = {s.number for s in answer.sources}
    assert all(c.number in numbers for c in answer.citations)


@pytest.mark.parametrize("size", [100_000])
def test_a_huge_field_is_read_or_reported_not_hung(tmp_path: Path, size: int) -> None:
    path = tmp_path / "huge.jsonl"
    path.write_text(_jsonl([{"title": "T" * size, "abstract": "word " * size}, {"title": "Ok", "abstract": "Fine."}]))
    result = read_papers(path)
    assert [p.title for p in result.papers][-1] == "Ok"
