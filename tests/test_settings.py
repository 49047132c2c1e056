"""Settings a user sets, apart from the knobs under ``tuning``; a variable that sets nothing is an error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rag.errors import BadInput
from rag.settings import Settings, load_settings
from ui.cli import cli


@pytest.mark.parametrize(
    ("variable", "instead"),
    [
        ("PAPERCITE_READING__ACCEPT", "PAPERCITE_TUNING__READING__ACCEPT"),  # a knob, moved under tuning
        ("PAPERCITE_RETRIEVAL__TOP_PAPERS", "PAPERCITE_ANSWER__TOP_PAPERS"),  # a user's setting, moved to answer
        ("PAPERCITE_ANSWER__SKIP", "PAPERCITE_TUNING__CHECKS__SKIP"),
        ("PAPERCITE_LLM__BACKEN", "PAPERCITE_LLM__BACKEND"),  # a typo
    ],
)
def test_a_variable_that_sets_nothing_names_the_one_meant(
    variable: str, instead: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(BadInput, match=f"{variable} is not a papercite setting \\(did you mean {instead}\\?\\)"):
        load_settings()
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code != 0 and instead in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_knobs_are_set_under_tuning_and_listed_after_what_a_user_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERCITE_TUNING__READING__ACCEPT", "0.4")
    monkeypatch.setenv("PAPERCITE_ANSWER__TOP_PAPERS", "3")
    settings = load_settings()
    assert settings.tuning.reading.accept == 0.4 and settings.answer.top_papers == 3
    shown = json.loads(CliRunner().invoke(cli, ["config"]).stdout)
    assert list(shown)[-1] == "tuning" and {"mode", "top_papers", "unsupported"} <= set(shown["answer"])
    assert set(shown["tuning"]) == {"retrieval", "checks", "reading", "table"}


def test_updated_sets_nested_sections_and_leaves_the_rest() -> None:
    base = Settings()
    changed = base.updated(tuning={"reading": {"accept": 0.5}}, answer={"mode": "one_prompt"})
    assert changed.tuning.reading.accept == 0.5 and changed.answer.mode == "one_prompt"
    assert changed.tuning.reading.read_margin == base.tuning.reading.read_margin
    assert changed.tuning.checks == base.tuning.checks and base.tuning.reading.accept != 0.5
