"""``papercite bench retrieve``: latency of hybrid ``retrieve()`` on stores of growing size.

The stores are the one being measured (any settings), the scale corpus ingested once
into a data directory of its own (:func:`scale_settings`), and that store grown to a
given number of chunks by noisy copies (:func:`grow_store`). :func:`bench_bm25_build`
times the BM25 build of a store in a process of its own, so its peak memory is the build's.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from evals.metrics import percentile
from ingest.pipeline import ingest_path
from rag.errors import BadInput
from rag.retrieve import retrieve_timed
from rag.services import Services
from rag.settings import Settings, StoreSettings

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

    from rag.store.chroma import Store

__all__ = ["bench_bm25_build", "bench_bm25_growth", "bench_retrieval", "grow_store", "scale_settings"]


def scale_settings(base: Settings, corpus: Path, echo: Callable[[str], None] = print) -> Settings:
    """Settings for the scale corpus's own store under ``<data_dir>/bench/scale``, ingested once (idempotent)."""

    if not corpus.is_file():
        raise BadInput(f"No corpus at {corpus}: pass the path of abstracts.jsonl.gz.")
    settings = base.model_copy(update={"data_dir": base.data_dir / "bench" / "scale"})
    echo(ingest_path(corpus, settings=settings).summary())
    return settings


def grow_store(settings: Settings, target_chunks: int, echo: Callable[[str], None] = print) -> Settings:
    """A store of ``target_chunks`` chunks grown from ``settings``' store (see :func:`_grow`)."""
    return _grow(settings, target_chunks, echo)[0]


def _grow(
    settings: Settings, target_chunks: int, echo: Callable[[str], None] = print
) -> tuple[Settings, dict[str, float] | None]:
    """A store of ``target_chunks`` chunks grown from ``settings``' store, under ``<data_dir>/bench/grown``.

    Real chunks are copied until the target is reached. Copy c of a chunk keeps its text
    (so BM25 sees the corpus's real vocabulary, each word c+1 times as often) and gets
    the original vector plus Gaussian noise, renormalised to a cosine of about 0.9 with
    it, so the HNSW graph holds distinct points spread as the real ones are. Each copy
    is a distinct chunk (``<chunk id>~c``) of a distinct paper (``paper_id~c``), in
    Chroma and in the node each stores. The BM25 index is then built page by page in a
    process of its own (:func:`bench_bm25_build`), which reports its time and peak memory.
    Reused when already grown; an interrupted growth resumes at the copy it stopped in.
    Returns the grown store's settings and its BM25 build (None when nothing was grown).
    """

    grown = settings.model_copy(update={"data_dir": settings.data_dir.parent / "grown"})
    store = Services(grown).store
    if store.collection.count() >= target_chunks:
        return grown, None
    rows = _read_chunks(Services(settings).store)
    vectors = np.asarray(rows["embeddings"], dtype=np.float32)
    nodes = [metadata_dict_to_node(dict(m), text=t) for m, t in zip(rows["metadatas"], rows["documents"])]
    sigma = float(np.sqrt((1 / 0.9**2 - 1) / vectors.shape[1]))
    store.record_embedding_model(settings.embedding.model)
    # Resume an interrupted growth at the first copy not wholly written (copies are
    # written in order, each whole before the next; rewriting one is an upsert).
    copy = store.collection.count() // len(vectors)
    done = copy * len(vectors)
    while done < target_chunks:
        take = min(len(vectors), target_chunks - done)
        rng = np.random.default_rng(copy)  # the same noise for a copy whether or not growth was resumed
        noisy = vectors[:take] + (rng.normal(0, sigma, (take, vectors.shape[1])) if copy else 0)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        _write_copy(store, nodes[:take], rows["documents"][:take], noisy, copy)
        done += take
        copy += 1
        echo(f"  grown store: {done:,} chunks")
    build = bench_bm25_build(grown)
    echo(
        f"  BM25 over {build['chunks']:,} chunks built in {build['seconds']:.0f} s, peak RSS {build['peak_mb']:,.0f} MB"
    )
    return grown, build


