"""Ingest into a real Chroma store with the real packaged MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest import ingest_path
from rag.errors import BadInput, StoreError
from rag.services import Services
from rag.settings import Settings
from rag.store.check import check_store
from rag.store.chroma import Store

PAPERS = [
    {
        "title": "Sparse Mixture of Experts for Tiny Devices",
        "abstract": "We route tokens to a few experts. " * 3,
        "authors": ["Ada Lovelace", "Alan Turing"],
        "year": 2024,
        "doi": "10.1234/moe.1",
    },
    {"title": "Wavelet Token Mixing", "abstract": "A 2D discrete wavelet transform mixes image tokens efficiently."},
    {
        "title": "A Very Long Abstract About Caches",
        "abstract": " ".join(f"Sentence {i} explains cache line {i} reuse." for i in range(120)),
    },
]


def _write(path: Path, records: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    path.write_text("\n".join([json.dumps(r) for r in records] + list(extra_lines)) + "\n")
    return path


def _chunks_of(settings: Settings, paper_id: str) -> list[dict]:
    rows = Services(settings).store.collection.get(where={"paper_id": paper_id}, include=["metadatas", "documents"])
    return [dict(m, text=d) for m, d in zip(rows["metadatas"], rows["documents"])]


def test_ingest_is_idempotent_and_reports_malformed_records(tmp_path: Path) -> None:
    settings = Settings()
    path = _write(tmp_path / "papers.jsonl", PAPERS, extra_lines=("{not json", json.dumps({"title": "No abstract"})))
    first = ingest_path(path, settings=settings, progress=False)
    assert len(first.added) == 3 and not first.updated
    assert [str(p).split(":")[:2] for p in first.skipped] == [["papers.jsonl", "4"], ["papers.jsonl", "5"]]
    stats = Services(settings).store.stats()
    assert stats.papers == 3 and stats.chunks == first.chunks_written

    second = ingest_path(path, settings=settings, progress=False)
    assert len(second.unchanged) == 3 and not second.added and not second.updated
    assert second.chunks_written == 0
    assert Services(settings).store.stats().chunks == stats.chunks


def test_changed_abstract_replaces_its_old_chunks(tmp_path: Path) -> None:
    settings = Settings()
    path = _write(tmp_path / "papers.jsonl", PAPERS)
    ingest_path(path, settings=settings, progress=False)
    changed = [dict(p) for p in PAPERS]
    changed[2]["abstract"] = "Now a short abstract about cache reuse."
    report = ingest_path(_write(path, changed), settings=settings, progress=False)
    assert len(report.updated) == 1 and len(report.unchanged) == 2
    chunks = _chunks_of(settings, report.updated[0])
    assert len(chunks) == 1 and chunks[0]["n_chunks"] == 1
    assert "Now a short abstract" in chunks[0]["text"]


def test_chunks_fit_the_encoder_and_carry_the_title(tmp_path: Path) -> None:
    settings = Settings()
    ingest_path(_write(tmp_path / "p.jsonl", PAPERS), settings=settings, progress=False)
    services = Services(settings)
    tokenizer = services.embed_model._model.tokenizer
    limit = services.embed_model._model.max_seq_length
    from llama_index.core.schema import MetadataMode

    nodes = list(services.store.iter_nodes())
    long_paper = [n for n in nodes if n.metadata["title"] == "A Very Long Abstract About Caches"]
    assert len(long_paper) > 1, "a long abstract must be split, not truncated"
    for node in nodes:
        embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
        assert node.metadata["title"] in embedded
        assert len(tokenizer(embedded)["input_ids"]) <= limit
        assert "paper_id" not in embedded and "content_hash" not in embedded
    # Every word of the long abstract is in some chunk.
    words = set(PAPERS[2]["abstract"].split())
    assert words <= set(" ".join(n.get_content() for n in long_paper).split())


def test_counting_a_long_abstract_prints_no_tokenizer_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_warning()  # as a user's Python session has it (the CLI quiets it)
    # transformers warns once per tokenizer: forget that an earlier test's ingest may have warned.
    Services(Settings()).embed_model._model.tokenizer.deprecation_warnings.clear()
    ingest_path(_write(tmp_path / "p.jsonl", PAPERS), settings=Settings(), progress=False)
    assert "Token indices sequence length" not in capfd.readouterr().err


def test_bm25_index_matches_the_store(tmp_path: Path) -> None:
    settings = Settings()
    ingest_path(_write(tmp_path / "p.jsonl", PAPERS), settings=settings, progress=False)
    store = Services(settings).store
    bm25 = store.bm25()
    assert bm25 is not None
    assert {c["node_id"] for c in bm25.corpus} == set(store.collection.get(include=[])["ids"])


def test_ids_are_stable_doi_first(tmp_path: Path) -> None:
    settings = Settings()
    report = ingest_path(_write(tmp_path / "p.jsonl", PAPERS), settings=settings, progress=False)
    assert "doi:10.1234/moe.1" in report.added


def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="missing.jsonl"):
        ingest_path(tmp_path / "missing.jsonl", progress=False)


def test_a_store_built_with_another_embedding_model_is_refused(tmp_path: Path) -> None:
    settings = Settings()
    ingest_path(_write(tmp_path / "p.jsonl", PAPERS[:1]), settings=settings, progress=False)
    Services(settings).store.collection.modify(metadata={"embedding_model": "some-other-model"})
    with pytest.raises(StoreError, match="re-ingest"):
        ingest_path(_write(tmp_path / "q.jsonl", PAPERS[1:2]), settings=settings, progress=False)
    assert Services(settings).store.stats().papers == 1  # nothing stored was lost


def test_encoder_precision_follows_the_cpu_not_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from rag.embedding import cpu_has_native_bf16, encoder_dtype

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not cpu_has_native_bf16() and encoder_dtype("auto") == "float32"  # a CPU without bf16 stays in fp32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert encoder_dtype("auto") == "bfloat16"
    assert encoder_dtype("float32") == "float32"  # an explicit setting wins


def test_bfloat16_and_float32_encoders_agree(tmp_path: Path) -> None:
    from rag.embedding import load_embed_model
    from rag.settings import EmbeddingSettings

    texts = ["A 2D wavelet transform mixes image tokens.", "Gradient noise helps train very deep networks."]
    fp32 = load_embed_model(EmbeddingSettings(precision="float32")).get_text_embedding_batch(texts)
    bf16 = load_embed_model(EmbeddingSettings(precision="bfloat16")).get_text_embedding_batch(texts)
    for a, b in zip(fp32, bf16):
        assert sum(x * y for x, y in zip(a, b)) > 0.99  # unit vectors: the dot product is the cosine


def test_chunks_read_by_id_are_chroma_s_current_text(tmp_path: Path) -> None:
    settings = Settings()
    ingest_path(_write(tmp_path / "a.jsonl", PAPERS[:2]), settings=settings, progress=False)
    reader = Store(settings)  # a second process's view of the same store

    def in_chroma() -> dict[str, tuple[str, str]]:
        rows = reader.collection.get(include=["documents", "metadatas"])
        return {i: (d, m["title"]) for i, d, m in zip(rows["ids"], rows["documents"], rows["metadatas"])}

    def read(ids: list[str]) -> dict[str, tuple[str, str]]:
        return {i: (n.get_content(), n.metadata["title"]) for i, n in reader.nodes(ids).items()}

    first = in_chroma()
    assert read(list(first)) == first
    assert reader.bm25() is not None
    assert read(list(first)) == first  # loading BM25 changes nothing: chunks are never read from its copy
    # Papers another writer added since are read too.
    ingest_path(_write(tmp_path / "b.jsonl", PAPERS[2:]), settings=settings, progress=False)
    both = in_chroma()
    assert len(both) > len(first)
    ids = sorted(both, reverse=True) + ["no-such-chunk#0"]
    assert set(reader.nodes(ids)) == set(ids[:-1])  # unknown ids left out
    assert read(ids) == both


def test_word_pieces_are_the_tokenizer_s_and_untruncated_after_encoding() -> None:
    from rag.embedding import word_pieces

    embed_model = Services(Settings()).embed_model
    tokenizer = embed_model._model.tokenizer
    long = PAPERS[2]["abstract"]
    embed_model.get_text_embedding_batch([long])  # encoding leaves truncation at 256 set on the tokenizer
    count = word_pieces(embed_model)
    for text in (long, PAPERS[0]["title"], "Naïve café: µ-law ≥ 2½ ways"):
        assert count(text) == tokenizer.tokenize(text)
    assert len(count(long)) > embed_model._model.max_seq_length  # a whole abstract is counted, not cut


def test_the_encoder_reads_chunks_longest_first_in_word_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest import sample_corpus
    from rag.embedding import word_pieces

    services = Services(Settings())
    encoder = services.embed_model._model
    read: list[str] = []
    encode = encoder.encode

    def recording(texts: list[str], *args: object, **kwargs: object) -> object:
        read.extend(texts)
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode", recording)
    report = ingest_path(sample_corpus(), settings=services.settings, progress=False)
    assert len(read) == report.chunks_written > 84
    count = word_pieces(services.embed_model)
    sizes = [len(count(text)) for text in read]
    assert sizes == sorted(sizes, reverse=True)  # each forward pass pads almost nothing
    by_characters = [len(count(text)) for text in sorted(read, key=len, reverse=True)]
    assert by_characters != sorted(by_characters, reverse=True)  # the order that would pad more


def test_batches_are_written_while_the_next_is_embedded_and_progress_counts_stored_chunks(tmp_path: Path) -> None:
    import itertools
    import threading

    settings = Settings().updated(store={"batch_size": 2})
    store = Services(settings).store
    seen: list[tuple[int, int, int, str]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total, store.collection.count(), threading.current_thread().name))

    report = ingest_path(_write(tmp_path / "p.jsonl", PAPERS), settings=settings, progress=progress)
    total = report.chunks_written
    assert total > 4 and store.collection.count() == total  # several batches, all stored
    counts = [s[0] for s in seen]
    assert counts[0] == 0 and counts[-1] == total and all(0 < b - a <= 2 for a, b in itertools.pairwise(counts))
    assert all(stored >= done for done, _, stored, _ in seen)  # reported once written, never before
    assert all(t == total for _, t, _, _ in seen)
    assert {name for *_, name in seen[1:]} == {"papercite-chroma-writer_0"}
    assert check_store(store, settings.embedding.model).ok


def test_a_failed_write_stops_the_ingest_and_keeps_what_was_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings().updated(store={"batch_size": 2})
    store = Services(settings).store
    real_add, writes = Store.add_nodes, []

    def add_nodes(self: Store, nodes: list) -> None:
        if len(writes) == 2:
            raise OSError("disk full")
        writes.append(len(nodes))
        real_add(self, nodes)

    monkeypatch.setattr(Store, "add_nodes", add_nodes)
    with pytest.raises(OSError, match="disk full"):
        ingest_path(_write(tmp_path / "p.jsonl", PAPERS), settings=settings, progress=False)
    assert store.collection.count() == sum(writes) == 4  # the batches written before it stay
    assert store.sparse.stale  # BM25 is known to be behind until the next ingest
    monkeypatch.undo()
    again = ingest_path(tmp_path / "p.jsonl", settings=settings, progress=False)
    assert again.chunks_written and check_store(store, settings.embedding.model).ok
