"""``papercite bench``: ingest throughput, retrieval latency and answer latency, as tables.

Speed is measured here and only here; tests never time anything. Each ingest case
runs in a fresh process (``python -m evals.bench case ...``) so that its peak memory
is its own and no model or store is warm from the case before. Every figure is the
median of ``repeats`` runs.

Ingest cases, all on the same abstracts and the same embedding model:

- ``papercite``: ``ingest_path`` end to end (read, chunk every word, embed, store in
  Chroma, rebuild BM25), with the encoder in the precision ``auto`` picks here;
- ``papercite-fp32``: the same with the encoder forced to float32 (what CPUs without
  native bfloat16 run);
- ``plain``: the LlamaIndex pipeline a user writes first:
  ``VectorStoreIndex.from_documents`` into Chroma with default settings (one chunk per
  abstract, which MiniLM truncates at 256 word pieces);
- ``encoder-<dtype>``: ``SentenceTransformer.encode`` alone over papercite's chunk
  texts, the physical bound.

The model is loaded before the clock starts in every case: load time is a constant,
not throughput.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.metrics import percentile
from rag.errors import BadInput
from rag.settings import Settings

__all__ = [
    "IngestRow",
    "bench_answers",
    "bench_cold_ask",
    "bench_concurrency",
    "bench_ingest",
    "bench_retrieval",
    "bench_serve_memory",
    "ingest_table",
    "subset",
]

INGEST_CASES = ("papercite", "papercite-fp32", "plain", "encoder-bfloat16", "encoder-float32")


@dataclass(frozen=True)
class IngestRow:
    """The median of one ingest case's runs."""

    case: str
    abstracts: int
    chunks: int
    seconds: float
    peak_mb: float
    runs: int

    @property
    def per_second(self) -> float:
        return self.abstracts / self.seconds if self.seconds else 0.0


