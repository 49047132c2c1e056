"""The page under 16 simultaneous askers: every question answered, in the order asked, memory bounded.

The page is the real Gradio app on 127.0.0.1 with its real queue; the LLM behind it is
the Ollama stand-in taking about half a second per answer, so the queue (one answer at
a time) is what is exercised, in seconds rather than the minutes 16 embedded-model
answers would take. The wait figures are printed by ``evals.bench.load_page`` callers;
this test checks only completion, order and memory.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evals.bench import load_page
from evals.gold import BUNDLED, load_gold

try:
    from tests.ollama_standin import OllamaStandIn
except ImportError:  # pragma: no cover - run from inside tests/
    from ollama_standin import OllamaStandIn

ASKERS = 16


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def test_sixteen_askers_are_all_answered_in_the_order_they_asked(sample_settings: Any) -> None:
    from ui.app import build_app, launch

    reached: list[str] = []
    lock = threading.Lock()

    def slow_model(messages: list[dict], options: dict, fmt: object) -> Iterator[str]:
        question = messages[-1]["content"].split("Question: ", 1)[1].split("\n", 1)[0]
        with lock:
            reached.append(question)
        for word in ("The", "first", "abstract", "answers", "it", "[1]."):
            time.sleep(0.08)
            yield word + " "

    questions = [q.question for q in load_gold(BUNDLED) if q.kind == "single"][:ASKERS]
    with OllamaStandIn({"qwen2.5:3b": slow_model}) as server, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        llm = sample_settings.llm.model_copy(update={"backend": "ollama", "ollama_host": server.url})
        settings = sample_settings.model_copy(update={"llm": llm})
        app = build_app(settings)
        url = launch(app, settings, port=port, block=False)
        try:
            load_page(url, questions[:2], spacing=0.0)  # warm: retrieval models loaded, first requests served
            reached.clear()
            before = _rss_mb()
            result = load_page(url, questions, spacing=0.2, timeout=120)
            after = _rss_mb()
        finally:
            app.close()

    assert result["completed"] == ASKERS and not result["errors"], result["errors"]
    asked_order = [q for q in questions if q in reached]
    assert len(reached) >= ASKERS // 2  # most questions reach the model (the rest abstain before it)
    assert reached == asked_order  # the one model slot served them first come, first served
    assert after - before < 300, (before, after)  # no growth per request beyond a bounded amount
