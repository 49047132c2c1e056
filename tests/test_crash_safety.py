"""An ingest killed mid-way, two ingests at once, and `papercite check` on what is left."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from ingest import ingest_path, sample_corpus
from ingest.readers import read_papers
from rag.answer.ask import ask
from rag.errors import StoreBusy
from rag.retrieve import retrieve
from rag.services import Services
from rag.settings import Settings
from rag.store.check import check_store

ROOT = Path(__file__).resolve().parent.parent
PROGRESS = re.compile(rb"(\d+)/(\d+) \[")


def _variants(path: Path, copies: int) -> Path:
    """``copies`` distinct versions of each bundled paper, as JSONL (enough chunks to kill an ingest mid-way)."""
    with path.open("w", encoding="utf-8") as f:
        for k in range(copies):
            for p in read_papers(sample_corpus()).papers:
                f.write(
                    json.dumps(
                        {
                            "title": f"{p.title} (variant {k})",
                            "abstract": f"{p.abstract} Variant {k} repeats this study.",
                        }
                    )
                    + "\n"
                )
    return path


def _ingest_process(papers: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PAPERCITE_DATA_DIR": str(data_dir), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "ingest", str(papers)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _cli(data_dir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``papercite ARGS`` in a fresh process on ``data_dir``."""
    env = {**os.environ, "PAPERCITE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "ui.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_for_progress(proc: subprocess.Popen[bytes], timeout: float = 240) -> tuple[int, int]:
    """Read the progress bar on stderr until some chunks are stored but not all; return (done, total)."""
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += proc.stderr.read() or b""
        done = [(int(a), int(b)) for a, b in PROGRESS.findall(seen)]
        if done and 0 < done[-1][0] < done[-1][1]:
            return done[-1]
        assert proc.poll() is None, f"ingest ended before it could be interrupted: {seen[-500:]!r}"
        time.sleep(0.05)
    raise AssertionError(f"no progress within {timeout} s: {seen[-500:]!r}")


def test_killed_ingest_leaves_a_store_that_answers_and_a_second_ingest_is_told_it_is_busy(
    tmp_path: Path, scripted: Any
) -> None:
    papers, data_dir = _variants(tmp_path / "variants.jsonl", 4), tmp_path / "data"
    first = _ingest_process(papers, data_dir)
    try:
        _done, total = _wait_for_progress(first)
        # A second ingest of the same directory while the first writes: refused, clearly, at once.
        second = _cli(data_dir, "ingest", str(papers), timeout=120)
        assert second.returncode == 6, second.stderr
        assert "Another ingest is writing" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()

    settings = Settings(data_dir=data_dir)
    store = Services(settings).store
    assert 0 < store.collection.count() < total
    interrupted = check_store(store, settings.embedding.model)
    assert interrupted.papers > 0 and not interrupted.ok  # BM25 was never built, some papers are partial
    # The store still answers from what it holds.
    question = "Which architecture mixes image tokens with a wavelet transform?"
    first = retrieve(question, settings=settings)[0].passages[0].split(". ")[0]
    scripted.enqueue(f"{first} [1].")  # a sentence the abstract supports, so verification keeps it
    answer = ask(question, settings=settings, llm=scripted)
    assert answer.sources and answer.citations

    rerun = _cli(data_dir, "ingest", str(papers), timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    check = _cli(data_dir, "check", timeout=300)
    assert check.returncode == 0 and "ok:" in check.stdout, check.stdout + check.stderr
    store = Services(Settings(data_dir=data_dir)).store
    result = check_store(store, settings.embedding.model)
    assert result.ok and result.papers == 4 * 84, result.problems
    ids = store.collection.get(include=[])["ids"]
    assert len(ids) == len(set(ids)) == result.chunks
    assert {d["node_id"] for d in store.bm25().corpus} == set(ids)  # BM25 and Chroma hold the same chunks


def test_an_ingest_waits_for_no_one_and_writes_nothing_while_another_holds_the_store(tmp_path: Path) -> None:
    settings = Settings()
    path = tmp_path / "one.jsonl"
    path.write_text(
        json.dumps({"title": "Wavelet Token Mixing", "abstract": "A 2D wavelet transform mixes tokens."}) + "\n"
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(settings.data_dir / "ingest.lock"):
        try:
            ingest_path(path, settings=settings, progress=False)
        except StoreBusy as exc:
            assert "Another ingest is writing to the store at" in str(exc) and "nothing was written" in str(exc)
        else:
            raise AssertionError("an ingest ran while another held the store")
    assert Services(settings).store.collection.count() == 0
    assert ingest_path(path, settings=settings, progress=False).added  # free again once released


def test_check_names_each_problem_and_its_fix(tmp_path: Path) -> None:
    settings = Settings()
    path = tmp_path / "papers.jsonl"
    long = " ".join(f"Sentence {i} explains cache line {i} reuse." for i in range(120))
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"title": "A Very Long Abstract About Caches", "abstract": long},
                {"title": "Wavelet Token Mixing", "abstract": "A 2D wavelet transform mixes image tokens."},
            ]
        )
        + "\n"
    )
    ingest_path(path, settings=settings, progress=False)
    store = Services(settings).store
    assert check_store(store, settings.embedding.model).ok

    store.collection.delete(ids=[i for i in store.collection.get(include=[])["ids"] if i.endswith("#1")])
    result = check_store(store, settings.embedding.model)
    assert len(result.incomplete) == 1 and result.origins == ("papers.jsonl",)
    assert any("papers.jsonl" in p and "papercite ingest" in p for p in result.problems)
    assert any("BM25" in p for p in result.problems)  # it still holds the deleted chunk
    assert any("embedding model" in p for p in check_store(store, "some-other-model").problems)

    assert ingest_path(path, settings=settings, progress=False).updated  # the re-ingest completes the paper
    assert check_store(store, settings.embedding.model).ok


