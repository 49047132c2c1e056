"""``papercite bench answer`` and ``papercite bench serve``: answer latency, a cold ask, askers at once, memory.

Also :func:`load_page`, many askers at once against a page already running
(``tests/test_load.py``). Every figure comes from the real model and store.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from evals.metrics import percentile
from rag.answer.ask import ask
from rag.settings import Settings

__all__ = ["bench_answers", "bench_cold_ask", "bench_concurrency", "bench_serve_memory", "load_page"]


def bench_answers(
    settings: Settings, questions: Sequence[str], echo: Callable[[str], None] = print
) -> dict[str, float]:
    """First-token and total seconds over ``questions`` with the model loaded (as the page and eval run)."""

    # Load and warm the model on a question not in the list (a repeated one would hit the prompt cache).
    ask("Which of these papers make neural networks cheaper to run?", settings=settings)
    first, total, prompt, abstained = [], [], [], 0
    for i, q in enumerate(questions, start=1):
        answer = ask(q, settings=settings)
        if answer.timings.first_token is None:  # abstained before generating: no model time to measure
            abstained += 1
        else:
            first.append(answer.timings.first_token)
            total.append(answer.timings.total)
            prompt.append(answer.prompt_tokens or 0)
        echo(f"  [{i}/{len(questions)}] {answer.timings.total:5.1f} s  {q[:60]}")
    return {
        "questions": len(questions),
        "generated": len(first),
        "abstained_early": abstained,
        "first_p50": percentile(first, 50),
        "first_p95": percentile(first, 95),
        "total_p50": percentile(total, 50),
        "total_p95": percentile(total, 95),
        "prompt_tokens_p50": percentile(prompt, 50),
    }


def bench_cold_ask(settings: Settings, question: str) -> dict[str, object]:
    """A ``papercite ask`` in a fresh process: wall time, peak memory, and heavy modules it imported."""
    probe = (
        "import json, resource, sys\n"
        "from ui.cli import cli\n"
        "try:\n    cli.main(['ask', sys.argv[1]], prog_name='papercite', standalone_mode=False)\n"
        "finally:\n"
        "    heavy = [m for m in ('gradio', 'matplotlib', 'playwright', 'evals', 'bibtexparser') if m in sys.modules]\n"
        "    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "    print(json.dumps({'heavy': heavy, 'peak_mb': peak_mb}))\n"
    )
    env = {**_process_env(settings), "PAPERCITE_LLM__BACKEND": settings.llm.backend}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", probe, question],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"cold ask failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, **result}


def bench_concurrency(settings: Settings, questions: Sequence[str], askers: int) -> dict[str, object]:
    """``askers`` threads each ask one question at once (in a fixed order, 50 ms apart).

    All must complete. "In order" means the model served them in the order they asked:
    the instants of their first answer tokens rise with their place in line. Questions
    that abstain before reaching the model finish at once and are left out of that check.
    """

    first_tokens: dict[int, float] = {}
    completed: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        time.sleep(0.05 * i)  # defines the order of asking
        asked = time.perf_counter()
        try:
            answer = ask(questions[i % len(questions)], settings=settings)
        except Exception as exc:  # noqa: BLE001 - any lost request, whatever its type, is the failure measured here
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            completed.append(i)
            if answer.timings.first_token is not None:
                first_tokens[i] = asked + answer.timings.first_token

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(askers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    served = [first_tokens[i] for i in sorted(first_tokens)]
    return {
        "askers": askers,
        "completed": len(completed),
        "generated": len(served),
        "in_order": served == sorted(served),
        "seconds": seconds,
        "per_minute": 60 * len(completed) / seconds,
        "errors": errors[:3],
    }


def _process_env(settings: Settings) -> dict[str, str]:
    """Environment for a papercite child process on ``settings``' store and joined model file."""
    env = {**os.environ, "PAPERCITE_DATA_DIR": str(settings.data_dir)}
    if settings.llm.models_dir:
        env["PAPERCITE_LLM__MODELS_DIR"] = str(settings.llm.models_dir)
    return env


def bench_serve_memory(settings: Settings, questions: Sequence[str], timeout: float = 300.0) -> dict[str, float]:
    """Peak RSS of a real ``papercite serve`` (embedded model) after it has answered ``questions`` through /ask."""

    from gradio_client import Client  # heavy: only the page benchmarks

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**_process_env(settings), "PAPERCITE_LLM__BACKEND": "embedded"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001 - the client raises many types while the server is not listening yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("papercite serve did not start") from None
                time.sleep(1)
        for q in questions:
            client.predict(q, 5, api_name="/ask")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {
            "questions": len(questions),
            "peak_mb": int(fields["VmHWM"].split()[0]) / 1024,
            "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def load_page(
    url: str, questions: Sequence[str], *, spacing: float = 0.05, timeout: float = 600.0
) -> dict[str, object]:
    """Ask a running page ``len(questions)`` questions at once through ``/ask``, ``spacing`` s apart.

    Returns how many completed, the errors of those that did not, and each asker's
    wait (from asking to the full answer), p50/p95. Bounded: every job is given up
    after ``timeout`` seconds.
    """

    from gradio_client import Client  # heavy: only the page benchmarks

    client = Client(url, verbose=False)
    waits: dict[int, float] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        time.sleep(spacing * i)  # the order of asking
        asked = time.perf_counter()
        try:
            client.submit(questions[i], 5, api_name="/ask").result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - a lost or failed request, of any type, is what this measures
            with lock:
                errors.append(f"{i}: {type(exc).__name__}: {exc}")
            return
        with lock:
            waits[i] = time.perf_counter() - asked

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + spacing * len(questions) + 10)
    client.close()
    times = list(waits.values())
    return {
        "askers": len(questions),
        "completed": len(waits),
        "errors": errors,
        "wait_p50": percentile(times, 50),
        "wait_p95": percentile(times, 95),
    }
