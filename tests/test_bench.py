"""The bench commands run and print their tables (the figures themselves are never asserted: tests do not time)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from click.testing import CliRunner

from ui.cli import cli


def _corpus(tmp_path: Path, n: int) -> Path:
    from ingest import sample_corpus
    from ingest.readers import read_papers

    path = tmp_path / "scale.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for paper in read_papers(sample_corpus()).papers[:n]:
            f.write(json.dumps({"title": paper.title, "abstract": paper.abstract}) + "\n")
    return path


def test_bench_ingest_prints_every_case_against_the_bound_and_the_plain_pipeline(tmp_path: Path) -> None:
    corpus, cases = _corpus(tmp_path, 12), "papercite,plain,encoder"
    args = ["bench", "ingest", "--corpus", str(corpus), "--sizes", "10", "--repeats", "1", "--cases", cases]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert {"papercite", "plain", "encoder"} <= set(rows)
    assert rows["plain"].split("|")[2].strip() == "10"  # the same 10 abstracts in every case
    assert rows["papercite"].split("|")[3].strip() == rows["encoder"].split("|")[3].strip()  # same chunks
    assert rows["plain"].split("|")[7].strip().endswith("x")  # papercite's ratio to it


def test_bench_ingest_names_a_missing_corpus(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "ingest", "--corpus", str(tmp_path / "nope.jsonl.gz")])
    assert result.exit_code == 3 and "nope.jsonl.gz" in result.stderr


def test_bench_ingest_interleaves_the_runs_of_its_cases(tmp_path: Path, monkeypatch: object) -> None:
    import evals.bench

    order: list[str] = []

    def run_case(case: str, papers: Path, data_dir: Path) -> dict[str, float]:
        order.append(case)
        return {"seconds": 1.0, "chunks": 3, "peak_mb": 1.0}

    monkeypatch.setattr(evals.bench, "_run_case", run_case)  # type: ignore[attr-defined]
    results = evals.bench.bench_ingest(
        _corpus(tmp_path, 4), [4], repeats=2, cases=["papercite", "encoder"], echo=lambda _m: None
    )
    assert order == ["papercite", "encoder", "papercite", "encoder"]  # load falls on both alike
    assert [(r.case, r.runs) for r in results[4]] == [("papercite", 2), ("encoder", 2)]


def test_bench_encoders_prints_speed_closeness_and_scifact_ndcg(tmp_path: Path) -> None:
    scifact = tmp_path / "scifact"
    scifact.mkdir()
    (scifact / "corpus.csv").write_text(
        "doc_id,title,abstract,structured\n"
        "1,Wavelet Token Mixing,\"['A 2D wavelet transform mixes image tokens.']\",False\n"
        "2,Sparse Experts,\"['We route tokens to a few experts.']\",False\n"
    )
    (scifact / "claims_train.csv").write_text(
        "id,claim,evidence_doc_id,evidence_label,evidence_sentences,cited_doc_ids\n"
        "7,Wavelets can mix image tokens.,1,SUPPORT,[0],[1]\n"
    )
    args = ["bench", "encoders", "--corpus", str(_corpus(tmp_path, 3)), "--abstracts", "3", "--repeats", "1"]
    result = CliRunner().invoke(cli, [*args, "--cases", "torch-fp32", "--scifact", str(scifact)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("| torch-fp32"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[4] == "1.00x" and cells[5] == "1.0000" and cells[6] == "1.000"  # the one gold paper ranks first
    unknown = CliRunner().invoke(cli, [*args, "--cases", "torch-fp64"])
    assert unknown.exit_code == 3 and "torch-fp64" in unknown.stderr


def test_bench_retrieve_times_the_sample_and_a_scale_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "retrieve", "--corpus", str(_corpus(tmp_path, 30)), "--repeats", "1"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| sample", "| scale"))]
    assert [r.split("|")[2].strip() for r in rows] == ["84", "30"]


def test_grown_store_reaches_its_size_with_distinct_papers_and_a_matching_bm25(tmp_path: Path) -> None:
    from evals.bench import grow_store, scale_settings
    from rag.retrieve import retrieve
    from rag.services import Services
    from rag.settings import Settings

    base = scale_settings(Settings(data_dir=tmp_path / "data"), _corpus(tmp_path, 20), echo=lambda _m: None)
    grow_store(base, 100, echo=lambda _m: None)  # as if a growth to 150 was interrupted
    grown = grow_store(base, 150, echo=lambda _m: None)
    store = Services(grown).store
    assert store.collection.count() == 150
    assert store.stats().papers > 20  # copies are papers of their own
    assert store.bm25() is not None and int(store.bm25().bm25.scores["num_docs"]) == 150
    # Each copy is a chunk of its own in BM25 too, so the hybrid fusion never merges copies.
    assert {d["node_id"] for d in store.bm25().corpus} == set(store.collection.get(include=[])["ids"])
    assert retrieve("wavelet transform for image tokens", settings=grown)


def test_bench_bm25_builds_the_index_at_each_size_and_prints_a_table(tmp_path: Path) -> None:
    from evals.bench import scale_settings
    from rag.settings import Settings

    base = scale_settings(Settings(data_dir=tmp_path / "data"), _corpus(tmp_path, 20), echo=lambda _m: None)
    result = CliRunner().invoke(cli, ["bench", "bm25", "--source", str(base.data_dir), "--sizes", "120,60"])
    assert result.exit_code == 0, result.output
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r[1].strip() for r in rows] == ["60", "120"]  # each size built, smallest first
    assert all(float(r[2]) >= 0 and float(r[4].replace(",", "")) > 0 for r in rows)
