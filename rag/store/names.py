"""Collection names: which names are valid, and which Chroma collection holds which papercite collection.

A papercite collection is one Chroma collection and its BM25 index. ``default`` is the
Chroma collection ``papers`` (the one store papercite had before collections), any
other name ``thesis`` is ``papers-thesis``; Chroma collections named otherwise are not
papercite's.
"""

from __future__ import annotations

import re

from rag.errors import BadInput

__all__ = ["DEFAULT", "check_name", "chroma_name", "papercite_name"]

DEFAULT = "default"
_DEFAULT_CHROMA = "papers"
_PREFIX = "papers-"
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


def check_name(name: str) -> str:
    """``name`` when it can name a collection.

    Raises:
        BadInput: it holds other characters than letters, digits, '.', '_' and '-', is longer
            than 64, or starts or ends with punctuation.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise BadInput(
            f"{name!r} cannot name a collection: use letters, digits, '.', '_' and '-' (up to 64, "
            "starting and ending with a letter or digit), e.g. thesis or project-2024."
        )
    return name


def chroma_name(name: str) -> str:
    """The Chroma collection that holds papercite collection ``name`` (see :func:`check_name`)."""
    return _DEFAULT_CHROMA if check_name(name) == DEFAULT else _PREFIX + name


def papercite_name(chroma: str) -> str | None:
    """The papercite collection a Chroma collection holds, or None when it is not papercite's."""
    if chroma == _DEFAULT_CHROMA:
        return DEFAULT
    name = chroma.removeprefix(_PREFIX)
    return name if chroma.startswith(_PREFIX) and _NAME.fullmatch(name) and name != DEFAULT else None
