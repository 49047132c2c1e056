"""The BM25 retriever ranks exactly what llama-index's ranks, minus the chunks that score 0."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from llama_index.core.schema import TextNode
from llama_index.retrievers.bm25 import BM25Retriever

from rag.sparse import SparseRetriever

WORDS = ["cache", "tensor", "sparse", "expert", "router", "wavelet", "kernel", "graph", "pruning", "quantized"]


def _nodes() -> list[TextNode]:
    # Most chunks share no word with a question, as in a large store; several tie on purpose.
    texts = [f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} filler text number {i}" for i in range(60)]
    texts += ["unrelated astronomy abstract about comets"] * 200 + ["sparse expert router", "sparse expert router"]
    return [TextNode(id_=f"c{i}", text=text) for i, text in enumerate(texts)]


def test_hits_match_llama_index_bm25_without_zero_scores() -> None:
    nodes = _nodes()
    ours = SparseRetriever.from_defaults(nodes=nodes, similarity_top_k=15)
    theirs = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=15)
    for question in ("Which sparse expert router?", "wavelet kernels for graphs", "quantized pruning of a cache"):
        got = [(n.node.node_id, round(n.score or 0, 5)) for n in ours.retrieve(question)]
        want = [(n.node.node_id, round(n.score or 0, 5)) for n in theirs.retrieve(question) if (n.score or 0) > 0]
        assert got and len(got) <= 15
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        assert all(s > 0 for _, s in got)
        assert [s for _, s in got] == [s for _, s in want]  # same scores, same order
        # Equal scores keep index order, so the same question always ranks the same way.
        ties = [(a, b) for (a, sa), (b, sb) in pairwise(got) if sa == sb]
        assert ties and all(int(a[1:]) < int(b[1:]) for a, b in ties)


def test_a_question_sharing_no_word_with_the_store_has_no_hits() -> None:
    retriever = SparseRetriever.from_defaults(nodes=_nodes(), similarity_top_k=10)
    assert retriever.retrieve("zebrafish fin regrowth") == []
    assert retriever.retrieve("the of and") == []  # stopwords only


def test_fewer_hits_than_k_returns_only_the_hits() -> None:
    retriever = SparseRetriever.from_defaults(nodes=_nodes(), similarity_top_k=50)
    assert len(retriever.retrieve("comets")) == 50  # 200 chunks match: capped at k
    assert len(retriever.retrieve("wavelet")) < 50
    assert {n.node.node_id for n in retriever.retrieve("wavelet")} == {
        f"c{i}" for i in range(60) if "wavelet" in (WORDS[i % 10], WORDS[(i * 3) % 10])
    }


def test_a_persisted_index_loads_as_the_same_retriever(tmp_path: Path) -> None:
    SparseRetriever.from_defaults(nodes=_nodes(), similarity_top_k=5).persist(str(tmp_path / "bm25"))
    loaded = SparseRetriever.from_persist_dir(str(tmp_path / "bm25"))
    assert isinstance(loaded, SparseRetriever)
    assert [n.node.node_id for n in loaded.retrieve("sparse expert router")][:2] == ["c260", "c261"]
