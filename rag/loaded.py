"""Loaded models, kept once per process and keyed by exactly the inputs they are loaded from.

The only state papercite shares across ``Services``: the encoder's weights (keyed by its
settings) and the embedded LLM's (keyed by file, context, threads, runtime and caches).
Both depend on files alone, take seconds to load and are read-only once loaded, so two
``Services`` with the same inputs get the same object. Stores, retrievers and backends
are never kept here: each ``Services`` builds its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["loaded"]

T = TypeVar("T")

_LOADED: dict[tuple[str, str], Any] = {}
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCK = threading.Lock()


def loaded(kind: str, key: str, load: Callable[[], T]) -> T:
    """The ``kind`` model loaded from ``key``'s inputs, loaded by ``load()`` on first request.

    One lock per key: loading a model takes seconds and must not hold up another one.
    """
    slot = (kind, key)
    with _LOCK:
        if slot in _LOADED:
            return _LOADED[slot]  # type: ignore[no-any-return]
        lock = _LOCKS.setdefault(slot, threading.Lock())
    with lock:
        if slot not in _LOADED:
            value = load()
            with _LOCK:
                _LOADED[slot] = value
        return _LOADED[slot]  # type: ignore[no-any-return]