def subset(corpus: Path, n: int | None, out: Path) -> int:
    """Write the first ``n`` records of a JSONL(.gz) corpus (all when None) to ``out``; return how many."""
    opener = gzip.open if corpus.suffix == ".gz" else open
    count = 0
    with opener(corpus, "rt", encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for line in src:
            if not line.strip():
                continue
            if n is not None and count >= n:
                break
            dst.write(line)
            count += 1
    return count


def bench_ingest(
    corpus: Path,
    sizes: Sequence[int | None],
    *,
    repeats: int = 3,
    cases: Sequence[str] = INGEST_CASES,
    echo: Callable[[str], None] = print,
) -> dict[int, list[IngestRow]]:
    """Run every ingest case ``repeats`` times at each size; return the median rows by size.

    Raises:
        BadInput: the corpus file does not exist, or a case is unknown.
    """
    if not corpus.is_file():
        raise BadInput(f"No corpus at {corpus}: pass the path of abstracts.jsonl.gz (JSONL with title and abstract).")
    unknown = set(cases) - set(INGEST_CASES)
    if unknown:
        raise BadInput(f"Unknown ingest case(s) {sorted(unknown)}: choose from {', '.join(INGEST_CASES)}.")
    results: dict[int, list[IngestRow]] = {}
    with tempfile.TemporaryDirectory(prefix="papercite-bench-") as tmp:
        for size in sizes:
            papers = Path(tmp) / f"papers-{size or 'all'}.jsonl"
            n = subset(corpus, size, papers)
            rows = []
            for case in cases:
                runs = []
                for i in range(repeats):
                    runs.append(_run_case(case, papers, Path(tmp) / f"{case}-{n}-{i}"))
                    echo(f"  {n:>6} abstracts  {case:<17} run {i + 1}/{repeats}: {runs[-1]['seconds']:.1f} s")
                rows.append(IngestRow(
                    case, n, int(statistics.median(r["chunks"] for r in runs)),
                    statistics.median(r["seconds"] for r in runs),
                    statistics.median(r["peak_mb"] for r in runs), len(runs),
                ))
            results[n] = rows
    return results


def ingest_table(rows: Sequence[IngestRow]) -> str:
    """A Markdown table of one size's rows, with papercite's ratios to the bound and to the plain pipeline."""
    by_case = {r.case: r for r in rows}
    lines = [
        "| case | abstracts | chunks | seconds | abstracts/s | peak RSS (MB) | papercite ÷ this |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ours = by_case.get("papercite")
    for r in rows:
        ratio = f"{ours.per_second / r.per_second:.2f}x" if ours and r.per_second and r is not ours else ""
        lines.append(f"| {r.case} | {r.abstracts:,} | {r.chunks:,} | {r.seconds:.1f} | {r.per_second:.1f} | "
                     f"{r.peak_mb:,.0f} | {ratio} |")
    return "\n".join(lines)


def _run_case(case: str, papers: Path, data_dir: Path) -> dict[str, float]:
    env = {**os.environ, "PAPERCITE_DATA_DIR": str(data_dir), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "evals.bench", "case", case, str(papers)],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent, check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"bench case {case} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- retrieval ------------------------------------------------------------------------

def scale_settings(base: Settings, corpus: Path, echo: Callable[[str], None] = print) -> Settings:
    """Settings for the scale corpus's own store under ``<data_dir>/bench/scale``, ingested once (idempotent)."""
    from ingest.pipeline import ingest_path

    if not corpus.is_file():
        raise BadInput(f"No corpus at {corpus}: pass the path of abstracts.jsonl.gz.")
    settings = base.model_copy(update={"data_dir": base.data_dir / "bench" / "scale"})
    echo(ingest_path(corpus, settings=settings).summary())
    return settings


def grow_store(settings: Settings, target_chunks: int, echo: Callable[[str], None] = print) -> Settings:
    """A store of ``target_chunks`` chunks grown from ``settings``' store, under ``<data_dir>/bench/grown``.

    Real chunks are copied until the target is reached. Copy c of a chunk keeps its text
    (so BM25 sees the corpus's real vocabulary, each word c+1 times as often) and gets
    the original vector plus Gaussian noise, renormalised to a cosine of about 0.9 with
    it, so the HNSW graph holds distinct points spread as the real ones are. Each copy
    is a distinct chunk (``<chunk id>~c``) of a distinct paper (``paper_id~c``), in
    Chroma and in the node each stores. Reused when already grown.
    """
    import numpy as np
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

    from rag.services import get_services

    grown = settings.model_copy(update={"data_dir": settings.data_dir.parent / "grown"})
    store = get_services(grown).store
    if store.collection.count() >= target_chunks:
        return grown
    source = get_services(settings).store.collection
    rows: dict[str, list] = {"ids": [], "embeddings": [], "documents": [], "metadatas": []}
    # In pages: one get() of a large store exceeds SQLite's limit on query variables.
    while (page := source.get(limit=5000, offset=len(rows["ids"]), include=["embeddings", "documents", "metadatas"]))["ids"]:
        for key, values in rows.items():
            values.extend(page[key])
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
        # Each copy is a node of its own, id and paper id included, as an ingest would store it.
        copies = [node.model_copy(update={"id_": f"{node.node_id}~{copy}",
                                          "metadata": {**node.metadata, "paper_id": f"{node.metadata['paper_id']}~{copy}"}})
                  for node in nodes[:take]]
        metas = [node_to_metadata_dict(c, remove_text=True, flat_metadata=store.vector_store.flat_metadata) for c in copies]
        ids = [c.node_id for c in copies]
        documents = rows["documents"][:take]
        for start in range(0, take, 5000):
            end = start + 5000
            store.collection.upsert(ids=ids[start:end], embeddings=noisy[start:end], documents=documents[start:end],
                                    metadatas=metas[start:end])
        done += take
        copy += 1
        echo(f"  grown store: {done:,} chunks")
    started = time.perf_counter()
    store.rebuild_bm25()
    echo(f"  BM25 over {done:,} chunks built in {time.perf_counter() - started:.0f} s")
    return grown


def bench_retrieval(settings: Settings, questions: Sequence[str], *, repeats: int = 3) -> dict[str, float]:
    """Latency of ``retrieve()`` (hybrid, warm store) over ``questions``, asked ``repeats`` times each."""
    from rag.retrieve import retrieve_timed
    from rag.services import get_services

    store = get_services(settings).store
    retrieve_timed(questions[0], settings)  # load BM25, MiniLM and the HNSW index first
    times = [retrieve_timed(q, settings)[1] for _ in range(repeats) for q in questions]
    stats = store.stats()
    return {"papers": stats.papers, "chunks": stats.chunks, "queries": len(times),
            "p50_ms": 1000 * percentile(times, 50), "p95_ms": 1000 * percentile(times, 95)}


# -- answers ---------------------------------------------------------------------------

def bench_answers(settings: Settings, questions: Sequence[str], echo: Callable[[str], None] = print) -> dict[str, float]:
    """First-token and total seconds over ``questions`` with the model loaded (as the page and eval run)."""
    from rag.answer import ask

    # Load and warm the model on a question not in the list (a repeated one would hit the prompt cache).
    ask("Which of these papers make neural networks cheaper to run?", settings=settings)
    first, total, prompt, abstained = [], [], [], 0
    for i, q in enumerate(questions, start=1):
        answer = ask(q, settings=settings)
        if answer.timings.first_token is None:  # abstained before generating: no model time to measure
            abstained += 1
        else:
            first.append(answer.timings.first_token)
            total.append(answer.timings.total)
            prompt.append(answer.prompt_tokens or 0)
        echo(f"  [{i}/{len(questions)}] {answer.timings.total:5.1f} s  {q[:60]}")
    return {"questions": len(questions), "generated": len(first), "abstained_early": abstained,
            "first_p50": percentile(first, 50), "first_p95": percentile(first, 95),
            "total_p50": percentile(total, 50), "total_p95": percentile(total, 95),
            "prompt_tokens_p50": percentile(prompt, 50)}


def bench_cold_ask(settings: Settings, question: str) -> dict[str, object]:
    """A ``papercite ask`` in a fresh process: wall time, peak memory, and heavy modules it imported."""
    probe = (
        "import json, resource, sys\n"
        "from ui.cli import cli\n"
        "try:\n    cli.main(['ask', sys.argv[1]], prog_name='papercite', standalone_mode=False)\n"
        "finally:\n"
        "    heavy = [m for m in ('gradio', 'matplotlib', 'playwright', 'evals', 'bibtexparser') if m in sys.modules]\n"
        "    print(json.dumps({'heavy': heavy, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    env = {**_process_env(settings), "PAPERCITE_LLM__BACKEND": settings.llm.backend}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe, question], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"cold ask failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, **result}


def bench_concurrency(settings: Settings, questions: Sequence[str], askers: int) -> dict[str, object]:
    """``askers`` threads each ask one question at once (in a fixed order, 50 ms apart).

    All must complete. "In order" means the model served them in the order they asked:
    the instants of their first answer tokens rise with their place in line. Questions
    that abstain before reaching the model finish at once and are left out of that check.
    """
    import threading

    from rag.answer import ask

    first_tokens: dict[int, float] = {}
    completed: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        time.sleep(0.05 * i)  # defines the order of asking
        asked = time.perf_counter()
        try:
            answer = ask(questions[i % len(questions)], settings=settings)
        except Exception as exc:  # reported in the table: a lost request is the failure measured here
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            completed.append(i)
            if answer.timings.first_token is not None:
                first_tokens[i] = asked + answer.timings.first_token

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(askers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    served = [first_tokens[i] for i in sorted(first_tokens)]
    return {"askers": askers, "completed": len(completed), "generated": len(served),
            "in_order": served == sorted(served), "seconds": seconds,
            "per_minute": 60 * len(completed) / seconds, "errors": errors[:3]}


def _process_env(settings: Settings) -> dict[str, str]:
    """Environment for a papercite child process on ``settings``' store and joined model file."""
    env = {**os.environ, "PAPERCITE_DATA_DIR": str(settings.data_dir)}
    if settings.llm.models_dir:
        env["PAPERCITE_LLM__MODELS_DIR"] = str(settings.llm.models_dir)
    return env


def bench_serve_memory(settings: Settings, questions: Sequence[str], timeout: float = 300.0) -> dict[str, float]:
    """Peak RSS of a real ``papercite serve`` (embedded model) after it has answered ``questions`` through /ask."""
    import socket

    from gradio_client import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**_process_env(settings), "PAPERCITE_LLM__BACKEND": "embedded"}
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # not listening yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("papercite serve did not start") from None
                time.sleep(1)
        for q in questions:
            client.predict(q, 5, api_name="/ask")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {"questions": len(questions), "peak_mb": int(fields["VmHWM"].split()[0]) / 1024,
                "rss_mb": int(fields["VmRSS"].split()[0]) / 1024}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def load_page(url: str, questions: Sequence[str], *, spacing: float = 0.05, timeout: float = 600.0) -> dict[str, object]:
    """Ask a running page ``len(questions)`` questions at once through ``/ask``, ``spacing`` s apart.

    Returns how many completed, the errors of those that did not, and each asker's
    wait (from asking to the full answer), p50/p95. Bounded: every job is given up
    after ``timeout`` seconds.
    """
    import threading

    from gradio_client import Client

    client = Client(url, verbose=False)
    waits: dict[int, float] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        time.sleep(spacing * i)  # the order of asking
        asked = time.perf_counter()
        try:
            client.submit(questions[i], 5, api_name="/ask").result(timeout=timeout)
        except Exception as exc:  # a lost or failed request is what this measures
            with lock:
                errors.append(f"{i}: {type(exc).__name__}: {exc}")
            return
        with lock:
            waits[i] = time.perf_counter() - asked

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + spacing * len(questions) + 10)
    client.close()
    times = list(waits.values())
    return {"askers": len(questions), "completed": len(waits), "errors": errors,
            "wait_p50": percentile(times, 50), "wait_p95": percentile(times, 95)}


# -- one case, in its own process ---------------------------------------------------

def _case(case: str, papers_file: Path) -> dict[str, float]:
    from rag.settings import EmbeddingSettings, Settings

    precision = "float32" if case in ("papercite-fp32", "encoder-float32") else (
        "bfloat16" if case == "encoder-bfloat16" else "auto")
    settings = Settings(embedding=EmbeddingSettings(precision=precision))
    if case.startswith("papercite"):
        from ingest.pipeline import ingest_path
        from rag.services import get_services

        services = get_services(settings)
        services.embed_model, services.store  # noqa: B018 - load before the clock starts
        started = time.perf_counter()
        report = ingest_path(papers_file, settings=settings, progress=False)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "chunks": report.chunks_written}
    if case == "plain":
        return _plain_llamaindex(papers_file, settings)
    return _bare_encoder(papers_file, settings)