def bench_bm25_build(settings: Settings) -> dict[str, float]:
    """Rebuild the BM25 index of ``settings``' store in a fresh process: chunks, seconds and peak RSS (MB).

    A process of its own, so the peak is the build's (reading Chroma page by page, tokenizing,
    scoring, saving) plus the imports', and no store or model loaded before counts.
    """
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evals.bench_retrieve",
            "bm25",
            str(settings.data_dir),
            settings.store.model_dump_json(),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the BM25 build at {settings.data_dir} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_bm25_growth(
    source: Settings, sizes: Sequence[int], echo: Callable[[str], None] = print
) -> list[dict[str, float]]:
    """The BM25 build's time and peak memory as ``source``'s store is grown to each of ``sizes`` chunks.

    Each size is grown by :func:`grow_store` (resuming the last), whose BM25 build, in a process of its
    own (:func:`bench_bm25_build`), is the row; a size already grown is built once here instead.
    Linear growth of the time with the chunks is what this shows.
    """
    rows = []
    for size in sorted(sizes):
        grown, build = _grow(source, size, echo=echo)
        rows.append(build or bench_bm25_build(grown))
    return rows


def _build_bm25_here(data_dir: Path, store_settings: str) -> dict[str, float]:
    """Rebuild the BM25 index of the store in ``data_dir`` (run by :func:`bench_bm25_build`)."""

    settings = Settings(data_dir=data_dir, store=StoreSettings.model_validate_json(store_settings))
    store = Services(settings).store
    started = time.perf_counter()
    store.rebuild_bm25()
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before loading what was built
    retriever = store.sparse.load()
    return {"chunks": len(retriever.chunk_ids) if retriever else 0, "seconds": seconds, "peak_mb": peak_mb}


def _read_chunks(store: Store) -> dict[str, list]:
    """Every chunk in ``store``: its ids, embeddings, documents and metadatas, in the store's order."""
    rows: dict[str, list] = {"ids": [], "embeddings": [], "documents": [], "metadatas": []}
    # In pages: one get() of a large store exceeds SQLite's limit on query variables.
    for page in store.pages(("embeddings", "documents", "metadatas")):
        for key, values in rows.items():
            values.extend(page[key])
    return rows


def _write_copy(store: Store, nodes: list[BaseNode], documents: list[str], vectors: np.ndarray, copy: int) -> None:
    """Upsert copy number ``copy`` of ``nodes`` (with their ``documents``) into ``store``, at ``vectors``."""

    # Each copy is a node of its own, id and paper id included, as an ingest would store it.
    copies = [
        node.model_copy(
            update={
                "id_": f"{node.node_id}~{copy}",
                "metadata": {**node.metadata, "paper_id": f"{node.metadata['paper_id']}~{copy}"},
            }
        )
        for node in nodes
    ]
    flat = store.vector_store.flat_metadata
    metas = [node_to_metadata_dict(c, remove_text=True, flat_metadata=flat) for c in copies]
    ids = [c.node_id for c in copies]
    for start in range(0, len(copies), 5000):
        end = start + 5000
        store.collection.upsert(
            ids=ids[start:end],
            embeddings=vectors[start:end],
            documents=documents[start:end],
            metadatas=metas[start:end],
        )


def bench_retrieval(settings: Settings, questions: Sequence[str], *, repeats: int = 3) -> dict[str, float]:
    """Latency of ``retrieve()`` (hybrid, warm store) over ``questions``, asked ``repeats`` times each."""

    services = Services(settings)
    store = services.store
    retrieve_timed(questions[0], services)  # load BM25, MiniLM and the HNSW index first
    times = [retrieve_timed(q, services)[1] for _ in range(repeats) for q in questions]
    stats = store.stats()
    return {
        "papers": stats.papers,
        "chunks": stats.chunks,
        "queries": len(times),
        "p50_ms": 1000 * percentile(times, 50),
        "p95_ms": 1000 * percentile(times, 95),
    }


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "bm25":
        sys.exit("usage: python -m evals.bench_retrieve bm25 DATA_DIR STORE_SETTINGS_JSON (run by bench_bm25_build)")
    print(json.dumps(_build_bm25_here(Path(sys.argv[2]), sys.argv[3])))
