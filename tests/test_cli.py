"""The papercite command: exit codes and one-line errors, never a traceback for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import click
import pytest
from click.testing import CliRunner

from rag.settings import LLMBackend
from ui.cli import cli


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "code", "needle"),
    [
        (("ask", ""), None, 3, "question is empty"),
        (("ask", "   "), None, 3, "question is empty"),
        (("ingest", "no-such-file.bib"), None, 3, "no-such-file.bib"),
        (("ingest",), None, 3, "Nothing to ingest"),
        (("ask", "what?"), {"PAPERCITE_LLM__BACKEND": "gpt-17"}, 3, "PAPERCITE_LLM__BACKEND"),
        (("ask", "Which paper is about wavelets?"), None, 4, "papercite ingest"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    args: tuple[str, ...], env: dict[str, str] | None, code: int, needle: str
) -> None:
    exit_code, _out, err = _run(*args, env=env)
    assert exit_code == code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0]
    assert "Traceback" not in err


def test_unknown_backend_option_is_a_usage_error() -> None:
    exit_code, _out, err = _run("ask", "x", "--backend", "nope")
    assert exit_code == 2 and "nope" in err


def test_every_backend_option_offers_the_backends_settings_accept() -> None:
    def options(group: click.Group) -> list[click.Parameter]:
        found = []
        for command in group.commands.values():
            found += [p for p in command.params if p.name == "backend"]
            if isinstance(command, click.Group):
                found += options(command)
        return found

    backends = options(cli)
    assert len(backends) == 5  # ask, chat, table, eval, bench answer
    assert all(list(p.type.choices) == list(get_args(LLMBackend)) for p in backends)  # type: ignore[attr-defined]


def test_help_documents_exit_codes() -> None:
    _code, out, _err = _run("--help")
    assert "Exit codes" in out and "4 the" in out.replace("\n", " ")


def test_ingest_then_stats_and_config(tmp_path: Path) -> None:
    papers = tmp_path / "p.jsonl"
    papers.write_text(
        json.dumps({"title": "Wavelet Token Mixing", "abstract": "A 2D wavelet transform mixes image tokens."})
        + "\n{broken\n"
    )
    code, out, err = _run("ingest", str(papers))
    assert code == 0 and "1 added" in out and "p.jsonl:2" in err
    code, out, _ = _run("ingest", str(papers))
    assert code == 0 and "1 unchanged" in out
    code, out, _ = _run("stats")
    assert code == 0 and "papers: 1" in out
    code, out, _ = _run("config")
    assert code == 0 and json.loads(out)["llm"]["backend"] == "auto"