def _plain_llamaindex(papers_file: Path, settings: object) -> dict[str, float]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from rag.embedding import resolve_model_path

    embed_model = HuggingFaceEmbedding(model_name=resolve_model_path(settings.embedding.model))  # type: ignore[attr-defined]
    client = chromadb.PersistentClient(path=str(settings.data_dir / "plain"),  # type: ignore[attr-defined]
                                       settings=ChromaSettings(anonymized_telemetry=False))
    started = time.perf_counter()
    records = [json.loads(line) for line in papers_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    documents = [Document(text=r["abstract"], metadata={"title": r["title"]}) for r in records]
    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("plain"))
    index = VectorStoreIndex.from_documents(documents, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=embed_model)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "chunks": len(index.index_struct.nodes_dict) or store._collection.count()}


def _bare_encoder(papers_file: Path, settings: object) -> dict[str, float]:
    from llama_index.core.schema import MetadataMode

    from ingest.pipeline import chunk_papers
    from ingest.readers import read_papers
    from rag.services import get_services

    nodes, _ = chunk_papers(read_papers(papers_file).papers, settings)  # type: ignore[arg-type]
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    conf = settings.embedding  # type: ignore[attr-defined]
    # The very SentenceTransformer papercite loads (same dtype), called directly.
    model = get_services(settings).embed_model._model  # type: ignore[arg-type]
    model.encode(texts[:8])  # first call sets up kernels
    started = time.perf_counter()
    model.encode(texts, batch_size=conf.batch_size, normalize_embeddings=True)
    return {"seconds": time.perf_counter() - started, "chunks": len(texts)}


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "case":
        sys.exit("usage: python -m evals.bench case CASE PAPERS.jsonl (run by `papercite bench ingest`)")
    result = _case(sys.argv[2], Path(sys.argv[3]))
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
