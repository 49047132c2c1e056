"""What the page shows, without a browser: escaping, badges, sources, reports, examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.papers import Problem
from ingest.pipeline import IngestReport
from rag.errors import BadInput, IndexEmpty, StoreError
from rag.settings import Settings
from rag.types import Answer, Citation, Reading, Source, Timings
from ui.render import (
    answer_markdown,
    collection_markdown,
    example_questions,
    highlight,
    reading_html,
    reading_markdown,
    sources_html,
    upload_report_markdown,
)

HOSTILE = '<script>alert("x")</script> Wavelets & "mixing"'


def _source(n: int, title: str = "A paper", url: str | None = None) -> Source:
    return Source(
        n,
        f"id:{n}",
        title,
        (f"Passage {n} mixes image tokens with wavelets.",),
        0.03,
        0.5,
        ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"),
        2024,
        url,
    )


def _answer(text: str, cited: list[Citation], sources: list[Source], abstained: bool = False) -> Answer:
    return Answer(
        question="How are image tokens mixed with wavelets?",
        text=text,
        citations=tuple(cited),
        sources=tuple(sources),
        abstained=abstained,
        model="embedded:test",
        timings=Timings(0.1, 2.0, 5.0),
    )


def test_highlight_marks_question_words_and_escapes_the_rest() -> None:
    out = highlight("Mixing <b>tokens</b> with wavelet transforms.", "How are tokens mixed by a wavelet transform?")
    assert "<mark>tokens</mark>" in out and "<mark>wavelet</mark>" in out and "<mark>transforms</mark>" in out
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert "<mark>with</mark>" not in out  # stop words are not highlighted


def test_answer_markers_become_badges_titled_with_the_paper() -> None:
    sources = [_source(1, HOSTILE), _source(2)]
    cited = [Citation(1, HOSTILE, "id:1"), Citation(2, "A paper", "id:2", attributed=True)]
    md = answer_markdown(_answer("It mixes <i>tokens</i> [1]. Also this [2].", cited, sources))
    assert '<span class="pc-cite" title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Wavelets' in md
    assert '<span class="pc-cite pc-attributed" title="A paper">[2]</span>' in md
    assert "<script>" not in md and "<i>" not in md
    assert "embedded:test" in md and "5.0 s in all" in md and "dashed badges" in md


def test_each_sentence_shows_its_verdict_and_removed_ones_are_listed_with_why() -> None:
    from rag.types import Sentence

    sources = [_source(1), _source(2, "Other <b>paper</b>")]
    sentences = (
        Sentence("It mixes tokens [1].", (1,), "supported", "", True, (1,)),
        Sentence(
            "It cuts error by 72% [2].", (2,), "corrected", "the number 72 is not in [1]; it is in [2]", True, (1,)
        ),
        Sentence("It runs on <Mars> [1].", (1,), "unsupported", "'Mars' is in no retrieved abstract", True, (1,)),
        Sentence("It won 3 prizes [1].", (1,), "unsupported", "the number 3 is in no retrieved abstract", False, (1,)),
    )
    answer = Answer(
        question="q?",
        text="It mixes tokens [1]. It cuts error by 72% [2]. It runs on <Mars> [1].",
        citations=(Citation(1, "A paper", "id:1"), Citation(2, "Other <b>paper</b>", "id:2", attributed=True)),
        sources=tuple(sources),
        abstained=False,
        model="embedded:test",
        timings=Timings(0.1, 2.0, 5.0),
        sentences=sentences,
    )
    md = answer_markdown(answer)
    assert '<span class="pc-cite" title="A paper">[1]</span>' in md
    assert (
        'class="pc-cite pc-attributed" title="Other &lt;b&gt;paper&lt;/b&gt; (papercite&#x27;s citation: the number 72'
        in md
    )
    assert (
        '<span class="pc-unsupported" title="Unsupported: &#x27;Mars&#x27; is in no retrieved abstract">'
        "⚠ It runs on &lt;Mars&gt;" in md
    )
    assert "1 sentence left out" in md and "It won 3 prizes" in md and "the number 3 is in no retrieved abstract" in md
    assert "<Mars>" not in md and "<b>" not in md


def test_sources_separate_cited_from_retrieved_and_escape_titles() -> None:
    sources = [_source(1, HOSTILE, url="javascript:alert(1)"), _source(2, url="https://arxiv.org/abs/1"), _source(3)]
    html_out = sources_html(_answer("x [2].", [Citation(2, "A paper", "id:2")], sources))
    cited, _, rest = html_out.partition("Retrieved, not cited (2)")
    assert "Cited (1)" in cited and 'data-number="2"' in cited and 'href="https://arxiv.org/abs/1"' in cited
    assert 'data-number="1"' in rest and 'data-number="3"' in rest
    assert "<script>" not in html_out and "javascript:" not in html_out
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al. · 2024 · similarity 0.50" in html_out


def test_the_papers_being_read_show_at_once_with_their_best_sentence_marked() -> None:
    hostile = Source(2, "id:2", HOSTILE, ("First <b>bold</b> claim. Tokens meet <i>wavelets</i> here.",), 0.03)
    reading = Reading(
        "How are tokens mixed with wavelets?", (_source(1), hostile), ("", "Tokens meet <i>wavelets</i> here.")
    )
    panel = reading_html(reading)
    assert "Reading (2)" in panel and panel.count('class="pc-source pc-reading"') == 2
    assert (
        '<mark class="pc-best"><mark>Tokens</mark> meet &lt;i&gt;<mark>wavelets</mark>&lt;/i&gt; here.</mark>' in panel
    )
    assert panel.count("pc-best") == 1  # the first paper has no best sentence: its words alone are marked
    assert "<details>" not in panel  # what the model reads is shown, not folded
    assert "<script>" not in panel and "<b>" not in panel and "<i>" not in panel
    assert reading_markdown(reading) == "*Reading 2 abstracts…*"
    assert reading_markdown(Reading("q", (_source(1),), ("",))) == "*Reading 1 abstract…*"


def test_abstention_says_so_and_marks_the_nearest_papers() -> None:
    answer = _answer("The collection does not cover this question.", [], [_source(1), _source(2)], abstained=True)
    assert answer_markdown(answer).startswith("**The collection does not cover this question.**")
    panel = sources_html(answer)
    assert "they do not answer it" in panel and panel.count("pc-nearest") == 2 and "Cited" not in panel


def test_upload_report_lists_each_file_and_its_skipped_records() -> None:
    report = IngestReport(
        "a.jsonl", added=["p1", "p2"], unchanged=["p3"], skipped=[Problem("a.jsonl:3", "no abstract | empty")]
    )
    md = upload_report_markdown([("a.jsonl", report), ("b.exe", "unknown file type: use .jsonl")])
    assert "| a.jsonl | 2 | 0 | 1 | 1 |" in md
    assert "| b.exe | – | – | – | refused |" in md
    assert "a.jsonl:3: no abstract \\| empty" in md and "**b.exe** refused: unknown file type" in md


def test_collection_panel_counts_and_empty_hint() -> None:
    assert "**84 papers** in 200 chunks" in collection_markdown(84, 200, "minilm", "embedded:x")
    assert "papercite ingest --sample" in collection_markdown(0, 0, None, "embedded:x")


def test_example_questions_prefer_named_methods_spread_over_the_collection() -> None:
    titles = [f"Method{i}: doing thing {i} well" for i in range(8)] + ["A plain title about sparse attention"]
    questions = example_questions(titles)
    assert questions == [f"What is Method{i}, and what problem does it address?" for i in (0, 2, 4, 6)]
    assert example_questions(["A plain title about sparse attention"]) == [
        "Which papers address a plain title about sparse attention?"
    ]


def test_page_messages_leave_server_paths_out(tmp_path: Path) -> None:
    from ui.handlers import page_message

    settings = Settings(data_dir=tmp_path / "secret-place")
    upload = "/tmp/gradio/0123abcd/papers.jsonl"
    assert str(tmp_path) not in page_message(
        StoreError(f"Cannot open the store at {tmp_path}/secret-place/chroma"), settings
    )
    assert page_message(BadInput(f"{upload}:3: not JSON"), settings, upload) == "papers.jsonl:3: not JSON"
    empty = page_message(IndexEmpty(f"The collection at {tmp_path} is empty"), settings)
    assert str(tmp_path) not in empty and "papercite ingest --sample" in empty


@pytest.mark.parametrize("value", ["alice", ":pw", "alice:"])
def test_basic_auth_setting_must_be_user_and_password(value: str) -> None:
    with pytest.raises(BadInput, match="PAPERCITE_SERVE__AUTH"):
        Settings(serve={"auth": value}).serve.credentials()
    assert Settings(serve={"auth": "alice:s3:cret"}).serve.credentials() == ("alice", "s3:cret")


def test_each_source_shows_its_reading_and_an_unsupported_finding_only_as_why() -> None:
    from rag.types import PaperReading
    from ui.render import readings_markdown

    cited = PaperReading(
        1, "id:1", "A paper", "yes", 0.71, "It mixes <b>tokens</b> with wavelets.", True, True, "cited"
    )
    wrong = PaperReading(2, "id:2", "B", "yes", 0.4, "It reaches 99.9%.", False, False, "99.9 is in no abstract")
    unread = PaperReading(3, "id:3", "C", "unread", reason="not read: far below the best paper in retrieval")
    answer = Answer(
        question="q",
        text="It mixes tokens with wavelets. [1]",
        citations=(Citation(1, "A paper", "id:1"),),
        sources=(_source(1), _source(2, "B"), _source(3, "C")),
        abstained=False,
        model="m",
        readings=(cited, wrong, unread),
        mode="per_paper",
        confidence_from="log-probabilities",
    )
    panel = sources_html(answer)
    assert "Read: answers, 0.71 sure" in panel and "&lt;b&gt;tokens&lt;/b&gt;" in panel  # escaped
    assert "99.9%" not in panel and "99.9 is in no abstract" in panel  # why, not the unsupported claim
    assert "Not read</b>" in panel and "far below the best paper" in panel
    assert "read one at a time" in answer_markdown(answer)
    reading = Reading("q", answer.sources, ("", "", ""))
    streamed = readings_markdown(reading, [cited, wrong])
    assert "Read 2 of 3 abstracts" in streamed and "tokens" in streamed and "99.9" not in streamed
