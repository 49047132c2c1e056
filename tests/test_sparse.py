"""The BM25 index built page by page scores exactly as bm25s does over the whole corpus at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
from llama_index.core.schema import BaseNode, TextNode
from llama_index.retrievers.bm25 import BM25Retriever

from rag.store.sparse import BM25Index, Fetch, SparseRetriever, _node_page

WORDS = ["cache", "tensor", "sparse", "expert", "router", "wavelet", "kernel", "graph", "pruning", "quantized"]
QUESTIONS = ("Which sparse expert router?", "wavelet kernels for graphs", "quantized pruning of a cache", "comets")


def _nodes() -> list[TextNode]:
    # Most chunks share no word with a question, as in a large store; several tie on purpose;
    # words repeat within a chunk, chunk lengths differ, and titles are indexed with the text.
    texts = [
        f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} filler text number {i} {' '.join([WORDS[i % 7]] * (i % 3))}"
        for i in range(60)
    ]
    texts += ["unrelated astronomy abstract about comets"] * 200 + ["sparse expert router", "sparse expert router"]
    texts += ["", "the of and"]  # chunks with no term at all
    return [
        TextNode(id_=f"c{i}", text=text, metadata={"title": f"Paper {i % 9} on {WORDS[i % 4]}"})
        for i, text in enumerate(texts)
    ]


def _pages(nodes: Sequence[BaseNode], size: int) -> Iterator[dict[str, list]]:
    return (_node_page(nodes[i : i + size]) for i in range(0, len(nodes), size))


def _fetch(nodes: Sequence[BaseNode]) -> Fetch:
    by_id = {n.node_id: n for n in nodes}
    return lambda ids: {i: by_id[i] for i in ids if i in by_id}


def test_built_in_pages_it_ranks_and_scores_as_bm25s_over_the_whole_corpus() -> None:
    nodes = _nodes()
    ours = SparseRetriever.from_nodes(nodes, 15, batch=7)  # pages far smaller than the corpus
    theirs = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=15)
    for question in QUESTIONS:
        got = [(n.node.node_id, n.score) for n in ours.retrieve(question)]
        want = [(n.node.node_id, n.score) for n in theirs.retrieve(question) if (n.score or 0) > 0]
        assert got and len(got) <= 15
        assert all(s > 0 for _, s in got)
        assert [s for _, s in got] == [s for _, s in want]  # the same floats, in the same order
        assert {i for i, s in got if s > want[-1][1]} == {i for i, s in want if s > want[-1][1]}
        # Equal scores keep index order, so the same question always ranks the same way.
        ties = [(a, b) for (a, sa), (b, sb) in pairwise(got) if sa == sb]
        assert all(int(a[1:]) < int(b[1:]) for a, b in ties)
    assert ours.retrieve("sparse expert router")[0].node.get_content() == "sparse expert router"


def test_its_score_matrix_is_bm25s_own_up_to_the_order_of_the_vocabulary() -> None:
    nodes = _nodes()
    ours = SparseRetriever.from_nodes(nodes, 10, batch=11).bm25
    theirs = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=10).bm25
    assert ours.vocab_dict.keys() == theirs.vocab_dict.keys()
    assert ours.scores["num_docs"] == theirs.scores["num_docs"] == len(nodes)
    for token in theirs.vocab_dict.keys() - {""}:
        columns = []
        for bm25 in (ours, theirs):
            t, s = bm25.vocab_dict[token], bm25.scores
            span = slice(s["indptr"][t], s["indptr"][t + 1])
            columns.append((s["indices"][span].tolist(), s["data"][span].tolist()))
        assert columns[0] == columns[1], token
    assert ours.scores["data"].dtype == theirs.scores["data"].dtype == np.float32


def test_a_question_sharing_no_word_with_the_store_has_no_hits() -> None:
    retriever = SparseRetriever.from_nodes(_nodes(), 10)
    assert retriever.retrieve("zebrafish fin regrowth") == []
    assert retriever.retrieve("the of and") == []  # stopwords only
    assert retriever.retrieve("a ?") == []  # no token at all


def test_fewer_hits_than_k_returns_only_the_hits() -> None:
    retriever = SparseRetriever.from_nodes(_nodes(), 50)
    assert len(retriever.retrieve("comets")) == 50  # 200 chunks match: capped at k
    assert {n.node.node_id for n in retriever.retrieve("wavelet")} == {
        f"c{i}" for i in range(60) if "wavelet" in (WORDS[i % 10], WORDS[(i * 3) % 10], WORDS[i % 7] if i % 3 else "")
    }


def test_hits_the_collection_no_longer_holds_are_left_out() -> None:
    nodes = _nodes()
    retriever = SparseRetriever.from_nodes(nodes, 10)
    retriever._fetch = _fetch([n for n in nodes if n.node_id != "c260"])
    assert [n.node.node_id for n in retriever.retrieve("sparse expert router")][:1] == ["c261"]


def test_a_persisted_index_loads_as_the_same_retriever_with_ids_and_versions(tmp_path: Path) -> None:
    nodes = _nodes()
    index = BM25Index(tmp_path / "bm25" / "papers", fetch=_fetch(nodes), top_k=5)
    index.rebuild(_pages(nodes, 9))
    loaded = index.load()
    assert loaded is not None and not index.outdated
    assert [n.node.node_id for n in loaded.retrieve("sparse expert router")][:2] == ["c260", "c261"]
    assert [i.decode() for i in loaded.chunk_ids.tolist()] == [n.node_id for n in nodes]
    assert set(loaded.versions.tolist()) == {b""}  # no ChunkRecord in these nodes
    assert {d["node_id"] for d in loaded.corpus} == {n.node_id for n in nodes}
    index.rebuild(iter(()))  # nothing stored: no index
    assert index.load() is None and not (tmp_path / "bm25" / "papers").exists()


def test_an_index_in_the_old_format_is_rebuilt_not_read(tmp_path: Path) -> None:
    nodes = _nodes()
    path = tmp_path / "bm25" / "papers"
    BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=5).persist(str(path))  # what papercite wrote before
    index = BM25Index(path, fetch=_fetch(nodes), top_k=5)
    assert index.outdated and index.load() is None
    retriever = index.current(len(nodes), lambda: _pages(nodes, 50))
    assert retriever is not None and not index.outdated and not (path / "corpus.jsonl").exists()
    assert [n.node.node_id for n in retriever.retrieve("sparse expert router")][:2] == ["c260", "c261"]
