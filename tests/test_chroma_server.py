"""papercite against a real Chroma server: the `chroma run` shipped with the chromadb package.

One server per module, on a free loopback port, with its own data directory. The
sample is ingested through it once; the tests then check the papers live in the
server (a separate client sees them), that a second papercite process with its own
data directory answers from the same server, and that a real answer cites the
expected paper. Nothing is mocked.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rag import StoreError, ask, retrieve
from rag.services import Services
from rag.settings import Settings, StoreSettings

STARTUP_TIMEOUT = 60.0  # seconds; the server answers in about one on an idle machine
QUESTION = "Which architecture mixes image tokens with a 2D wavelet transform, and why?"
TITLE = "WaveMix: A Resource-efficient Neural Network for Image Analysis"


@dataclass(frozen=True)
class ChromaServer:
    """A running `chroma run` and where it listens."""

    host: str
    port: int
    path: Path

    def settings(self, data_dir: Path) -> Settings:
        """papercite settings that use this server, with ``data_dir`` for everything local."""
        return Settings(data_dir=data_dir, store=StoreSettings(chroma_host=self.host, chroma_port=self.port))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chroma_executable() -> str:
    found = Path(sys.executable).with_name("chroma")
    if found.exists():
        return str(found)
    pytest.fail(f"No `chroma` executable next to {sys.executable}: install papercite into this environment")


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """Start `chroma run` on 127.0.0.1, wait for its heartbeat, and stop it afterwards."""
    path = tmp_path_factory.mktemp("chroma-server")
    host, port = "127.0.0.1", _free_port()
    log = path.parent / f"{path.name}.log"  # outside --path, so Chroma's files stay its own
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_chroma_executable(), "run", "--path", str(path), "--host", host, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`chroma run` exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                if httpx.get(f"http://{host}:{port}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"`chroma run` did not answer within {STARTUP_TIMEOUT:.0f} s:\n{log.read_text(errors='replace')}"
                )
            time.sleep(0.2)
        yield ChromaServer(host, port, path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server_store(chroma_server: ChromaServer, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The bundled sample ingested once into the server, through a papercite with its own data dir."""
    from ingest import ingest_path, sample_corpus

    settings = chroma_server.settings(tmp_path_factory.mktemp("papercite-a"))
    report = ingest_path(sample_corpus(), settings=settings, progress=False)
    assert len(report.added) == 84, report.summary()
    return settings


