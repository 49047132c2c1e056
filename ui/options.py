"""What the everyday commands (``ui/cli.py``) and the measuring ones (``ui/measure.py``) share."""

from __future__ import annotations

from typing import get_args

import click

from rag.settings import LLMBackend, Settings

__all__ = ["LLM_BACKENDS", "command_settings"]

# The --backend choices: the values PAPERCITE_LLM__BACKEND accepts, so the two cannot drift apart.
LLM_BACKENDS = click.Choice(get_args(LLMBackend))


def command_settings(backend: str | None = None) -> Settings:
    """The settings a command runs with: the environment's, with ``--backend`` when given.

    Raises:
        BadInput: a PAPERCITE_ variable holds an invalid value.
    """
    from rag.settings import load_settings

    settings = load_settings()
    return settings.updated(llm={"backend": backend}) if backend else settings
