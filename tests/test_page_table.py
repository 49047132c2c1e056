"""The page's Table tab end to end: the real app on a free port, driven by headless Chromium.

Real pieces but the model: a copy of the sample Chroma store, the packaged MiniLM, Debian's
Chromium; the model is scripted and answers one call at a time when the test allows it, so the
test sees the table between one cell and the next.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.browser import browser, serve_scripted
from tests.conftest import SteppedLLM

pytestmark = [pytest.mark.browser]
__all__ = ["browser"]  # the fixture, used by name

GPIPE_TITLE = "GPipe: Efficient Training of Giant Neural Networks using Pipeline Parallelism"


def test_the_table_tab_fills_cell_by_cell_opens_a_cell_to_its_sentence_and_downloads_csv(
    browser: Any, sample_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The Table tab with a scripted model read one call at a time: the progress bar and the cells
    as they come, a cell opened to the abstract sentence it rests on, the CSV, and a bad column."""
    # Two papers x one column: GPipe's parameters (557 million is in its abstract), then the next paper's no.
    model = SteppedLLM().enqueue(("YES", 0.9), "YES\n557 million parameters.", ("NO", 0.1))
    app, url = serve_scripted(sample_store, tmp_path_factory, "table", model)
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.querySelector('#pc-collection')?.innerText.includes('papers')")
        page.get_by_role("tab", name="Table").click()
        page.get_by_role("radio", name="the papers a search finds").check()
        page.fill("#pc-table-search input", "GPipe giant neural networks pipeline parallelism")
        page.fill("#pc-table-most input", "2")
        page.fill("#pc-table-columns textarea", "Parameters: How many parameters does the model have?")
        page.click("#pc-table-make")

        progress = "document.querySelector('#pc-table progress')"
        page.wait_for_function(f"{progress}?.getAttribute('max') === '2'", timeout=120_000)
        assert page.locator("#pc-table .pc-pending").count() == 2  # both cells wait; the papers are listed
        assert GPIPE_TITLE in page.inner_text("#pc-table table")
        model.allow(2)  # the first cell: verdict and answer
        page.wait_for_function(f"{progress}.getAttribute('value') === '1'", timeout=120_000)
        assert "1 of 2 cells" in page.inner_text("#pc-table") and page.locator("#pc-table .pc-pending").count() == 1
        assert page.locator("#pc-table-csv").is_disabled()  # nothing to download until the table is done

        model.allow(1)  # the second: not stated
        page.wait_for_function(f"{progress}.getAttribute('value') === '2'", timeout=120_000)
        assert "Done: 2 of 2 cells" in page.inner_text("#pc-table")
        stated = page.locator("#pc-table .pc-stated").first
        assert not stated.locator("blockquote").is_visible()
        stated.locator("summary").click()  # the sentence of the abstract the cell rests on
        assert "557" in stated.locator("blockquote").inner_text()
        assert page.locator("#pc-table .pc-none summary").inner_text() == "not stated"

        page.wait_for_function("!document.querySelector('#pc-table-csv').disabled", timeout=30_000)
        with page.expect_download() as download:
            page.click("#pc-table-csv")
        rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"), newline="")))
        assert rows[0] == ["Paper", "Year", "Parameters"]
        assert rows[1][0] == GPIPE_TITLE and rows[1][2] == "557 million parameters" and rows[2][2] == "not stated"

        page.fill("#pc-table-columns textarea", "x" * 400)
        page.click("#pc-table-make")
        page.get_by_text("keep a column under 300").first.wait_for(timeout=30_000)
        page.close()
    finally:
        app.close()