def test_ingest_stores_the_papers_in_the_server(server_store: Settings, chroma_server: ChromaServer) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    stats = Services(server_store).store.stats()
    assert stats.papers == 84
    assert stats.location == f"chroma server at 127.0.0.1:{chroma_server.port}"
    assert not (server_store.data_dir / "chroma").exists()  # no embedded store on the side
    assert (server_store.data_dir / "bm25" / "papers").is_dir()  # BM25 stays local

    other = chromadb.HttpClient(
        host=chroma_server.host, port=chroma_server.port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = other.get_collection("papers")
    assert collection.count() == stats.chunks
    assert collection.metadata["embedding_model"] == server_store.embedding.model


def test_reingest_through_the_server_writes_nothing(server_store: Settings) -> None:
    from ingest import ingest_path, sample_corpus

    report = ingest_path(sample_corpus(), settings=server_store, progress=False)
    assert (len(report.added), len(report.updated), len(report.unchanged)) == (0, 0, 84), report.summary()
    assert report.chunks_written == 0


def test_a_second_process_with_its_own_data_dir_builds_bm25_from_the_server(
    server_store: Settings, chroma_server: ChromaServer, tmp_path: Path
) -> None:
    # The autouse fixture has forgotten every loaded service, as a fresh process starts.
    settings = chroma_server.settings(tmp_path / "papercite-b")
    sources = retrieve(QUESTION, settings=settings)
    assert sources[0].title == TITLE
    store = Services(settings).store
    bm25 = store.bm25()
    assert bm25 is not None and len(bm25.corpus) == store.collection.count()


def test_bm25_follows_papers_another_process_adds(
    chroma_server: ChromaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import rag.store.chroma
    from ingest import ingest_path

    monkeypatch.setattr(rag.store.chroma, "_RECOUNT_SECONDS", 0.0)  # recount at once rather than within 5 s

    def settings(name: str) -> Settings:  # a collection of its own, so the sample's stays as it is
        base = chroma_server.settings(tmp_path / name)
        return base.model_copy(update={"store": base.store.model_copy(update={"collection": "followed"})})

    def write(name: str, titles: list[str]) -> Path:
        path = tmp_path / name
        rows = [{"title": t, "abstract": f"{t} is studied here with a short abstract."} for t in titles]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    writer, reader = settings("writer"), settings("reader")
    ingest_path(write("one.jsonl", ["Zebrafish fin regrowth", "Glacier melt models"]), settings=writer, progress=False)
    reader_store = Services(reader).store

    def reader_bm25_titles() -> set[str]:
        bm25 = reader_store.bm25()
        return {c["title"] for c in bm25.corpus} if bm25 else set()

    assert reader_bm25_titles() == {"Zebrafish fin regrowth", "Glacier melt models"}
    ingest_path(write("two.jsonl", ["Sourdough starter microbiomes"]), settings=writer, progress=False)
    assert retrieve("sourdough starter", settings=reader)[0].title == "Sourdough starter microbiomes"
    assert reader_bm25_titles() == {"Zebrafish fin regrowth", "Glacier melt models", "Sourdough starter microbiomes"}


def test_an_abstract_another_process_replaced_is_read_as_it_is_now(chroma_server: ChromaServer, tmp_path: Path) -> None:
    import json

    from ingest import ingest_path

    def settings(name: str) -> Settings:
        base = chroma_server.settings(tmp_path / name)
        return base.model_copy(update={"store": base.store.model_copy(update={"collection": "replaced"})})

    def write(name: str, abstract: str) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"title": "Zebrafish fin regrowth", "abstract": abstract}) + "\n")
        return path

    writer, reader = settings("writer"), settings("reader")
    ingest_path(write("old.jsonl", "Fins regrow in two weeks after amputation."), settings=writer, progress=False)
    assert "two weeks" in retrieve("zebrafish fin regrowth", settings=reader)[0].passages[0]  # reader loads its BM25
    report = ingest_path(
        write("new.jsonl", "Fins regrow in nine days when the water is warm."), settings=writer, progress=False
    )
    assert report.updated  # same paper, same chunk ids, new text
    assert "nine days" in retrieve("zebrafish fin regrowth", settings=reader)[0].passages[0]


@pytest.mark.llm
def test_embedded_answer_from_the_server_cites_the_expected_paper(server_store: Settings, sample_store: Path) -> None:
    # The model file the other LLM tests joined, rather than 1.1 GB joined again.
    llm = server_store.llm.model_copy(update={"backend": "embedded", "models_dir": sample_store / "models"})
    settings = server_store.model_copy(update={"llm": llm})
    answer = ask(QUESTION, settings=settings)
    assert not answer.abstained, answer.text
    assert TITLE in answer.cited_titles(), (answer.text, answer.cited_titles())
    retrieved = {s.paper_id for s in answer.sources}
    assert all(c.paper_id in retrieved for c in answer.citations)


def test_an_unreachable_server_is_one_clear_store_error(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there once the probe socket is closed
    settings = Settings(data_dir=tmp_path, store=StoreSettings(chroma_host="127.0.0.1", chroma_port=port))
    with pytest.raises(StoreError) as caught:
        Services(settings).store  # noqa: B018 - opening the store is what fails
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "chroma run" in message and "PAPERCITE_STORE__CHROMA_HOST" in message
    assert "Traceback" not in message and "\n" not in message
