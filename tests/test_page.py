"""The page end to end: the real app on a free port, driven by headless Chromium.

Real pieces throughout: a copy of the sample Chroma store, the packaged MiniLM, the
embedded LLM writing each answer, and Debian's Chromium (Playwright drives it; it
never downloads a browser of its own). Answers take seconds each, so the module
asks few questions and checks several things on each.

Set PAPERCITE_SCREENSHOT=docs/page.png to also save the cited-answer screenshot
there (that is how the README's picture is made). The times from question to
first words and to the full answer are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import browser, free_port, private_copy, serve_scripted

pytestmark = [pytest.mark.llm, pytest.mark.browser]
__all__ = ["browser"]  # the fixture, used by name

WAVELET_Q = "Which architecture mixes image tokens with a 2D wavelet transform?"
WAVELET_TITLE = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
HOSTILE_TITLE = 'Glowfly <script>window.__pwned = 1</script> routing <img src=x onerror="window.__pwned = 2">'
UPLOAD = [
    {
        "title": HOSTILE_TITLE,
        "abstract": "Glowfly routing sends packets through swarms of light-emitting drones. "
        "Each drone relays packets by blinking, reaching 40 kilobits per second over 300 meters at night.",
        "year": 2025,
        "authors": ["Ines Okafor"],
    },
    {
        "title": "Tidal batteries for island grids",
        "abstract": "We store island grid energy in tidal lagoons "
        "and release it through turbines, smoothing solar output across the day.",
        "year": 2024,
    },
    {"title": "A record without its abstract"},
]
TIMES: list[dict[str, Any]] = []
# Read at import: the autouse fixture clears PAPERCITE_* variables before each test.
SCREENSHOT_TO = os.environ.get("PAPERCITE_SCREENSHOT")


@pytest.fixture(scope="module")
def page_url(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page over a private copy of the sample store (the upload test writes to it), warmed up."""
    from rag.services import Services
    from rag.settings import Settings
    from ui.app import build_app, launch, warm_up

    data_dir = private_copy(sample_store, tmp_path_factory, "page")
    settings = Settings(data_dir=data_dir, llm={"backend": "embedded"})
    services = Services(settings)
    app = build_app(settings, services)
    url = launch(app, settings, port=free_port(), block=False)
    warm_up(services, read_papers=False).join()  # as `papercite serve` does: the model is loaded first
    yield url
    app.close()
    if TIMES:
        print("\nquestion -> first words / full answer, in the browser (embedded model):")
        for t in TIMES:
            print(f"  {t['first_words_s']:6.1f} s / {t['full_answer_s']:6.1f} s  {t['question']}")


@pytest.fixture
def page(browser: Any, page_url: str) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    page.goto(page_url)
    page.wait_for_function("document.querySelector('#pc-collection')?.innerText.includes('papers')")
    yield page
    context.close()


def _ask(page: Any, question: str) -> dict[str, Any]:
    """Type a question, press Enter, and time the first streamed words and the finished answer.

    The answer is finished when its message carries the model-and-timings line.
    """
    before = page.locator("#pc-chat [data-testid=bot]").count()
    page.fill("#pc-question textarea", question)
    started = time.perf_counter()
    page.press("#pc-question textarea", "Enter")
    last = f"[...document.querySelectorAll('#pc-chat [data-testid=bot]')].slice({before}).at(-1)"
    page.wait_for_function(
        f"() => {{ const m = {last}; return m !== undefined && "
        "((m.innerText.includes('▌') && m.innerText.length > 3) || m.querySelector('.pc-meta') !== null); }",
        polling=50,
        timeout=180_000,
    )
    first = time.perf_counter() - started
    page.wait_for_function(f"() => {last}?.querySelector('.pc-meta') != null", polling=50, timeout=180_000)
    timing = {"question": question, "first_words_s": first, "full_answer_s": time.perf_counter() - started}
    TIMES.append(timing)
    return timing


def test_empty_question_shows_one_readable_error(page: Any) -> None:
    page.click("#pc-ask")
    error = page.get_by_text("The question is empty")
    error.first.wait_for(timeout=10_000)
    assert "Traceback" not in page.content()
    assert page.locator("#pc-chat [data-testid=user]").count() == 0  # nothing was sent


