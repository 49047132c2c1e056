"""What the everyday commands (``ui/cli.py``) and the measuring ones (``ui/measure.py``) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import click

from rag.settings import AnswerMode, LLMBackend, Settings, load_settings
from rag.store.collections import check_name
from rag.store.filters import Filters

__all__ = [
    "LLM_BACKENDS",
    "collection_option",
    "command_settings",
    "filter_options",
    "filters_from",
    "mode_option",
]

# The --backend choices: the values PAPERCITE_LLM__BACKEND accepts, so the two cannot drift apart.
LLM_BACKENDS = click.Choice(get_args(LLMBackend))

mode_option = click.option(
    "--mode",
    type=click.Choice(get_args(AnswerMode)),
    help="per_paper: read each paper on its own and cite what the model is confident answers; one_prompt: all "
    "papers in one prompt. Default: $PAPERCITE_ANSWER__MODE.",
)


def command_settings(backend: str | None = None, collection: str | None = None, mode: str | None = None) -> Settings:
    """The settings a command runs with: the environment's, with ``--backend``, ``--collection`` and ``--mode``
    when given.

    Raises:
        BadInput: a PAPERCITE_ variable holds an invalid value, or the collection name is not a valid one.
    """

    settings = load_settings()
    if backend:
        settings = settings.updated(llm={"backend": backend})
    if collection is not None:
        settings = settings.updated(store={"collection": check_name(collection)})
    if mode:
        settings = settings.updated(answer={"mode": mode})
    return settings


collection_option = click.option(
    "--collection",
    metavar="NAME",
    help="The collection to use (`papercite collections` lists them). Default: $PAPERCITE_STORE__COLLECTION, "
    "else default.",
)


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--since``, ``--until``, ``--author`` and ``--source``: which papers a question may draw on."""
    for option in reversed(
        [
            click.option("--since", type=int, metavar="YEAR", help="Only papers from this year on."),
            click.option("--until", type=int, metavar="YEAR", help="Only papers up to this year."),
            click.option(
                "--author",
                metavar="NAME",
                help="Only papers with this author (whole or family name; any case, accents).",
            ),
            click.option("--source", metavar="FILE", help="Only papers read from this file, e.g. my-library.bib."),
        ]
    ):
        command = option(command)
    return command


def filters_from(since: int | None, until: int | None, author: str | None, source: str | None) -> Filters | None:
    """The filter the options describe, or None when none was given.

    Raises:
        BadInput: a year is not a year, or ``since`` is after ``until``.
    """

    filters = Filters(since, until, author, source)
    return filters if filters.active else None
