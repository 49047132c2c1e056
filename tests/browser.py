"""What the page's browser tests share: Debian's Chromium driven by Playwright, a free port, and the
page served over a private copy of the sample store with a scripted model.

Playwright never downloads a browser of its own here: it drives the system Chromium
(``apt-get install chromium``; ``.ci/run`` installs it), or the binary PAPERCITE_CHROMIUM names.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
# Read at import: the autouse fixture clears PAPERCITE_* variables before each test.
CHROMIUM = os.environ.get("PAPERCITE_CHROMIUM")


def chromium() -> str:
    """The Chromium binary to drive; fails under CI and skips elsewhere when there is none."""
    path = CHROMIUM or next(
        (p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))), None
    )
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: apt-get install chromium (the .ci/run script does this)")
        pytest.skip("no Chromium here: apt-get install chromium, or set PAPERCITE_CHROMIUM to a Chrome binary")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def private_copy(sample_store: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A writable copy of the sample store that shares its joined model (a 1.1 GB file per copy
    filled CI's disk) instead of copying it."""
    data_dir = tmp_path_factory.mktemp(name) / "data"
    shutil.copytree(sample_store, data_dir, ignore=shutil.ignore_patterns("models"))
    (sample_store / "models").mkdir(exist_ok=True)
    (data_dir / "models").symlink_to(sample_store / "models", target_is_directory=True)
    return data_dir


def serve_scripted(
    sample_store: Path, tmp_path_factory: pytest.TempPathFactory, name: str, model: Any, **updates: Any
) -> tuple[Any, str]:
    """The page over a private copy of the sample store, answering with ``model``; ``updates`` as for
    ``Settings.updated``. Returns the app (close it) and its address."""
    from rag.services import Services
    from rag.settings import Settings
    from ui.app import build_app, launch

    data_dir = private_copy(sample_store, tmp_path_factory, name)
    settings = Settings(data_dir=data_dir, llm={"backend": "embedded"}).updated(**updates)
    app = build_app(settings, Services(settings, llm=model))
    return app, launch(app, settings, port=free_port(), block=False)