def test_streamed_answer_cites_a_title_shown_in_the_sources(page: Any, tmp_path: Path) -> None:
    timing = _ask(page, WAVELET_Q)
    cited = page.inner_text("#pc-sources .pc-cited")
    assert WAVELET_TITLE in cited
    badge = page.locator("#pc-chat .pc-cite").first
    assert badge.get_attribute("title") == WAVELET_TITLE  # the badge names the paper it cites
    assert page.locator("#pc-sources .pc-cited mark").count() > 0  # the question's words are highlighted
    assert timing["first_words_s"] <= timing["full_answer_s"]

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    if SCREENSHOT_TO:
        shutil.copy(shot, SCREENSHOT_TO)

    page.click("#pc-copy")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "References:" in copied and f"] {WAVELET_TITLE}" in copied

    page.click("#pc-clear")
    page.wait_for_function("document.querySelectorAll('#pc-chat [data-testid=bot]').length === 0")
    assert page.locator("#pc-sources .pc-source").count() == 0


def test_uncovered_question_abstains_and_marks_the_nearest_papers(page: Any) -> None:
    _ask(page, "What is the boiling point of water on Mars?")
    assert "does not cover this question" in page.inner_text("#pc-chat")
    assert "they do not answer it" in page.inner_text("#pc-sources")
    assert page.locator("#pc-sources .pc-nearest").count() > 0
    assert page.locator("#pc-sources .pc-cited").count() == 0


def test_upload_adds_papers_reports_each_file_and_shows_hostile_titles_as_text(page: Any, tmp_path: Path) -> None:
    upload = tmp_path / "new-papers.jsonl"
    upload.write_text("\n".join(json.dumps(r) for r in UPLOAD) + "\n", encoding="utf-8")
    before = page.inner_text("#pc-collection")
    assert "84 papers" in before

    page.set_input_files("#pc-upload input[type=file]", str(upload))
    page.wait_for_function("document.querySelector('#pc-collection').innerText.includes('86 papers')", timeout=120_000)
    report = page.inner_text("#pc-report")
    assert "new-papers.jsonl" in report and "new-papers.jsonl:3" in report  # the record with no abstract
    assert "/tmp" not in report and str(tmp_path) not in report

    _ask(page, "How fast can drones relay packets by blinking?")
    sources = page.inner_text("#pc-sources")
    assert "Glowfly <script>window.__pwned = 1</script> routing" in sources  # shown as text...
    assert page.evaluate("window.__pwned") is None  # ...and never run

    # Clicking the first answer in the chat brings its sources back.
    _ask(page, WAVELET_Q)
    page.locator("#pc-chat [data-testid=bot]").first.click()
    page.wait_for_function("document.querySelector('#pc-sources').innerText.includes('Glowfly')")


