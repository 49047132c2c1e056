"""``papercite bench``: ingest throughput, retrieval latency and answer latency, as tables.

Ingest is measured here, retrieval in :mod:`evals.bench_retrieve`, answers and serving
in :mod:`evals.bench_answer`; all their entry points are importable from here.

Speed is measured in these modules and only there; tests never time anything. Each ingest case
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
- ``encoder``: ``SentenceTransformer.encode`` alone over papercite's chunk texts, in the
  precision ``auto`` picks here (the one ``papercite`` runs in), as a user calls it.
  ``SentenceTransformer.encode`` sorts its texts by characters before batching; papercite's
  ingest sorts them by word pieces, which pads less (chunks are cut by word pieces);
- ``encoder-pieces``: the same encoder fed papercite's own batches (the chunk texts sorted
  by word pieces, ``batch_size`` at a time): the physical bound of papercite's ingest;
- ``encoder-<dtype>``: the same in a forced precision.

The model is loaded before the clock starts in every case: load time is a constant,
not throughput. Runs are interleaved (run 1 of every case, then run 2, ...), so load
from other processes on the machine falls on every case alike and the ratios stay fair.
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

from evals.bench_answer import bench_answers, bench_cold_ask, bench_concurrency, bench_serve_memory, load_page
from evals.bench_retrieve import bench_retrieval, grow_store, scale_settings
from rag.errors import BadInput

__all__ = [
    "IngestRow",
    "bench_answers",
    "bench_cold_ask",
    "bench_concurrency",
    "bench_ingest",
    "bench_retrieval",
    "bench_serve_memory",
    "grow_store",
    "ingest_table",
    "load_page",
    "scale_settings",
    "subset",
]

INGEST_CASES = (
    "papercite",
    "papercite-fp32",
    "plain",
    "encoder",
    "encoder-pieces",
    "encoder-bfloat16",
    "encoder-float32",
)


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
            runs: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
            for i in range(repeats):
                for case in cases:
                    runs[case].append(_run_case(case, papers, Path(tmp) / f"{case}-{n}-{i}"))
                    echo(f"  {n:>6} abstracts  {case:<17} run {i + 1}/{repeats}: {runs[case][-1]['seconds']:.1f} s")
            rows = [_median_row(case, n, case_runs) for case, case_runs in runs.items()]
            results[n] = rows
    return results


def _median_row(case: str, abstracts: int, runs: Sequence[dict[str, float]]) -> IngestRow:
    return IngestRow(
        case,
        abstracts,
        int(statistics.median(r["chunks"] for r in runs)),
        statistics.median(r["seconds"] for r in runs),
        statistics.median(r["peak_mb"] for r in runs),
        len(runs),
    )


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
        lines.append(
            f"| {r.case} | {r.abstracts:,} | {r.chunks:,} | {r.seconds:.1f} | {r.per_second:.1f} | "
            f"{r.peak_mb:,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def _run_case(case: str, papers: Path, data_dir: Path) -> dict[str, float]:
    env = {**os.environ, "PAPERCITE_DATA_DIR": str(data_dir), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "evals.bench", "case", case, str(papers)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"bench case {case} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- one case, in its own process ---------------------------------------------------


def _case(case: str, papers_file: Path) -> dict[str, float]:
    from rag.settings import EmbeddingSettings, Settings  # per case: its process's peak RSS is measured

    forced = {"papercite-fp32": "float32", "encoder-float32": "float32", "encoder-bfloat16": "bfloat16"}
    precision = forced.get(case, "auto")
    settings = Settings(embedding=EmbeddingSettings(precision=precision))
    if case.startswith("papercite"):
        from ingest.pipeline import ingest_path  # per case: its process's peak RSS is measured
        from rag.services import Services  # per case: its process's peak RSS is measured

        services = Services(settings)
        services.store  # noqa: B018 - load before the clock starts
        services.embed_model.get_text_embedding_batch(["warm up"] * 8)  # as the encoder cases do
        started = time.perf_counter()
        report = ingest_path(papers_file, settings=settings, progress=False)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "chunks": report.chunks_written}
    if case == "plain":
        return _plain_llamaindex(papers_file, settings)
    return _bare_encoder(papers_file, settings, by_pieces=case == "encoder-pieces")


def _plain_llamaindex(papers_file: Path, settings: object) -> dict[str, float]:
    import chromadb  # per case: its process's peak RSS is measured
    from chromadb.config import Settings as ChromaSettings  # per case: its process's peak RSS is measured
    from llama_index.core import Document, StorageContext, VectorStoreIndex  # per case, as above
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # per case: its process's peak RSS is measured
    from llama_index.vector_stores.chroma import ChromaVectorStore  # per case: its process's peak RSS is measured

    from rag.embedding import resolve_model_path  # per case: its process's peak RSS is measured

    model_path = resolve_model_path(settings.embedding.model)  # type: ignore[attr-defined]
    embed_model = HuggingFaceEmbedding(model_name=model_path)
    client = chromadb.PersistentClient(
        path=str(settings.data_dir / "plain"),  # type: ignore[attr-defined]
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    started = time.perf_counter()
    records = [json.loads(line) for line in papers_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    documents = [Document(text=r["abstract"], metadata={"title": r["title"]}) for r in records]
    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("plain"))
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "chunks": len(index.index_struct.nodes_dict) or store._collection.count()}


def _bare_encoder(papers_file: Path, settings: object, *, by_pieces: bool = False) -> dict[str, float]:
    from llama_index.core.schema import MetadataMode  # per case: its process's peak RSS is measured

    from ingest.pipeline import chunk_papers  # per case: its process's peak RSS is measured
    from ingest.readers import read_papers  # per case: its process's peak RSS is measured
    from rag.embedding import word_pieces  # per case: its process's peak RSS is measured
    from rag.services import Services  # per case: its process's peak RSS is measured

    services = Services(settings)  # type: ignore[arg-type]
    nodes, _ = chunk_papers(read_papers(papers_file).papers, services)
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    conf = services.settings.embedding
    # The very SentenceTransformer papercite loads (same dtype), called directly.
    model = services.embed_model._model  # type: ignore[attr-defined]
    model.encode(texts[:8])  # first call sets up kernels
    started = time.perf_counter()
    if not by_pieces:
        model.encode(texts, batch_size=conf.batch_size, normalize_embeddings=True)
        return {"seconds": time.perf_counter() - started, "chunks": len(texts)}
    # As ingest batches them: counted and sorted on the clock, as ingest does.
    count = word_pieces(services.embed_model)
    texts.sort(key=lambda text: len(count(text)), reverse=True)
    for start in range(0, len(texts), conf.batch_size):
        model.encode(texts[start : start + conf.batch_size], batch_size=conf.batch_size, normalize_embeddings=True)
    return {"seconds": time.perf_counter() - started, "chunks": len(texts)}


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "case":
        sys.exit("usage: python -m evals.bench case CASE PAPERS.jsonl (run by `papercite bench ingest`)")
    result = _case(sys.argv[2], Path(sys.argv[3]))
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