def test_an_ingest_killed_between_the_chroma_write_and_the_bm25_rebuild_is_noticed_and_healed(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from rag.store.chroma import Store

    settings = Settings()
    path = tmp_path / "papers.jsonl"
    old = {"title": "Wavelet Token Mixing", "abstract": "A 2D wavelet transform mixes image tokens in 12 layers."}
    path.write_text(json.dumps(old) + "\n")
    ingest_path(path, settings=settings, progress=False)
    # The same paper with a new abstract keeps its chunk ids: Chroma's chunk count does not change.
    path.write_text(json.dumps({**old, "abstract": "A 2D wavelet transform mixes image tokens in 40 layers."}) + "\n")

    def killed(self: Store) -> None:
        raise KeyboardInterrupt  # the process dies after Chroma is written, before BM25 is rebuilt

    monkeypatch.setattr(Store, "rebuild_bm25", killed)
    try:
        ingest_path(path, settings=settings, progress=False)
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    store = Services(settings).store
    check = check_store(store, settings.embedding.model)
    assert not check.ok and any("older version of 1 chunk" in p for p in check.problems), check.problems

    hits = store.bm25()  # the next question rebuilds the index that the mark says is behind
    assert hits is not None and hits.retrieve("40")  # the rebuilt index holds the new abstract's words
    assert check_store(store, settings.embedding.model).ok
    assert "40 layers" in retrieve("How many layers mix wavelet tokens?", settings=settings)[0].abstract


def test_a_question_s_rebuild_during_an_ingest_keeps_the_stale_mark(tmp_path: Path) -> None:
    settings = Settings()
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"title": "Wavelet Token Mixing", "abstract": "A 2D wavelet transform mixes tokens."}))
    ingest_path(path, settings=settings, progress=False)
    store = Services(settings).store
    store.sparse.mark_stale()  # as an ingest does before it writes to Chroma
    with FileLock(store.ingest_lock):  # ... and that ingest is still writing
        assert store.ingest_running()
        assert store.bm25() is not None and store.sparse.stale  # rebuilt for the question, still marked
    assert not store.ingest_running()
    assert store.bm25() is not None and not store.sparse.stale  # no ingest left: the rebuild settles it