@pytest.fixture(scope="module")
def slow_page_url(sample_store: Path, gated: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page over a copy of the sample store, answering with a scripted model that waits for the test."""
    from rag.services import Services
    from rag.settings import Settings
    from ui.app import build_app, launch

    data_dir = private_copy(sample_store, tmp_path_factory, "slow")
    # The scripted replies are one-prompt answers (a module fixture runs before the per-test env pin).
    settings = Settings(data_dir=data_dir, llm={"backend": "embedded"}, answer={"mode": "one_prompt"})
    app = build_app(settings, Services(settings, llm=gated))
    yield launch(app, settings, port=free_port(), block=False)
    gated.release()
    app.close()


def test_sources_show_while_the_model_reads_and_the_answer_replaces_them(
    browser: Any, slow_page_url: str, gated: Any
) -> None:
    page = browser.new_page()
    page.goto(slow_page_url)
    page.wait_for_function("document.querySelector('#pc-collection')?.innerText.includes('papers')")
    gated.enqueue("WaveMix mixes image tokens with a multi-level 2D wavelet transform [1].")
    page.fill("#pc-question textarea", WAVELET_Q)
    page.press("#pc-question textarea", "Enter")

    # The model holds its reply until released below: all that shows now came before its first word.
    page.wait_for_function("document.querySelector('#pc-sources .pc-reading mark.pc-best') !== null", timeout=120_000)
    assert WAVELET_TITLE in page.inner_text("#pc-sources .pc-reading")
    assert "wavelet" in page.inner_text("#pc-sources mark.pc-best").lower()
    reply = page.locator("#pc-chat [data-testid=bot]").last
    assert re.fullmatch(r"Reading \d+ abstracts?…", reply.inner_text().strip())
    assert reply.locator(".pc-meta").count() == 0 and "▌" not in reply.inner_text()

    gated.release()
    page.wait_for_function(
        "[...document.querySelectorAll('#pc-chat [data-testid=bot]')].at(-1)?.querySelector('.pc-meta') != null",
        timeout=120_000,
    )
    assert "WaveMix mixes image tokens" in reply.inner_text()
    assert WAVELET_TITLE in page.inner_text("#pc-sources .pc-cited")
    assert page.locator("#pc-sources .pc-reading").count() == 0  # the answer's panel replaced the reading one
    page.close()


WAVELET_REPLY = "WaveMix mixes image tokens with a multi-level 2D wavelet transform [1]."
WAVELET_FINDING = "WaveMix mixes image tokens with a multi-level two-dimensional discrete wavelet transform."


def test_per_paper_findings_arrive_one_paper_at_a_time(
    browser: Any, sample_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Per-paper mode: each paper's verdict and finding show as its reading ends, in reading order."""
    from tests.conftest import SteppedLLM

    model = SteppedLLM().enqueue(("YES", 0.9), f"YES\n{WAVELET_FINDING}", ("NO", 0.2), ("NO", 0.1))
    app, url = serve_scripted(
        sample_store,
        tmp_path_factory,
        "per-paper",
        model,
        answer={"mode": "per_paper", "max_papers": 3},
        tuning={"reading": {"read_margin": 1.0}},
    )
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.querySelector('#pc-collection')?.innerText.includes('papers')")
        page.fill("#pc-question textarea", WAVELET_Q)
        page.press("#pc-question textarea", "Enter")
        reply = page.locator("#pc-chat [data-testid=bot]").last
        verdicts = "[...document.querySelectorAll('#pc-sources .pc-verdict')].map(v => v.dataset.verdict)"

        model.allow(2)  # the first paper's verdict and finding: its finding shows, the others are unread
        page.wait_for_function(f"{verdicts}.length === 1", timeout=120_000)
        assert page.evaluate(verdicts) == ["yes"]
        assert "Read 1 of 3" in reply.inner_text() and "wavelet transform" in reply.inner_text()
        first = page.locator("#pc-sources .pc-source").first
        assert WAVELET_TITLE in first.inner_text() and "0.90 sure" in first.inner_text()

        model.allow(1)  # the second paper: a no
        page.wait_for_function(f"{verdicts}.length === 2", timeout=120_000)
        assert page.evaluate(verdicts) == ["yes", "no"] and "Read 2 of 3" in reply.inner_text()
        assert reply.locator(".pc-meta").count() == 0  # not settled until every paper is read

        model.allow(1)  # the third: the answer settles and replaces the readings
        page.wait_for_function(
            "[...document.querySelectorAll('#pc-chat [data-testid=bot]')].at(-1)?.querySelector('.pc-meta') != null",
            timeout=120_000,
        )
        assert WAVELET_FINDING in reply.inner_text() and "read one at a time" in reply.inner_text()
        cited = page.inner_text("#pc-sources .pc-cited")
        assert WAVELET_TITLE in cited and "Read: answers, 0.90 sure" in cited
        assert page.locator("#pc-sources .pc-uncited .pc-verdict[data-verdict=no]").count() == 2
        page.close()
    finally:
        model.allow(10)
        app.close()


def _scripted_page(browser: Any, url: str, gated: Any) -> Any:
    """A new tab on the page answered by the scripted model, its replies let through at once
    (the tests using it assert what the model was asked and what the page shows, not when)."""
    gated.release()
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("document.querySelector('#pc-collection')?.innerText.includes('papers')")
    return page


def _send(page: Any, question: str) -> Any:
    """Ask on a page answered by the scripted model; return the finished reply's message."""
    before = page.locator("#pc-chat [data-testid=bot]").count()
    page.fill("#pc-question textarea", question)
    page.press("#pc-question textarea", "Enter")
    page.wait_for_function(
        f"[...document.querySelectorAll('#pc-chat [data-testid=bot]')].slice({before}).at(-1)"
        "?.querySelector('.pc-meta') != null",
        timeout=120_000,
    )
    return page.locator("#pc-chat [data-testid=bot]").last


def test_a_follow_up_continues_the_chat_and_clear_chat_starts_a_new_one(
    browser: Any, slow_page_url: str, gated: Any
) -> None:
    page = _scripted_page(browser, slow_page_url, gated)
    follow_up = "How many fewer parameters does it need than the alternatives?"
    first_reply = WAVELET_REPLY
    gated.enqueue(first_reply, "WaveMix needs fewer parameters than the alternatives [1].", "It is small [1].")
    asked = len(gated.history)

    _send(page, WAVELET_Q)
    reply = _send(page, follow_up)
    assert "WaveMix needs fewer parameters" in reply.inner_text()
    assert WAVELET_TITLE in page.inner_text("#pc-sources .pc-cited")  # [1] still names the first turn's paper
    first, second = ([(m.role.value, m.content) for m in messages] for messages in gated.history[asked:])
    assert second[: len(first)] == first and second[len(first)] == ("assistant", first_reply)
    assert WAVELET_TITLE not in second[-1][1]  # the follow-up's message does not show WaveMix again

    page.click("#pc-clear")
    page.wait_for_function("document.querySelectorAll('#pc-chat [data-testid=bot]').length === 0")
    _send(page, WAVELET_Q)
    assert [(m.role.value, m.content) for m in gated.history[-1]] == first  # a new chat: nothing before it
    page.close()


def test_more_like_this_shows_the_papers_nearest_to_one_of_the_answers(
    browser: Any, slow_page_url: str, gated: Any
) -> None:
    page = _scripted_page(browser, slow_page_url, gated)
    gated.enqueue(WAVELET_REPLY)
    _send(page, WAVELET_Q)

    page.click("#pc-similar input")
    page.get_by_role("option", name=WAVELET_TITLE).click()
    page.wait_for_function("document.querySelector('#pc-sources')?.innerText.includes('More like')", timeout=60_000)
    heading = page.inner_text("#pc-sources h4")
    assert WAVELET_TITLE in heading and heading.endswith("(5)")
    titles = page.locator("#pc-sources .pc-similar .pc-title").all_inner_texts()
    assert len(titles) == 5 and not any(WAVELET_TITLE in t for t in titles)  # never the paper itself
    page.close()


def test_the_answer_downloads_with_its_references_as_bibtex_ris_and_markdown(
    browser: Any, slow_page_url: str, gated: Any
) -> None:
    import bibtexparser
    import rispy

    page = _scripted_page(browser, slow_page_url, gated)
    assert page.locator("#pc-download-bibtex").is_disabled()  # nothing to download before an answer
    gated.enqueue(WAVELET_REPLY)
    _send(page, WAVELET_Q)

    texts = {}
    for fmt in ("bibtex", "ris", "markdown"):
        page.wait_for_function(f"!document.querySelector('#pc-download-{fmt}').disabled", timeout=30_000)
        with page.expect_download() as download:
            page.click(f"#pc-download-{fmt}")
        texts[fmt] = Path(download.value.path()).read_text(encoding="utf-8")
    assert [e["title"] for e in bibtexparser.parse_string(texts["bibtex"]).entries] == [f"{{{WAVELET_TITLE}}}"]
    assert [r["title"] for r in rispy.loads(texts["ris"])] == [WAVELET_TITLE]
    assert "WaveMix mixes image tokens" in texts["markdown"] and f"*{WAVELET_TITLE}*" in texts["markdown"]
    page.close()


def test_a_zotero_library_uploads_like_any_paper_file(
    browser: Any, slow_page_url: str, gated: Any, tmp_path: Path
) -> None:
    try:
        from tests.zotero_library import build_zotero_library
    except ImportError:  # pragma: no cover - run from inside tests/
        from zotero_library import build_zotero_library

    page = _scripted_page(browser, slow_page_url, gated)
    before = int(re.search(r"(\d+) papers", page.inner_text("#pc-collection"))[1])
    page.set_input_files("#pc-upload input[type=file]", str(build_zotero_library(tmp_path / "zotero.sqlite")))
    page.wait_for_function(
        f"document.querySelector('#pc-collection').innerText.includes('{before + 2} papers')", timeout=120_000
    )
    report = page.inner_text("#pc-report")
    assert "zotero.sqlite" in report and "no abstract" in report and str(tmp_path) not in report
    page.close()


FILTERED = [
    {
        "title": "Sparse attention kernels on CPUs",
        "abstract": "Attention computed with sparse kernels runs twice as fast on laptop CPUs.",
        "authors": ["Song Han", "Jürgen Müller"],
        "year": 2023,
    },
    {
        "title": "Dense attention kernels on GPUs",
        "abstract": "Attention computed with dense kernels saturates GPU memory bandwidth.",
        "authors": ["Jürgen Müller"],
        "year": 2019,
    },
    {
        "title": "Attention on phones",
        "abstract": "Attention runs on phones when its kernels are quantized to 4 bits.",
        "authors": ["Ana Okafor"],
        "year": 2024,
    },
]


def _pick_collection(page: Any, name: str) -> None:
    """Choose (or type, for a new one) collection ``name`` in the selector."""
    box = page.locator("#pc-collection-select input")
    box.fill(name)
    box.press("Enter")


def test_a_new_collection_takes_uploads_and_filters_narrow_its_answers(
    browser: Any, slow_page_url: str, gated: Any, tmp_path: Path
) -> None:
    page = _scripted_page(browser, slow_page_url, gated)
    _pick_collection(page, "kernels")
    page.wait_for_function("document.querySelector('#pc-collection').innerText.includes('does not exist yet')")
    upload = tmp_path / "kernels.jsonl"
    upload.write_text("".join(json.dumps(p) + "\n" for p in FILTERED), encoding="utf-8")
    page.set_input_files("#pc-upload input[type=file]", str(upload))
    page.wait_for_function("document.querySelector('#pc-collection').innerText.includes('3 papers')", timeout=120_000)

    page.click("#pc-filters button")  # open the filters
    page.fill("#pc-since input", "2020")
    page.fill("#pc-author input", "MULLER")
    gated.enqueue("Sparse kernels make attention twice as fast on laptop CPUs [1].")
    reply = _send(page, "Which kernels make attention fast?")
    assert "twice as fast" in reply.inner_text()
    assert page.locator("#pc-sources .pc-title").all_inner_texts() == ["[1] Sparse attention kernels on CPUs"]
    prompt = gated.history[-1][-1].content
    assert "Sparse attention kernels on CPUs" in prompt
    assert "Dense attention kernels" not in prompt and "Attention on phones" not in prompt  # 2019; not Müller's

    page.fill("#pc-since input", "2030")
    asked = len(gated.history)
    reply = _send_failing(page, "Which kernels make attention fast?")
    assert "No paper in collection 'kernels' matches years from 2030, author MULLER" in reply
    assert len(gated.history) == asked  # no fallback to unfiltered papers: the model was not asked

    _pick_collection(page, "default")  # back to the sample (and any uploads to it): its panel, and a new chat
    page.wait_for_function(
        "Number(document.querySelector('#pc-collection').innerText.match(/(\\d+) papers/)?.[1]) >= 84"
    )
    page.wait_for_function("document.querySelectorAll('#pc-chat [data-testid=bot]').length === 0")
    page.close()


def _send_failing(page: Any, question: str) -> str:
    """Ask a question the page refuses; return the message it shows in the chat."""
    before = page.locator("#pc-chat [data-testid=bot]").count()
    page.fill("#pc-question textarea", question)
    page.press("#pc-question textarea", "Enter")
    last = f"[...document.querySelectorAll('#pc-chat [data-testid=bot]')].slice({before}).at(-1)"
    page.wait_for_function(f"{last}?.innerText.includes('⚠️')", timeout=60_000)
    return str(page.locator("#pc-chat [data-testid=bot]").last.inner_text())


@pytest.fixture(scope="module")
def bare_page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page over an empty store, with Ollama as the backend and nothing listening at its port."""
    from rag.settings import Settings
    from ui.app import build_app, launch

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("bare") / "data",
        llm={"backend": "ollama", "ollama_host": f"http://127.0.0.1:{free_port()}"},
    )
    app = build_app(settings)
    yield launch(app, settings, port=free_port(), block=False)
    app.close()


def test_errors_on_the_page_name_the_problem_and_the_fix(browser: Any, bare_page_url: str, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(bare_page_url)
    page.wait_for_function("document.querySelector('#pc-collection')?.innerText.includes('empty')")

    page.fill("#pc-question textarea", "Which papers study drones?")
    page.press("#pc-question textarea", "Enter")
    page.get_by_text("The collection is empty: upload papers").first.wait_for(timeout=30_000)

    junk = tmp_path / "export.jsonl"
    junk.write_bytes(b"PK\x03\x04\x00\x00\xff\xfe binary junk\x00\n")
    page.set_input_files("#pc-upload input[type=file]", str(junk))
    page.wait_for_function("document.querySelector('#pc-report').innerText.includes('refused')", timeout=60_000)
    report = page.inner_text("#pc-report")
    assert "export.jsonl refused: export.jsonl is a binary file" in report and str(tmp_path) not in report

    good = tmp_path / "two.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in UPLOAD[:2]) + "\n", encoding="utf-8")
    page.set_input_files("#pc-upload input[type=file]", str(good))
    page.wait_for_function("document.querySelector('#pc-collection').innerText.includes('2 papers')", timeout=120_000)

    page.fill("#pc-question textarea", "How fast can drones relay packets by blinking?")
    page.press("#pc-question textarea", "Enter")
    error = page.get_by_text("Cannot get an answer from Ollama at http://127.0.0.1:")
    error.first.wait_for(timeout=60_000)
    assert "ollama serve" in error.first.inner_text()
    assert "Traceback" not in page.content()
    page.close()
